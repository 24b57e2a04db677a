"""The pipeline contract on config/test.yaml: the whole DAG runs, a second run does nothing, and
changing only the cutoffs reruns only edit, table and figure jobs."""
import re

import pytest
import yaml

from conftest import snakemake

pytestmark = pytest.mark.pipeline


def job_counts(output: str) -> dict[str, int]:
    """Rule -> count from Snakemake's 'Job stats' table."""
    table = output.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in output else ""
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture()
def workdir(test_run):
    return test_run


def test_full_dag_builds_every_output(workdir):
    import pandas as pd

    table2 = pd.read_csv(workdir / "results/tables/table2_vit.csv")
    assert table2.model.tolist() == ["baseline", "svd", "kfac"]
    for col in ("memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"):
        assert table2[col].between(0, 100).all()
    sweep = pd.read_csv(workdir / "results/tables/vit_sweep.csv")
    assert len(sweep) == 1 + 2 * (2 + 1)  # baseline + 2 layer sets x (2 rhos + 1 svd)
    figures = sorted(p.name for p in (workdir / "results/figures").glob("*.png"))
    assert figures == ["vit_activation_ratio.png", "vit_rho_sweep.png", "vit_spectra.png", "vit_table2.png",
                       "vit_training.png"]
    assert all((workdir / "logs" / f"{rule}.log").exists() for rule in ("train_vit", "vit_factors", "figures"))


def test_second_run_does_nothing(workdir):
    out = snakemake(workdir, "--configfile", "config/test.yaml", "-n")
    assert "Nothing to be done" in out, out[-2000:]


def test_changing_cutoffs_reruns_only_edits_tables_and_figures(workdir):
    config = yaml.safe_load((workdir / "config/test.yaml").read_text())
    config["vit"]["edit"]["rhos"] = [0.5, 0.8, 0.9]
    (workdir / "config/changed.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--configfile", "config/changed.yaml", "-n"))
    assert counts == {"vit_edit": 2, "vit_tables": 1, "figures": 1}, counts  # rho 0.8 for both layer sets
