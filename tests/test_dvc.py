"""The DVC contract on config/test.yaml, walked as the README walks it: publish, a fresh clone with a
plain `dvc pull`, nothing expensive recomputed whatever order DVC wrote the files in, parameter
changes rerunning exactly their dependents; and DVC's own verbs (repro, exp run / show, metrics diff,
plots show) doing what a DVC user expects."""
import json
import os
import random
import shutil

import pytest
import yaml

from conftest import copy_project, git, job_counts, layout, run_module, snakemake

pytestmark = pytest.mark.pipeline
CFG = ("--configfile", "config/test.yaml")
EXPENSIVE = {"vit_data", "vit_corrupt", "vit_train", "vit_factors", "vit_basis", "vit_ekfac",
             "lm_data", "lm_import", "lm_train", "lm_sets", "lm_factors", "lm_basis", "lm_ekfac"}


def test_publish_refuses_while_jobs_are_pending(tmp_path):
    work = copy_project(tmp_path / "fresh")
    proc = run_module(work, "curvmem.publish", *CFG, check=False)
    assert proc.returncode != 0
    assert "refusing to publish: snakemake has pending jobs" in proc.stderr
    assert "vit_train" in proc.stderr
    assert not [p for p in work.rglob("*.dvc") if p.is_file()], "nothing may be added before the check passes"


@pytest.fixture(scope="module")
def published(test_run, tmp_path_factory):
    """The finished test run, published to a local remote and committed (pointers + remote)."""
    tmp = tmp_path_factory.mktemp("dvc")
    work = tmp / "origin"
    shutil.copytree(test_run, work, symlinks=True)
    run_module(work, "dvc", "remote", "modify", "local", "url", str(tmp / "remote"))
    out = run_module(work, "curvmem.publish", *CFG).stdout
    assert "Nothing to be done" in snakemake(work, *CFG, "-n"), "publishing must not disturb the run"
    git_add = next(line for line in out.splitlines() if line.strip().startswith("git add"))
    git(work, *git_add.split("&&")[0].split()[1:])  # exactly the command publish printed
    git(work, "commit", "-qm", "publish")
    assert any((tmp / "remote").rglob("*")), "dvc push wrote nothing"
    return work


def clone_and_pull(origin, dest):
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    for key, value in (("user.name", "test"), ("user.email", "test@example.org")):  # `dvc exp run` commits
        git(dest, "config", key, value)
    run_module(dest, "dvc", "pull")  # plain, as a user types it
    return dest


@pytest.fixture(scope="module")
def pulled(published, tmp_path_factory):
    """A clone after a plain `dvc pull`: what Snakemake planned then, and the clone after it ran."""
    clone = clone_and_pull(published, tmp_path_factory.mktemp("pulled") / "clone")
    present = [path for path in layout(clone).expensive_paths() if (clone / path).exists()]
    counts = job_counts(snakemake(clone, *CFG, "-n"))
    snakemake(clone, *CFG)
    return clone, present, counts


def test_plain_dvc_pull_recomputes_nothing_pulled(pulled, test_run):
    clone, present, counts = pulled
    assert present == layout(clone).expensive_paths()
    assert not EXPENSIVE & set(counts), f"a plain dvc pull left expensive jobs to run: {counts}"
    # edits: 2 layer sets x (K-FAC, SVD) + the frontier's 6 methods, per arm
    assert counts == {"vit_baseline": 1, "vit_edits": 10, "vit_bsn": 1, "vit_activation_ratio": 1,
                      "vit_weight_decay": 2, "vit_fisher_overlap": 1, "vit_stability": 1, "vit_tables": 1, "lm_fisher_overlap": 1,
                      "lm_stability": 1,
                      "lm_baseline": 1, "lm_edits": 10, "lm_bsn": 2, "lm_activation_ratio": 1, "lm_tables": 1,
                      "lm_headline": 1, "cost": 1, "metrics": 1, "figures": 1}, counts  # cheap results: not published
    for name in ("table2_vit.csv", "vit_sweep.csv", "table1_lm.csv", "lm_sweep.csv"):
        assert (clone / "results/tables" / name).read_bytes() == (test_run / "results/tables" / name).read_bytes()
    assert "Nothing to be done" in snakemake(clone, *CFG, "-n")


def test_file_times_do_not_matter(published, tmp_path):
    """Whatever order DVC writes the files in: shuffle the pulled files' times, newest upstream
    included, and still nothing expensive is planned."""
    clone = clone_and_pull(published, tmp_path / "clone")
    paths = [clone / p for p in layout(clone).expensive_paths()]
    for i, path in enumerate(reversed(paths)):  # upstream artifacts newest: the worst order
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    counts = job_counts(snakemake(clone, *CFG, "-n"))
    assert not EXPENSIVE & set(counts), counts
    random.Random(0).shuffle(paths)
    for i, path in enumerate(paths):
        os.utime(path, (1_700_000_000 + 7 * i, 1_700_000_000 + 7 * i))
    assert not EXPENSIVE & set(job_counts(snakemake(clone, *CFG, "-n")))


def test_parameter_changes_after_a_pull_rerun_exactly_their_dependents(pulled):
    clone, _, _ = pulled  # dry runs only: the shared clone is not changed
    config = yaml.safe_load((clone / "config/test.yaml").read_text())
    config["vit"]["edit"]["rhos"] = [0.5, 0.8]  # one cutoff changed: 0.9 -> 0.8
    config["vit"]["headline"]["rho"] = 0.8  # also the edit of each member of the weight-decay family and stability study
    (clone / "config/changed.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(clone, "--configfile", "config/changed.yaml", "-n"))
    assert counts == {"vit_edits": 2, "vit_weight_decay": 2, "vit_stability": 1, "vit_tables": 1, "cost": 1,
                      "metrics": 1, "figures": 1}, counts
    config["lm"]["factors"]["n_sequences"] = 24  # fewer factor sequences: factors, basis and what reads them
    (clone / "config/changed.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(clone, "--configfile", "config/changed.yaml", "-n"))
    # both Fisher types' factors and basis, the edits that read a basis: K-FAC of 2 layer sets, kfac_scaled, ekfac,
    # activation, kfac_empirical (not SVD, magnitude, random), and the Fisher comparison; the stability study's
    # other two models' factors and basis, and its job
    assert counts == {"vit_edits": 2, "vit_weight_decay": 2, "vit_stability": 1, "vit_tables": 1, "lm_factors": 4,
                      "lm_basis": 4, "lm_stability": 1,
                      "lm_ekfac": 1, "lm_edits": 6, "lm_bsn": 2, "lm_fisher_overlap": 1,
                      "lm_activation_ratio": 1, "lm_tables": 1, "lm_headline": 1, "cost": 1, "metrics": 1,
                      "figures": 1}, counts


def test_dvc_repro_exp_metrics_and_plots(pulled):
    """DVC's verbs run the study through Snakemake. The clone's default config is the test config,
    so `dvc repro` and `dvc exp run` run what a user's would, in seconds. (Last in this file: it
    commits to the shared clone.)"""
    clone, _, _ = pulled
    shutil.copy(clone / "config/test.yaml", clone / "config/config.yaml")
    git(clone, "commit", "-qam", "the test config as the default")
    out = run_module(clone, "dvc", "repro").stdout
    assert "Running stage 'study'" in out and (clone / "results/metrics.json").exists()
    git(clone, "add", "results/metrics.json", "dvc.lock")
    git(clone, "commit", "-qm", "study results")

    out = run_module(clone, "dvc", "exp", "run", "-S", "config/config.yaml:lm.selection.max_perplexity_increase=0.01")
    assert "Running stage 'study'" in out.stdout
    assert yaml.safe_load((clone / "config/config.yaml").read_text())["lm"]["selection"]["max_perplexity_increase"] == 0.01
    shown = json.loads(run_module(clone, "dvc", "exp", "show", "--json").stdout)
    experiments = [e for rev in shown for e in (rev.get("experiments") or [])]
    assert experiments, shown
    exp_data = experiments[0]["revs"][0]["data"]
    assert "results/metrics.json" in exp_data["metrics"]
    assert exp_data["params"]["config/config.yaml"]["data"]["lm"]["selection"]["max_perplexity_increase"] == 0.01

    diff = json.loads(run_module(clone, "dvc", "metrics", "diff", "HEAD", "--all", "--json").stdout)
    metrics = diff["results/metrics.json"]
    assert metrics["lm.kfac.perplexity_increase_pct"]["old"] is not None  # read from the commit, not "-"
    assert metrics["vit.kfac.memorized_train_pct"]["old"] == metrics["vit.kfac.memorized_train_pct"]["new"]

    plots = json.loads(run_module(clone, "dvc", "plots", "show", "--json").stdout)["data"]
    x_fields = {name: spec[0]["content"]["encoding"]["x"]["field"] for name, spec in plots.items()}
    assert x_fields == {"vit_kfac_sweep": "rho", "vit_svd_sweep": "drop_fraction", "lm_kfac_sweep": "rho",
                        "lm_svd_sweep": "drop_fraction"}, x_fields
