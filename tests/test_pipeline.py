"""The pipeline contract on config/test.yaml: the whole DAG runs, a second run does nothing, and a
parameter change reruns exactly the jobs that depend on it."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import job_counts, layout, run_module, snakemake

pytestmark = pytest.mark.pipeline
CFG = ("--configfile", "config/test.yaml")


@pytest.fixture()
def workdir(test_run):
    return test_run


def changed_config(workdir, name: str, change) -> tuple[str, str]:
    """A copy of the test config with `change(config)` applied; returns the --configfile args."""
    config = yaml.safe_load((workdir / "config/test.yaml").read_text())
    change(config)
    (workdir / f"config/{name}.yaml").write_text(yaml.safe_dump(config))
    return "--configfile", f"config/{name}.yaml"


def test_full_dag_builds_every_output(workdir):
    table2 = pd.read_csv(workdir / "results/tables/table2_vit.csv")
    assert table2.model.tolist() == ["baseline", "svd", "kfac", "bsn (ours)"]
    for col in ("memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"):
        assert table2[col].between(0, 100).all()
    sweep = pd.read_csv(workdir / "results/tables/vit_sweep.csv")
    # baseline + 2 layer sets x (2 rhos + 1 svd) + 1 BSN point + the frontier's 7 cutoffs on first_last
    assert len(sweep) == 1 + 2 * (2 + 1) + 1 + 7
    frontier = pd.read_csv(workdir / "results/tables/vit_frontier.csv", keep_default_na=False, na_values=[""])
    assert set(frontier.method) == {"none", "kfac", "kfac_empirical", "kfac_scaled", "ekfac", "svd", "bsn", "activation",
                                   "magnitude", "random"}
    assert set(frontier.layer_set.dropna()) == {"first_last"} and frontier.on_front.any()
    figures = sorted(p.name for p in (workdir / "results/figures").glob("*.png"))
    assert figures == ["cost.png", "lm_activation_ratio.png", "lm_band_vs_retention.png", "lm_facts_vs_frequency.png",
                       "lm_frontier.png", "lm_recitation_vs_perplexity.png", "lm_rho_profile.png", "lm_stability.png",
                       "lm_stress_test.png", "lm_table1.png", "lm_task_retention.png", "lm_tasks_vs_recitation.png",
                       "lm_training.png",
                       "vit_activation_ratio.png", "vit_frontier.png", "vit_rho_profile.png", "vit_rho_sweep.png", "vit_spectra.png",
                       "vit_stability.png", "vit_table2.png", "vit_training.png", "vit_weight_decay.png"]
    art = layout(workdir)
    assert (workdir / "logs/figures.log").exists()
    assert all((workdir / "logs" / rule / f"{art[rule].fp}.log").exists() for rule in ("vit_train", "vit_factors",
                                                                                        "lm_train", "lm_factors"))
    for path in layout(workdir).expensive_paths():
        assert (workdir / path).exists(), path
    from curvmem.io import load_tensors

    corrected = {key.rsplit(".", 1)[0] for key in load_tensors(workdir / art["lm_ekfac"].corrections)}
    assert corrected == {f"model.layers.{i}.mlp.{p}_proj" for i in (0, 1) for p in ("gate", "up")}  # the frontier's set
    for arm, n_modules in (("vit", 4), ("lm", 4)):  # the Fisher comparison on the frontier's modules
        mc, empirical = (load_tensors(workdir / stages[f"{arm}_factors"].factors)
                         for stages in (art.stages, art.fisher_bases[arm]["empirical"]))
        assert all(torch.equal(mc[k], empirical[k]) for k in mc if ".A" in k or k.endswith(".n"))  # no label enters A
        assert not all(torch.equal(mc[k], empirical[k]) for k in mc if ".G" in k)
        overlap = pd.read_csv(workdir / f"results/tables/{arm}_fisher_overlap.csv")
        assert overlap.module.nunique() == n_modules and set(overlap.factor) == {"G", "A", "pairs"}
        assert np.allclose(overlap[overlap.factor == "A"].overlap, 1.0, atol=1e-5)
        assert overlap.overlap.between(0, 1 + 1e-6).all() and (overlap.overlap >= overlap.chance - 0.2).all()
        edits = pd.read_csv(workdir / f"results/tables/{arm}_fisher_edits.csv")
        assert set(zip(edits.rho, edits.other_method)) == {(0.9, "kfac_empirical")}, edits
    metrics = json.loads((workdir / "results/metrics.json").read_text())
    assert metrics["vit"]["kfac"]["memorized_train_pct"] == table2.set_index("model").memorized_train_pct["kfac"]



def report_items(html: str) -> tuple[dict, dict]:
    """The results and categories a Snakemake HTML report embeds as JSON (`var results = {...}`)."""
    found = []
    for name in ("results", "categories"):
        match = re.search(rf"var {name} = (?={{)", html)
        assert match, f"no `var {name}` in the report"
        found.append(json.JSONDecoder().raw_decode(html, match.end())[0])
    return found[0], found[1]


def test_report_has_every_figure_and_main_table_with_its_caption(workdir):
    run_module(workdir, "snakemake", "--report", "report.html", "--configfile", "config/test.yaml")
    results, categories = report_items((workdir / "report.html").read_text())
    on_disk = {f"results/figures/{p.name}" for p in (workdir / "results/figures").glob("*.png")}
    tables = {f"results/tables/{name}" for name in ("table2_vit.csv", "vit_differences.csv", "table1_lm.csv",
                                                   "lm_differences.csv", "lm_tasks.csv", "lm_band_retention.csv",
                                                   "lm_band_correlation.csv", "table6_lm_stress.csv",
                                                   "table7_lm_coherence.csv", "table12_lm_generations.md",
                                                   "cost.csv", "vit_fisher_overlap.csv", "vit_fisher_edits.csv",
                                                   "lm_fisher_overlap.csv", "lm_fisher_edits.csv")}
    assert on_disk and on_disk | tables <= set(results), sorted(on_disk | tables - set(results))
    captions = {path: " ".join(re.sub(r"<[^>]+>", "", item["caption"]).split()) for path, item in results.items()}
    short = {path: text for path, text in captions.items() if len(text.split()) < 25}
    assert not short, short
    assert len({captions[p] for p in on_disk}) == len(on_disk), "figures share one caption"
    assert "K-FAC at rho 0.9," in captions["results/figures/vit_table2.png"]  # config/test.yaml's headline
    placed = {path for sub in categories.values() for paths in sub.values() for path in paths}
    assert placed == set(results) and set(categories) == {"Vision arm", "LM arm", "Both arms"}


def test_lm_arm_outputs(workdir):
    table1 = pd.read_csv(workdir / "results/tables/table1_lm.csv")
    assert table1.model.tolist() == ["baseline", "kfac", "svd", "bsn"]
    base = table1.iloc[0]
    summary = json.loads((workdir / layout(workdir)["lm_sets"].summary).read_text())
    assert summary["memorized_train"]["memorized"] > 0, summary  # the tiny world's model does memorize
    # Verification is teacher-forced, recitation is greedy with a KV cache: equal by construction,
    # so the unedited model recites every verified window exactly.
    for s in ("memorized_val", "quotes"):
        if summary[s]["kept"]:
            assert base[f"{s}_strict_pct"] == 100 and base[f"{s}_levenshtein"] == 0
    assert base.ndcg10 == pytest.approx(1.0)
    assert base.perplexity == pytest.approx(base.perplexity_batch_mean, rel=0.2)
    sweep = pd.read_csv(workdir / "results/tables/lm_sweep.csv")
    assert len(sweep) == 1 + 2 * (2 + 1) + 2 + 7  # baseline + 2 layer sets x (2 rhos + 1 svd) + 2 BSN + 7 frontier
    assert (sweep.ndcg10 <= 1 + 1e-9).all()
    selection = json.loads((workdir / "results/lm/selection.json").read_text())
    assert {m: selection[m]["method"] for m in ("kfac", "svd", "bsn")} == {"kfac": "kfac", "svd": "svd", "bsn": "bsn"}
    tasks = pd.read_csv(workdir / "results/tables/lm_tasks.csv")
    assert set(tasks.family) == {"arithmetic", "facts", "openbook", "logic"}


def test_selection_bound_holds_on_the_reported_perplexity(workdir):
    """The headline edits are chosen under the bound on the perplexity Table 1 reports (the mean of
    per-batch exp), and Table 1's increase is that measure's."""
    table1 = pd.read_csv(workdir / "results/tables/table1_lm.csv").set_index("model")
    bound = 100 * yaml.safe_load((workdir / "config/test.yaml").read_text())["lm"]["selection"]["max_perplexity_increase"]
    selection = json.loads((workdir / "results/lm/selection.json").read_text())
    for method in ("kfac", "svd", "bsn"):
        increase = 100 * (table1.perplexity_batch_mean[method] / table1.perplexity_batch_mean["baseline"] - 1)
        assert table1.perplexity_increase_pct[method] == pytest.approx(increase, abs=0.05)
        if selection[method]["within_bound"]:
            assert increase <= bound + 0.05, (method, increase, bound)


def test_second_run_does_nothing(workdir):
    out = snakemake(workdir, *CFG, "-n")
    assert "Nothing to be done" in out, out[-2000:]


def test_changing_cutoffs_reruns_only_edits_tables_and_figures(workdir):
    cfg = changed_config(workdir, "changed", lambda c: c["vit"]["edit"].update(rhos=[0.5, 0.8, 0.9]))
    counts = job_counts(snakemake(workdir, *cfg, "-n"))
    # the K-FAC job of each of the 2 layer sets holds the rho list; SVD, BSN jobs and the LM arm stay
    assert counts == {"vit_edits": 2, "vit_tables": 1, "cost": 1, "metrics": 1, "figures": 1}, counts


def test_one_job_per_cutoff_reruns_only_the_changed_cutoff(workdir, tmp_path):
    from conftest import copy_run

    import shutil

    work = copy_run(workdir, tmp_path / "per_cutoff")
    shutil.rmtree(work / "results/vit/edits/.memo")  # compute every cutoff anew, one job each
    cfg = changed_config(work, "per_cutoff", lambda c: c["vit"]["edit"].update(one_job_per_cutoff=True))
    snakemake(work, *cfg)
    assert (work / "results/vit/edits/first_last/kfac/0.9.json").exists()
    def change(c):
        c["vit"]["edit"].update(one_job_per_cutoff=True, rhos=[0.5, 0.8])
        c["vit"]["headline"]["rho"] = 0.8

    cfg = changed_config(work, "per_cutoff2", change)
    counts = job_counts(snakemake(work, *cfg, "-n"))
    # rho 0.8: the two K-FAC jobs, the headline edit of both members of the weight-decay family and of the
    # stability study
    assert counts == {"vit_edits": 2, "vit_weight_decay": 2, "vit_stability": 1, "vit_tables": 1, "cost": 1,
                      "metrics": 1, "figures": 1}, counts
    # the same sweep as grouped jobs gave: one job per cutoff changes how, not what, is computed
    grouped = pd.read_csv(workdir / "results/tables/vit_sweep.csv")
    assert (work / "results/tables/vit_sweep.csv").read_text() == (workdir / "results/tables/vit_sweep.csv").read_text()
    assert len(grouped) == 15  # baseline, 2 x (2 rhos + SVD), BSN, the frontier's 7 cutoffs


def test_a_changed_cutoff_is_the_only_one_evaluated(workdir, tmp_path):
    """The grouped K-FAC jobs rerun, but each evaluates only the new cutoff: the others come from
    the memo of their earlier evaluation (same inputs, same code), and the results are unchanged."""
    from conftest import copy_run

    work = copy_run(workdir, tmp_path / "work")
    cfg = changed_config(work, "one_rho", lambda c: c["lm"]["edit"].update(rhos=[0.5, 0.7]))
    snakemake(work, *cfg)
    for layer_set in ("layer0", "all"):
        log = (work / f"logs/lm_edits/{layer_set}/kfac/all.log").read_text()
        assert "kfac " + layer_set + ": 1 cutoff(s) to evaluate, 1 from earlier runs" in log, log[-2000:]
    log = (work / "logs/lm_headline.log").read_text()  # the tables reran; the headline models whose choice
    for name in ("baseline", "svd", "bsn"):           # did not change are not stress-tested again
        assert f"{name}: the same headline model as in an earlier run" in log, log[-2000:]
    old = pd.read_csv(workdir / "results/tables/lm_sweep.csv").set_index(["method", "layer_set", "cutoff"])
    new = pd.read_csv(work / "results/tables/lm_sweep.csv").set_index(["method", "layer_set", "cutoff"])
    shared = old.index.intersection(new.index)
    assert len(shared) == len(old) - 2  # rho 0.9 of two layer sets left the sweep
    pd.testing.assert_frame_equal(old.loc[shared], new.loc[shared], check_dtype=False)


def test_changing_lm_cutoffs_or_selection_reruns_only_what_depends_on_them(workdir):
    cfg = changed_config(workdir, "changed_lm", lambda c: c["lm"]["edit"].update(rhos=[0.5, 0.7, 0.9]))
    counts = job_counts(snakemake(workdir, *cfg, "-n"))
    after_tables = {"lm_tables": 1, "lm_headline": 1, "cost": 1, "metrics": 1, "figures": 1}
    assert counts == {"lm_edits": 2, **after_tables}, counts
    cfg = changed_config(workdir, "changed_lm", lambda c: c["lm"]["selection"].update(max_perplexity_increase=0.1))
    counts = job_counts(snakemake(workdir, *cfg, "-n"))
    assert counts == after_tables, counts


def test_changing_a_training_parameter_reruns_its_dependents_only(workdir):
    """A new ViT recipe: its model, factors and basis get new fingerprinted paths and every vision
    result is recomputed; the data, the corruption and the LM arm are untouched."""
    cfg = changed_config(workdir, "changed_train", lambda c: c["vit"]["train"].update(epochs=4))
    counts = job_counts(snakemake(workdir, *cfg, "-n"))
    # both members of the weight-decay family and the stability study's seed 1 and checkpoint (the trained
    # model is a member of both) follow the recipe; the trained model's factors and basis twice, the paper's
    # Fisher and the empirical one it is compared with
    assert counts == {"vit_train": 4, "vit_factors": 5, "vit_basis": 5, "vit_ekfac": 1, "vit_baseline": 1,
                      "vit_edits": 10, "vit_bsn": 1, "vit_activation_ratio": 1, "vit_weight_decay": 2,
                      "vit_fisher_overlap": 1, "vit_stability": 1, "vit_tables": 1, "cost": 1, "metrics": 1,
                      "figures": 1}, counts


def test_weight_decay_family(workdir):
    """App. H on the test config's two members (0.1, the trained model's own decay, and 1.0): the
    member equal to the trained model shares its artifacts and reproduces the Table 2 rows that the
    independent baseline and sweep jobs measured; the other member is a model of its own."""
    art = layout(workdir)
    family = pd.read_csv(workdir / "results/tables/vit_weight_decay.csv")
    assert family.weight_decay.tolist() == [0.1, 0.1, 1.0, 1.0] and family.model.tolist() == ["baseline", "kfac"] * 2
    assert art.vit_family["0.1"]["vit_train"].model == art["vit_train"].model
    assert art.vit_family["1.0"]["vit_train"].model != art["vit_train"].model
    assert (workdir / art.vit_family["1.0"]["vit_basis"].basis).exists()
    table2 = pd.read_csv(workdir / "results/tables/table2_vit.csv").set_index("model")
    own = family[family.weight_decay == 0.1].set_index("model")
    for metric in ("memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"):
        for model in ("baseline", "kfac"):
            assert own.loc[model, metric] == pytest.approx(table2.loc[model, metric]), (model, metric)
    ratio = pd.read_csv(workdir / "results/tables/vit_activation_ratio.csv")
    headline = ratio[(ratio.basis == "kfac") & ratio.module.str.match(r"blocks\.[01]\.mlp")]
    # the CSVs keep 4 significant digits
    assert own.top10_ratio.iloc[0] == pytest.approx(headline[headline.band == "top 10%"].ratio.mean(), rel=1e-3)
    assert family.band_separation.tolist() == pytest.approx((family.bottom50_ratio / family.top10_ratio).tolist(),
                                                            rel=1e-3)


def test_stability_study(workdir):
    """Seeds and checkpoints on the test config's members (seeds 0 and 1, seed 0 stopped at 2 of its 3
    epochs): seed 0 is the trained model, whose unedited and own-basis rows reproduce what the independent
    baseline and sweep jobs measured; the checkpoint's run is the first epochs of the full run's; its basis
    is closer to the full run's than another seed's is."""
    art = layout(workdir)
    members = art.stability["vit"]
    assert list(members) == ["seed0", "seed1", "seed0-at0.5"]
    assert members["seed0"]["vit_basis"].outputs == art["vit_basis"].outputs
    full = json.loads((workdir / art["vit_train"].metrics).read_text())["history"]
    stopped = json.loads((workdir / members["seed0-at0.5"]["vit_train"].metrics).read_text())["history"]
    assert len(full) == 3 and len(stopped) == 2
    for a, b in zip(stopped, full):
        assert a["lr"] == pytest.approx(b["lr"]) and a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)
    edits = pd.read_csv(workdir / "results/tables/vit_stability_edits.csv", keep_default_na=False)
    table2 = pd.read_csv(workdir / "results/tables/table2_vit.csv").set_index("model")
    seed0 = edits[edits.weights == "seed0"].set_index(["relation", "method"])
    for metric in ("memorized_train_pct", "train_gt_acc_pct", "val_acc_pct"):
        assert seed0.loc[("unedited", "none"), metric] == pytest.approx(table2.loc["baseline", metric])
        assert seed0.loc[("own", "kfac"), metric] == pytest.approx(table2.loc["kfac", metric])
        assert seed0.loc[("own", "svd"), metric] == pytest.approx(table2.loc["svd", metric])
    transfers = set(zip(edits.weights, edits.basis, edits.relation))
    assert {("seed0", "seed1", "other seed"), ("seed1", "seed0", "other seed"),
            ("seed0", "seed0-at0.5", "checkpoint"), ("seed0-at0.5", "seed0-at0.5", "own")} <= transfers
    overlap = pd.read_csv(workdir / "results/tables/vit_stability_overlap.csv")
    pairs = overlap[overlap.factor == "pairs"].groupby("relation").overlap.mean()
    assert pairs["checkpoint"] > pairs["other seed"] and (overlap.overlap.between(0, 1 + 1e-6)).all()
    seeds = pd.read_csv(workdir / "results/tables/vit_seeds.csv")
    assert (seeds.n_seeds == 2).all() and set(seeds.setting) == {"unedited", "kfac rho 0.9", "svd drop 0.5"}
    unedited = edits[(edits.relation == "unedited") & (edits.fraction == 1)].memorized_train_pct
    row = seeds[(seeds.setting == "unedited") & (seeds.metric == "memorized_train_pct")].iloc[0]
    assert row["mean"] == pytest.approx(unedited.mean(), rel=1e-3) and row["std"] == pytest.approx(unedited.std(), rel=1e-3)


def test_lm_stability_study(workdir):
    """The LM arm's study on the test config (seeds 0 and 1, seed 0 stopped at 300 of 600 steps): seed 0's
    rows reproduce what the independent baseline and sweep jobs measured; each model is measured on its
    own memorized sets; a checkpoint's basis is closer to its full run's than another seed's is."""
    art = layout(workdir)
    members = art.stability["lm"]
    assert list(members) == ["seed0", "seed1", "seed0-at0.5"]
    assert members["seed0"]["lm_sets"].outputs == art["lm_sets"].outputs
    assert members["seed1"]["lm_sets"].outputs != art["lm_sets"].outputs
    stopped = json.loads((workdir / members["seed0-at0.5"]["lm_train"].metrics).read_text())["history"]
    assert stopped[-1]["step"] == 300
    edits = pd.read_csv(workdir / "results/tables/lm_stability_edits.csv", keep_default_na=False)
    sweep = pd.read_csv(workdir / "results/tables/lm_sweep.csv", keep_default_na=False)
    seed0 = edits[edits.weights == "seed0"].set_index(["relation", "method"])
    for (relation, method), (m, layer_set, cutoff) in {("unedited", "none"): ("none", "", None),
                                                       ("own", "kfac"): ("kfac", "all", 0.9),
                                                       ("own", "svd"): ("svd", "all", 0.5)}.items():
        row = sweep[(sweep.method == m) & (sweep.layer_set == layer_set)]
        row = (row if cutoff is None else row[row.cutoff.astype(float) == cutoff]).iloc[0]
        for metric in ("memorized_train_strict_pct", "memorized_val_strict_pct", "quotes_strict_pct",
                       "perplexity_batch_mean", "ndcg10", "task_arithmetic"):
            assert seed0.loc[(relation, method), metric] == pytest.approx(float(row[metric]), rel=1e-3), (method, metric)
    n_sets = {label: len(pd.read_parquet(workdir / member["lm_sets"].sets)) for label, member in members.items()}
    counts = edits[edits.method == "none"].set_index("weights")[["memorized_train_n", "memorized_val_n", "quotes_n"]]
    assert counts.sum(axis=1).to_dict() == n_sets
    overlap = pd.read_csv(workdir / "results/tables/lm_stability_overlap.csv")
    pairs = overlap[overlap.factor == "pairs"].groupby("relation").overlap.mean()
    assert pairs["checkpoint"] > pairs["other seed"]
    seeds = pd.read_csv(workdir / "results/tables/lm_seeds.csv")
    assert (seeds.n_seeds == 2).all() and set(seeds.setting) == {"unedited", "kfac all rho 0.9", "svd all drop 0.5"}


@pytest.mark.parametrize("arm", ["vit", "lm"])
def test_one_arm_configs(workdir, arm):
    """A config may hold only one arm: the DAG then holds only that arm's rules."""
    cfg = changed_config(workdir, f"only_{arm}", lambda c: c.pop("lm" if arm == "vit" else "vit"))
    counts = job_counts(snakemake(workdir, *cfg, "-n", "--forceall"))
    other = "lm_" if arm == "vit" else "vit_"
    assert "figures" in counts and not any(rule.startswith(other) for rule in counts), counts
    assert any(rule.startswith(arm) for rule in counts), counts
