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
    assert figures == ["lm_activation_ratio.png", "lm_facts_vs_frequency.png", "lm_recitation_vs_perplexity.png",
                       "lm_table1.png", "lm_task_retention.png", "lm_tasks_vs_recitation.png", "lm_training.png",
                       "vit_activation_ratio.png",
                       "vit_rho_sweep.png", "vit_spectra.png", "vit_table2.png", "vit_training.png"]
    assert all((workdir / "logs" / f"{rule}.log").exists()
               for rule in ("train_vit", "vit_factors", "lm_train", "lm_factors", "figures"))


def test_lm_arm_outputs(workdir):
    import json

    import pandas as pd

    table1 = pd.read_csv(workdir / "results/tables/table1_lm.csv")
    assert table1.model.tolist() == ["baseline", "kfac", "svd"]
    base = table1.iloc[0]
    summary = json.loads((workdir / "results/lm/sets_summary.json").read_text())
    assert summary["memorized_train"]["memorized"] > 0, summary  # the tiny world's model does memorize
    # Verification is teacher-forced, recitation is greedy with a KV cache: equal by construction,
    # so the unedited model recites every verified window exactly.
    for s in ("memorized_val", "quotes"):
        if summary[s]["kept"]:
            assert base[f"{s}_strict_pct"] == 100 and base[f"{s}_levenshtein"] == 0
    assert base.ndcg10 == pytest.approx(1.0)
    assert base.perplexity == pytest.approx(base.perplexity_batch_mean, rel=0.2)
    sweep = pd.read_csv(workdir / "results/tables/lm_sweep.csv")
    assert len(sweep) == 1 + 2 * (2 + 1)  # baseline + 2 layer sets x (2 rhos + 1 svd)
    assert (sweep.ndcg10 <= 1 + 1e-9).all()
    selection = json.loads((workdir / "results/lm/selection.json").read_text())
    assert {selection["kfac"]["method"], selection["svd"]["method"]} == {"kfac", "svd"}
    tasks = pd.read_csv(workdir / "results/tables/lm_tasks.csv")
    assert set(tasks.family) == {"arithmetic", "facts", "openbook", "logic"}


def test_second_run_does_nothing(workdir):
    out = snakemake(workdir, "--configfile", "config/test.yaml", "-n")
    assert "Nothing to be done" in out, out[-2000:]


def test_changing_cutoffs_reruns_only_edits_tables_and_figures(workdir):
    config = yaml.safe_load((workdir / "config/test.yaml").read_text())
    config["vit"]["edit"]["rhos"] = [0.5, 0.8, 0.9]
    (workdir / "config/changed.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--configfile", "config/changed.yaml", "-n"))
    assert counts == {"vit_edit": 2, "vit_tables": 1, "figures": 1}, counts  # rho 0.8 for both layer sets


def test_changing_lm_cutoffs_or_selection_reruns_only_what_depends_on_them(workdir):
    config = yaml.safe_load((workdir / "config/test.yaml").read_text())
    config["lm"]["edit"]["rhos"] = [0.5, 0.7, 0.9]
    (workdir / "config/changed_lm.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--configfile", "config/changed_lm.yaml", "-n"))
    assert counts == {"lm_edit": 2, "lm_tables": 1, "figures": 1}, counts
    config["lm"]["edit"]["rhos"] = [0.5, 0.9]
    config["lm"]["selection"]["max_perplexity_increase"] = 0.1
    (workdir / "config/changed_lm.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--configfile", "config/changed_lm.yaml", "-n"))
    assert counts == {"lm_tables": 1, "figures": 1}, counts


@pytest.mark.parametrize("arm", ["vit", "lm"])
def test_one_arm_configs(workdir, arm):
    """A config may hold only one arm: the DAG then holds only that arm's rules."""
    config = yaml.safe_load((workdir / "config/test.yaml").read_text())
    del config["lm" if arm == "vit" else "vit"]
    (workdir / f"config/only_{arm}.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "--configfile", f"config/only_{arm}.yaml", "-n", "--forceall"))
    vision_rules = ("prepare_vision_data", "corrupt_labels", "train_vit")
    is_vision = lambda rule: rule.startswith("vit") or rule in vision_rules  # noqa: E731
    is_other_arm = is_vision if arm == "lm" else (lambda rule: rule.startswith("lm"))
    assert "figures" in counts and not any(is_other_arm(rule) for rule in counts), counts
    assert any(rule.startswith(arm) for rule in counts), counts
