"""DVC round trip on config/test.yaml: run, publish, fresh clone, restore; then only what depends
on a change reruns."""
import shutil

import pytest
import yaml

from conftest import copy_project, git, run_module, snakemake
from test_pipeline import job_counts

pytestmark = pytest.mark.pipeline
CFG = ("--configfile", "config/test.yaml")
EXPENSIVE = {"prepare_vision_data", "corrupt_labels", "train_vit", "vit_factors", "vit_basis",
             "lm_data", "lm_import", "lm_train", "lm_sets", "lm_factors", "lm_basis"}


def test_publish_refuses_while_jobs_are_pending(tmp_path):
    work = copy_project(tmp_path / "fresh")
    proc = run_module(work, "curvmem.artifacts", "publish", *CFG, check=False)
    assert proc.returncode != 0
    assert "refusing to publish: snakemake has pending jobs" in proc.stderr
    assert "train_vit" in proc.stderr
    assert not [p for p in work.rglob("*.dvc") if p.is_file()], "nothing may be added before the check passes"


def test_publish_clone_restore_and_targeted_reruns(test_run, tmp_path):
    remote = tmp_path / "remote"
    run_module(test_run, "dvc", "remote", "modify", "local", "url", str(remote))
    run_module(test_run, "curvmem.artifacts", "publish", *CFG)
    assert "Nothing to be done" in snakemake(test_run, *CFG, "-n"), "publishing must not disturb the run"
    git(test_run, "add", "-A", "data", "results", ".dvc/config")
    git(test_run, "commit", "-qm", "publish")
    assert any(remote.rglob("*")), "dvc push wrote nothing"

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(test_run), str(clone))
    assert not (clone / "results/vit/model.safetensors").exists()
    run_module(clone, "curvmem.artifacts", "restore", *CFG)
    counts = job_counts(snakemake(clone, *CFG, "-n"))
    assert not EXPENSIVE & set(counts), f"restore left expensive jobs to run: {counts}"
    assert counts.get("vit_edit") == 6  # the cheap results were not published: rebuilt from the pulled ones
    assert counts.get("lm_edit") == 6

    snakemake(clone, *CFG)  # rebuild figures from the pulled models and factors
    for name in ("table2_vit.csv", "vit_sweep.csv", "table1_lm.csv", "lm_sweep.csv"):
        assert (clone / "results/tables" / name).read_bytes() == (test_run / "results/tables" / name).read_bytes()

    config = yaml.safe_load((clone / "config/test.yaml").read_text())
    config["vit"]["edit"]["rhos"] = [0.5, 0.8]  # one cutoff changed: 0.9 -> 0.8
    config["vit"]["headline"]["rho"] = 0.8
    (clone / "config/changed.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(clone, "--configfile", "config/changed.yaml", "-n"))
    assert counts == {"vit_edit": 2, "vit_tables": 1, "figures": 1}, counts

    # Deleting a model: Snakemake does not rebuild an intermediate whose consumers are up to date
    # (like a temp file). Asking for it schedules only it; forcing it schedules it and its
    # dependents, never the data preparation.
    (clone / "results/vit/model.safetensors").unlink()
    assert "Nothing to be done" in snakemake(clone, *CFG, "-n")
    assert job_counts(snakemake(clone, *CFG, "-n", target="results/vit/model.safetensors")) == {"train_vit": 1}
    counts = job_counts(snakemake(clone, *CFG, "-n", "--forcerun", "train_vit"))
    assert counts == {"train_vit": 1, "vit_factors": 1, "vit_basis": 1, "vit_baseline": 1, "vit_edit": 6,
                      "vit_activation_ratio": 1, "vit_tables": 1, "figures": 1}, counts
