"""Figures of the LM arm: Table 1, recitation vs perplexity, task retention, tasks vs recitation,
facts vs frequency, the stress test (Table 6), activation bands (Fig. 2), band profiles against
retention (Fig. 4), training loss. Every figure that
shows K-FAC and SVD shows BalancedSubnet (BSN) too."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..plotting import (METHOD_PALETTE, MODEL_LABELS, activation_bands, cutoff_profile, frontier_figure,
                        interval_bars, save, stability_figure)
from ..sweep import cutoff_steps, with_bands
from .tables import METHODS, counted_metrics, task_families

LM_SETS = {"memorized_val": "memorized (validation)", "quotes": "quotes"}


def lm_table1(table1: pd.DataFrame, out: Path) -> None:
    rows = []
    for _, r in table1.iterrows():
        for s, label in LM_SETS.items():
            rows.append({"source": "ours", "model": MODEL_LABELS[r.model], "set": label, "strict": r[f"{s}_strict_pct"],
                         "ci_low": r[f"{s}_strict_pct_ci_low"], "ci_high": r[f"{s}_strict_pct_ci_high"]})
            rows.append({"source": "paper (OLMo-2-7B)", "model": MODEL_LABELS[r.model], "set": label,
                         "strict": r[f"paper_{s}_strict_pct"]})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for ax, source in zip(axes, ("ours", "paper (OLMo-2-7B)")):
        part = pd.DataFrame(rows).query("source == @source")
        sns.barplot(part, x="set", y="strict", hue="model", ax=ax, palette=METHOD_PALETTE)
        for container in ax.containers:
            ax.bar_label(container, fmt="%.1f", fontsize=7, padding=6 if source == "ours" else 0)
        if source == "ours":
            interval_bars(ax, part, x="set", hue="model", value="strict")
            ax.get_legend().remove()  # the paper's panel carries the same legend
        ax.set(title=f"{source} (bars: 95% Wilson intervals)" if source == "ours" else source, xlabel="",
               ylabel="strict recitation %", ylim=(0, 115))
    ppl = pd.DataFrame([{"model": MODEL_LABELS[r.model], "source": src, "increase %": 100 * (v / base - 1)}
                        for src, col in (("ours", "perplexity_batch_mean"), ("paper", "paper_perplexity_batch_mean"))
                        for base in [table1.loc[table1.model == "baseline", col].iloc[0]]
                        for r, v in zip(table1.itertuples(), table1[col])])
    sns.barplot(ppl, x="source", y="increase %", hue="model", ax=axes[2], palette=METHOD_PALETTE)
    axes[2].set(title="perplexity increase (mean of per-batch exp)", xlabel="")
    fig.suptitle("Table 1: verbatim recitation before and after the edit (headline chosen on memorized_train)")
    fig.tight_layout()
    save(fig, out, "lm_table1.png")


def lm_sweep(sweep: pd.DataFrame, selection: dict, out: Path) -> None:
    """Recitation vs perplexity across cutoffs: the trade-off each method offers, per layer set."""
    base = sweep[sweep.method == "none"].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, (s, label) in zip(axes, (("memorized_train", "memorized (train: selection)"), ("quotes", "quotes"))):
        edits = sweep[sweep.method != "none"].assign(method=lambda f: f.method.map(MODEL_LABELS))
        sns.scatterplot(edits, x="perplexity_increase_pct", y=f"{s}_strict_pct", hue="layer_set", style="method",
                        ax=ax, s=45, legend=ax is axes[1])
        for (method, layer_set), g in edits[edits.method != "BSN"].groupby(["method", "layer_set"]):
            g = g.sort_values("cutoff")  # a path through the sweep, cutoff by cutoff (BSN grid points: no path)
            ax.plot(g.perplexity_increase_pct, g[f"{s}_strict_pct"], lw=0.6, color="grey",
                    ls="-" if method == "K-FAC" else ":")
        for m, c in selection.items():
            r = sweep[(sweep.method == m) & (sweep.layer_set == c["layer_set"])
                      & (sweep.setting == c["setting"])].iloc[0]
            ax.scatter(r.perplexity_increase_pct, r[f"{s}_strict_pct"], s=160, facecolors="none", edgecolors="black")
        ax.axhline(base[f"{s}_strict_pct"], color="grey", ls="--", lw=1)
        ax.set(xlabel="perplexity increase %, mean of per-batch exp (held-out text)", ylabel="strict recitation %",
               title=label)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Recitation vs perplexity over the rho / SVD sweep and the BSN grid (circled: the selected headline "
                 "edits)")
    fig.tight_layout()
    save(fig, out, "lm_recitation_vs_perplexity.png")


def lm_rho_profile(sweep: pd.DataFrame, selection: dict, out: Path) -> None:
    """The K-FAC sweep of the headline layer set against rho and against the kept pairs, with intervals."""
    layer_set = selection["kfac"]["layer_set"]
    curve = sweep[(sweep.method == "kfac") & (sweep.layer_set == layer_set)]
    counts = counted_metrics(sweep, selection_set=True)
    panels = [("strict recitation", {"memorized_train_strict_pct": "memorized (train: selection)", **{
                  f"{s}_strict_pct": label for s, label in LM_SETS.items()}}),
              ("task accuracy", {f"task_{f}": f for f in task_families(sweep)}),
              ("perplexity", {"perplexity_increase_pct": "perplexity increase % (no interval)"})]
    cutoff_profile(with_bands(curve, counts), panels, cutoff_steps(curve, "kfac", counts),
                   sweep[sweep.method == "none"].iloc[0],
                   f"K-FAC on {layer_set} (the headline layer set): smooth or abrupt in rho? (red: a step beyond the "
                   f"noise)", out, "lm_rho_profile.png")


def lm_tasks(tasks: pd.DataFrame, out: Path) -> None:
    """Fig. 3 style: retained accuracy per task family, with the paper's ranges."""
    rows = []
    for _, r in tasks.iterrows():
        label = r.family if r.above_chance else f"{r.family}\n(unedited at chance: left out)"
        for m in METHODS:
            rows.append({"family": label, "method": MODEL_LABELS[m], "retained %": r[f"{m}_retention_pct"],
                         "ci_low": r[f"{m}_retention_ci_low"], "ci_high": r[f"{m}_retention_ci_high"]})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    sns.barplot(frame, x="family", y="retained %", hue="method", ax=ax, palette=METHOD_PALETTE)
    interval_bars(ax, frame, x="family", hue="method", value="retained %")
    for i, (_, r) in enumerate(tasks.iterrows()):
        if pd.notna(r.paper_kfac_retention_low):
            ax.plot([i - 0.4, i + 0.4], [r.paper_kfac_retention_low] * 2, color="black", lw=1)
            ax.plot([i - 0.4, i + 0.4], [r.paper_kfac_retention_high] * 2, color="black", lw=1)
            ax.fill_between([i - 0.4, i + 0.4], r.paper_kfac_retention_low, r.paper_kfac_retention_high,
                            color="black", alpha=0.08, lw=0)
    ax.axhline(100, color="grey", ls="--", lw=1)
    ax.set(xlabel="", title="Retained accuracy per task family (edited / unedited; bars: 95% intervals, Donner-Zou);\n"
                            "band: paper's K-FAC range")
    save(fig, out, "lm_task_retention.png")


def lm_benchmark_retention(table: pd.DataFrame, out: Path) -> None:
    """Fig. 3 on the harness tasks: retention per task, grouped by family, the paper's family ranges."""
    rows = [{"task": f"{r.task}\n({r.family})", "method": MODEL_LABELS[m], "retained %": r[f"{m}_retention_pct"]}
            for _, r in table.iterrows() for m in METHODS]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 4.2))
    sns.barplot(pd.DataFrame(rows), x="task", y="retained %", hue="method", ax=ax, palette=METHOD_PALETTE)
    for i, (_, r) in enumerate(table.iterrows()):
        if pd.notna(r.paper_kfac_retention_low):
            ax.fill_between([i - 0.4, i + 0.4], r.paper_kfac_retention_low, r.paper_kfac_retention_high,
                            color="black", alpha=0.1, lw=0)
        if not r.baseline > 0:
            ax.text(i, 5, "unedited scores 0:\nno retention", ha="center", fontsize=8, color="grey")
    ax.axhline(100, color="grey", ls="--", lw=1)
    ax.tick_params(axis="x", labelrotation=30 if len(table) > 6 else 0)
    ax.set(xlabel="", title="Retained score per harness task (edited / unedited); band: paper's K-FAC range "
                            "for the family")
    save(fig, out, "lm_benchmark_retention.png")


def lm_tasks_vs_recitation(sweep: pd.DataFrame, tasks: pd.DataFrame, out: Path) -> None:
    """Beyond the paper's single operating point: every sweep edit's retained task accuracy against the
    recitation it leaves, so K-FAC and SVD compare at equal recitation, family by family."""
    base = sweep[sweep.method == "none"].iloc[0]
    edits = sweep[sweep.method != "none"].assign(method=lambda f: f.method.map(MODEL_LABELS))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.8), sharey=True, squeeze=False)
    for ax, (_, task) in zip(axes[0], tasks.iterrows()):
        family = task.family
        unedited = base[f"task_{family}"]
        retained = 100 * edits[f"task_{family}"] / unedited if unedited > 0 else float("nan")
        frame = edits.assign(retained=retained)
        sns.scatterplot(frame, x="memorized_val_strict_pct", y="retained", hue="layer_set", style="method", ax=ax,
                        s=40)
        ax.axhline(100, color="grey", ls="--", lw=1)
        ax.set(xlabel="strict recitation, memorized val %", ylabel="retained accuracy %",
               title=family if task.above_chance else f"{family} (unedited at chance)")
    handles = max((ax.get_legend_handles_labels() for ax in axes[0]), key=lambda hl: len(hl[0]))
    for ax in axes[0]:
        if ax.get_legend():
            ax.get_legend().remove()
    if handles[0]:  # one legend for all panels (a family at 0% unedited has no points)
        fig.legend(*handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Task accuracy kept vs recitation left, every edit of the sweep (lower left: recitation "
                 "removed, ability lost)")
    fig.tight_layout()
    save(fig, out, "lm_tasks_vs_recitation.png")


def lm_facts(facts: pd.DataFrame, out: Path) -> None:
    """Fig. 5 style: how much fact accuracy changes with how often the fact was seen in training."""
    if facts.empty:
        return
    frame = facts.melt(id_vars=["repeats", "baseline_pct"], value_vars=[f"{m}_change_pts" for m in METHODS],
                       var_name="method", value_name="accuracy change (points)")
    frame["method"] = frame.method.map({f"{m}_change_pts": MODEL_LABELS[m] for m in METHODS})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(facts, x="repeats", y="baseline_pct", marker="o", ax=axes[0], color="grey")
    axes[0].set(xscale="log", xlabel="copies of the fact in training", ylabel="unedited accuracy %",
                title="closed-book recall vs frequency")
    sns.lineplot(frame, x="repeats", y="accuracy change (points)", hue="method", marker="o", ax=axes[1],
                 palette=METHOD_PALETTE)
    axes[1].axhline(0, color="grey", ls="--", lw=1)
    axes[1].set(xscale="log", xlabel="copies of the fact in training", title="change after the headline edit")
    fig.tight_layout()
    save(fig, out, "lm_facts_vs_frequency.png")


def lm_stress(table6: pd.DataFrame, out: Path) -> None:
    """Table 6: exact-match tokens from the original prompt and the best perturbed one, mean +- sd."""
    rows = []
    for _, r in table6.iterrows():
        for source, prefix in (("ours", ""), ("paper (OLMo-2-7B)", "paper_")):
            for which in ("original", "perturbed"):
                rows.append({"source": source, "model": MODEL_LABELS[r.model], "prompt": which,
                             "mean": r[f"{prefix}{which}_mean"], "sd": r[f"{prefix}{which}_sd"]})
    frame = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, source in zip(axes, ("ours", "paper (OLMo-2-7B)")):
        part = frame[frame.source == source].dropna(subset=["mean"])
        models = list(dict.fromkeys(part.model))
        width = 0.38
        for k, which in enumerate(("original", "perturbed")):
            sub = part[part.prompt == which].set_index("model").reindex(models)
            x = [i + (k - 0.5) * width for i in range(len(models))]
            ax.bar(x, sub["mean"], width, yerr=sub["sd"], capsize=3, label=f"{which} prompt",
                   color=["#4c72b0", "#dd8452"][k], alpha=0.9)
        ax.set_xticks(range(len(models)), models)
        ax.set(title=source, ylabel="exact-match tokens (mean ± sd)")
        ax.legend(fontsize=8)
    n, t = int(table6.n.iloc[0]), int(table6.max_shift.iloc[0])
    fig.suptitle(f"Table 6: recitation under prompt perturbation: longest exact-match prefix of the continuation\n"
                 f"from the original prompt and the best of its left-extended and right-shifted prompts (t = {t}; "
                 f"{n} memorized validation windows)", fontsize=11)
    fig.tight_layout()
    save(fig, out, "lm_stress_test.png")


GROUP_LABELS = {"memorized_val": "memorized (validation)", "quotes": "quotes"}


def lm_band_retention(points: pd.DataFrame, correlation: pd.DataFrame, out: Path) -> None:
    """Fig. 4: a group's activation in the top and bottom curvature bands of the edited layers
    (relative to clean text) against how much of the group the K-FAC edit keeps, every edit of the
    sweep (small) and the headline edit (large); right: the headline layers' band profiles."""
    if points.empty:
        return
    frame = points.assign(group=points.group.map(lambda g: GROUP_LABELS.get(g, g.removeprefix("task_"))))
    groups = list(dict.fromkeys(frame.group))
    palette = dict(zip(groups, sns.color_palette("tab10", len(groups))))
    rho = correlation.set_index(["scope", "band"]).spearman_rho
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for ax, band, label in ((axes[0], "bottom50_ratio", "bottom 50%"), (axes[1], "top10_ratio", "top 10%")):
        sns.scatterplot(frame, x=band, y="retained_pct", hue="group", palette=palette, ax=ax, s=22, alpha=0.5,
                        legend=False)
        top = frame[frame.headline]
        ax.scatter(top[band], top.retained_pct, s=120, c=[palette[g] for g in top.group], edgecolors="black")
        ax.axvline(1, color="grey", ls="--", lw=1)
        ax.set(xlabel=f"{label} band activation / clean text's",
               ylabel="kept after the K-FAC edit, % of unedited",
               title=f"{label} band: Spearman {rho.get(('every K-FAC edit', band), float('nan')):.2f} over every "
                     f"edit,\n{rho.get(('headline K-FAC edit', band), float('nan')):.2f} at the headline (large)")
    head = frame[frame.headline]
    profile = head.melt(id_vars=["group"], value_vars=["top10_ratio", "band_10_25_ratio", "band_25_50_ratio",
                                                       "bottom50_ratio"], var_name="band", value_name="ratio")
    profile["band"] = profile.band.map({"top10_ratio": "top 10%", "band_10_25_ratio": "10-25%",
                                        "band_25_50_ratio": "25-50%", "bottom50_ratio": "bottom 50%"})
    sns.pointplot(profile, x="band", y="ratio", hue="group", palette=palette, ax=axes[2], markersize=4)
    axes[2].axhline(1, color="grey", ls="--", lw=1)
    axes[2].set(xlabel="curvature band (high to low)", ylabel="activation relative to clean text",
                title=f"band profiles in the headline layers ({head.layer_set.iloc[0] if len(head) else 'none'})")
    axes[2].legend(title="group", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Fig. 4: which abilities live low in the spectrum (paper: memorized data ~1.6x more active than "
                 "OpenBookQA in the bottom band of layers 23-25; math skews low)", fontsize=11)
    fig.tight_layout()
    save(fig, out, "lm_band_vs_retention.png")


def lm_training(history: list[dict], out: Path) -> None:
    frame = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(frame, x="step", y="loss", ax=ax)
    ax.set(title="LM training loss", yscale="log")
    save(fig, out, "lm_training.png")


FRONTIER_AXES = {"memorized_val_strict_pct": "memorized validation windows recited (strict, %)",
                 "quotes_strict_pct": "quotes recited (strict, %)",
                 "perplexity_increase_pct": "perplexity increase (%)",
                 "task_retention_loss_pct": "loss of mean task retention (100 - retention, %)"}


def draw(out: Path, *, table1: pd.DataFrame, sweep: pd.DataFrame, tasks: pd.DataFrame, facts: pd.DataFrame,
         activation: pd.DataFrame, selection: dict, table6: pd.DataFrame, bands: pd.DataFrame,
         band_correlation: pd.DataFrame, frontier: pd.DataFrame, history: list[dict] | None,
         benchmarks: pd.DataFrame | None = None, stability_overlap: pd.DataFrame | None = None,
         stability_edits: pd.DataFrame | None = None) -> None:
    """Every figure of the LM arm into `out` (the training loss only for a model trained here, the
    benchmark retention only with lm.benchmarks, the stability study only with lm.stability)."""
    lm_table1(table1, out)
    lm_stress(table6, out)
    lm_sweep(sweep, selection, out)
    lm_rho_profile(sweep, selection, out)
    lm_tasks(tasks, out)
    lm_tasks_vs_recitation(sweep, tasks, out)
    lm_facts(facts, out)
    lm_band_retention(bands, band_correlation, out)
    frontier_figure(frontier, FRONTIER_AXES, "Frontier of bases (LM): recitation left against damage, every method "
                    "swept over its own cutoff on the same layers", out, "lm_frontier.png")
    activation_bands(activation, out, "lm_activation_ratio.png",
                     "LM activation ratio per band (paper Fig. 2): memorized suffix positions vs clean text")
    if history is not None:
        lm_training(history, out)
    if benchmarks is not None:
        lm_benchmark_retention(benchmarks, out)
    if stability_overlap is not None:
        edit = stability_edits[stability_edits.method == "kfac"].iloc[0]
        stability_figure(stability_overlap, stability_edits, "memorized_val_strict_pct", "perplexity_increase_pct",
                         {"memorized_val_strict_pct": "strict recitation, memorized validation set %",
                          "perplexity_increase_pct": "perplexity increase % (over the model's own)"},
                         f"Seeds and checkpoints (LM): the curvature basis across training seeds and through "
                         f"training; K-FAC edits at rho {edit.cutoff:g}", out, "lm_stability.png")
