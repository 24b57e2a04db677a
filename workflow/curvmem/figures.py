"""Figures from the result tables (PNG, seaborn). The paper's numbers are drawn beside ours."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402
from .common import setup_logging  # noqa: E402

log = logging.getLogger(__name__)

METRIC_LABELS = {"memorized_train_pct": "memorized %",
                 "train_gt_acc_pct": "GT recovery %",
                 "val_acc_pct": "validation accuracy %"}
MODEL_LABELS = {"baseline": "unedited", "svd": "SVD", "kfac": "K-FAC"}


def save(fig, out: Path, name: str) -> None:
    path = out / name
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)
    log.info("wrote %s", path)


def vit_table2(table2: pd.DataFrame, out: Path) -> None:
    rows = []
    for _, r in table2.iterrows():
        for metric, label in METRIC_LABELS.items():
            rows.append({"source": "ours", "model": MODEL_LABELS[r.model],
                         "metric": label, "value": r[metric]})
            rows.append({"source": "paper (ImageNet ViT-B/16)", "model": MODEL_LABELS[r.model], "metric": label,
                         "value": r[f"paper_{metric}"]})
    frame = pd.DataFrame(rows)
    grid = sns.catplot(frame, x="metric", y="value", hue="model", col="source", kind="bar", height=4, aspect=1.3,
                       palette="deep")
    grid.set_axis_labels("", "% of images")
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        for container in ax.containers:
            ax.bar_label(container, fmt="%.1f", fontsize=7)
    grid.figure.suptitle("Table 2: label-noise memorization before and after the edit", y=1.03)
    save(grid.figure, out, "vit_table2.png")


def vit_sweep(sweep: pd.DataFrame, headline: dict, out: Path) -> None:
    """Rows: K-FAC vs rho, SVD vs dropped fraction; columns: the three Table 2 metrics."""
    base = sweep[sweep.method == "none"].iloc[0]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharey="col")
    for row, (method, xlabel) in enumerate((("kfac", "rho (fraction of curvature mass kept)"),
                                            ("svd", "fraction of singular values dropped"))):
        edits = sweep[sweep.method == method].copy()
        edits["x"] = edits.cutoff.map(lambda c: f"{c:g}")
        order = [f"{c:g}" for c in sorted(edits.cutoff.unique())]
        for col, (metric, label) in enumerate(METRIC_LABELS.items()):
            ax = axes[row, col]
            sns.pointplot(edits, x="x", y=metric, hue="layer_set", order=order, ax=ax, markersize=4,
                          legend=col == 2)
            ax.axhline(base[metric], color="grey", ls="--", lw=1)
            ax.set(xlabel=xlabel, ylabel=label, title=f"{MODEL_LABELS[method]}: {label}")
        axes[row, 2].legend(title="layer set", loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle(f"Cutoff sweep; dashed: unedited model; Table 2 uses {headline['layer_set']} at rho "
                 f"{headline['rho']:g} / SVD drop {headline['svd_drop_fraction']:g}")
    fig.tight_layout()
    save(fig, out, "vit_rho_sweep.png")


def vit_spectra(spectra: pd.DataFrame, out: Path) -> None:
    spectra = spectra.copy()
    spectra["relative rank"] = spectra.groupby(["module", "factor"])["rank"].transform(lambda r: r / r.max())
    spectra["block"] = spectra.module.str.extract(r"blocks\.(\d+)")[0].astype(int)
    spectra["layer"] = spectra.module.str.extract(r"\.(fc\d)$")[0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, factor, title in ((axes[0], "A", "A = E[a a^T] (layer inputs)"), (axes[1], "G", "G = E[g g^T] (output gradients)")):
        data = spectra[spectra.factor == factor]
        sns.lineplot(data, x="relative rank", y="cumulative_mass", hue="block", style="layer", ax=ax, palette="viridis")
        ax.set(title=title, xlabel="eigenvalue rank / dimension", ylabel="cumulative fraction of trace", xscale="log")
    fig.suptitle("Curvature spectra: how concentrated the K-FAC factors are")
    fig.tight_layout()
    save(fig, out, "vit_spectra.png")


def vit_activation(activation: pd.DataFrame, out: Path) -> None:
    activation_bands(activation, out, "vit_activation_ratio.png",
                     "Activation ratio per band (paper Fig. 2): > 1 means more active on memorized inputs",
                     "paper (ImageNet ViT-B/16, last block): top 10% band\n"
                     "more than 2x as active on clean inputs (ratio < 0.5)")


def vit_training(history: list[dict], out: Path) -> None:
    frame = pd.DataFrame(history).melt(id_vars="epoch", value_vars=["train_fit_pct", "mislabeled_fit_pct"],
                                       var_name="images", value_name="% predicting their (noisy) training label")
    frame["images"] = frame.images.map({"train_fit_pct": "all training images", "mislabeled_fit_pct": "mislabeled"})
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(frame, x="epoch", y="% predicting their (noisy) training label", hue="images", ax=ax)
    ax.set(title="Memorization during training (train mode, running)")
    save(fig, out, "vit_training.png")


LM_SETS = {"memorized_val": "memorized (validation)", "quotes": "quotes"}


def lm_table1(table1: pd.DataFrame, out: Path) -> None:
    rows = []
    for _, r in table1.iterrows():
        for s, label in LM_SETS.items():
            rows.append({"source": "ours", "model": MODEL_LABELS[r.model], "set": label, "strict": r[f"{s}_strict_pct"]})
            rows.append({"source": "paper (OLMo-2-7B)", "model": MODEL_LABELS[r.model], "set": label,
                         "strict": r[f"paper_{s}_strict_pct"]})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for ax, source in zip(axes, ("ours", "paper (OLMo-2-7B)")):
        sns.barplot(pd.DataFrame(rows).query("source == @source"), x="set", y="strict", hue="model", ax=ax,
                    palette="deep")
        for container in ax.containers:
            ax.bar_label(container, fmt="%.1f", fontsize=7)
        ax.set(title=source, xlabel="", ylabel="strict recitation %", ylim=(0, 110))
    ppl = pd.DataFrame([{"model": MODEL_LABELS[r.model], "source": src, "increase %": 100 * (v / base - 1)}
                        for src, col in (("ours", "perplexity_batch_mean"), ("paper", "paper_perplexity_batch_mean"))
                        for base in [table1.loc[table1.model == "baseline", col].iloc[0]]
                        for r, v in zip(table1.itertuples(), table1[col])])
    sns.barplot(ppl, x="source", y="increase %", hue="model", ax=axes[2], palette="deep")
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
        for (method, layer_set), g in edits.groupby(["method", "layer_set"]):
            g = g.sort_values("cutoff")  # a path through the sweep, cutoff by cutoff
            ax.plot(g.perplexity_increase_pct, g[f"{s}_strict_pct"], lw=0.6, color="grey",
                    ls="-" if method == "K-FAC" else ":")
        for m, c in selection.items():
            r = sweep[(sweep.method == m) & (sweep.layer_set == c["layer_set"]) & (sweep.cutoff == c["cutoff"])].iloc[0]
            ax.scatter(r.perplexity_increase_pct, r[f"{s}_strict_pct"], s=160, facecolors="none", edgecolors="black")
        ax.axhline(base[f"{s}_strict_pct"], color="grey", ls="--", lw=1)
        ax.set(xlabel="perplexity increase % (held-out text)", ylabel="strict recitation %", title=label)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Recitation vs perplexity over the rho / SVD sweep (circled: the selected headline edits)")
    fig.tight_layout()
    save(fig, out, "lm_recitation_vs_perplexity.png")


def lm_tasks(tasks: pd.DataFrame, out: Path) -> None:
    """Fig. 3 style: retained accuracy per task family, with the paper's ranges."""
    rows = []
    for _, r in tasks.iterrows():
        label = r.family if r.above_chance else f"{r.family}\n(unedited at chance: left out)"
        for m in ("kfac", "svd"):
            rows.append({"family": label, "method": MODEL_LABELS[m], "retained %": r[f"{m}_retention_pct"]})
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    sns.barplot(frame, x="family", y="retained %", hue="method", ax=ax, palette="deep")
    for i, (_, r) in enumerate(tasks.iterrows()):
        if pd.notna(r.paper_kfac_retention_low):
            ax.plot([i - 0.4, i + 0.4], [r.paper_kfac_retention_low] * 2, color="black", lw=1)
            ax.plot([i - 0.4, i + 0.4], [r.paper_kfac_retention_high] * 2, color="black", lw=1)
            ax.fill_between([i - 0.4, i + 0.4], r.paper_kfac_retention_low, r.paper_kfac_retention_high,
                            color="black", alpha=0.08, lw=0)
    ax.axhline(100, color="grey", ls="--", lw=1)
    ax.set(xlabel="", title="Retained accuracy per task family (edited / unedited); band: paper's K-FAC range")
    save(fig, out, "lm_task_retention.png")


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
    frame = facts.melt(id_vars=["repeats", "baseline_pct"], value_vars=["kfac_change_pts", "svd_change_pts"],
                       var_name="method", value_name="accuracy change (points)")
    frame["method"] = frame.method.map({"kfac_change_pts": "K-FAC", "svd_change_pts": "SVD"})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sns.lineplot(facts, x="repeats", y="baseline_pct", marker="o", ax=axes[0], color="grey")
    axes[0].set(xscale="log", xlabel="copies of the fact in training", ylabel="unedited accuracy %",
                title="closed-book recall vs frequency")
    sns.lineplot(frame, x="repeats", y="accuracy change (points)", hue="method", marker="o", ax=axes[1])
    axes[1].axhline(0, color="grey", ls="--", lw=1)
    axes[1].set(xscale="log", xlabel="copies of the fact in training", title="change after the headline edit")
    fig.tight_layout()
    save(fig, out, "lm_facts_vs_frequency.png")


def lm_training(history: list[dict], out: Path) -> None:
    frame = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(frame, x="step", y="loss", ax=ax)
    ax.set(title="LM training loss", yscale="log")
    save(fig, out, "lm_training.png")


def activation_bands(activation: pd.DataFrame, out: Path, name: str, title: str, note: str | None = None) -> None:
    if activation.empty:
        log.warning("no activation-ratio rows (nothing memorized): %s not drawn", name)
        return
    frame = activation.copy()
    frame["basis"] = frame.basis.map({"kfac": "curvature order (A eigenvectors)", "svd": "SVD order (W right singular vectors)"})
    grid = sns.catplot(frame, x="module", y="ratio", hue="band", col="basis", kind="bar", height=4, aspect=1.6,
                       palette="rocket")
    for ax in grid.axes.flat:
        ax.axhline(1, color="grey", lw=1, ls="--")
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    grid.set_axis_labels("", "memorized / clean activation")
    grid.set_titles("{col_name}")
    if note:
        grid.axes.flat[0].text(0.01, 0.98, note, transform=grid.axes.flat[0].transAxes, va="top", fontsize=8,
                               bbox=dict(facecolor="white", alpha=0.8, lw=0))
    grid.figure.suptitle(title, y=1.03)
    save(grid.figure, out, name)


def main(argv=None):
    p = argparse.ArgumentParser(description="Draw every figure of the configured arms into one folder.")
    for arg in ("vit-table2", "vit-sweep", "vit-activation", "vit-spectra", "vit-train-metrics", "lm-table1",
                "lm-sweep", "lm-tasks", "lm-facts", "lm-activation", "lm-selection", "lm-train-metrics"):
        p.add_argument(f"--{arg}")
    p.add_argument("--headline", default="{}", help="JSON: the vision headline setting")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    setup_logging()
    sns.set_theme(style="whitegrid", context="notebook")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.vit_table2:
        vit_table2(pd.read_csv(args.vit_table2), out)
        vit_sweep(pd.read_csv(args.vit_sweep), json.loads(args.headline), out)
        vit_spectra(io.load_parquet(args.vit_spectra), out)
        vit_activation(pd.read_csv(args.vit_activation), out)
        vit_training(io.load_json(args.vit_train_metrics)["history"], out)
    if args.lm_table1:
        lm_table1(pd.read_csv(args.lm_table1), out)
        lm_sweep(pd.read_csv(args.lm_sweep, keep_default_na=False, na_values=[""]), io.load_json(args.lm_selection), out)
        lm_tasks(pd.read_csv(args.lm_tasks), out)
        lm_tasks_vs_recitation(pd.read_csv(args.lm_sweep, keep_default_na=False, na_values=[""]),
                               pd.read_csv(args.lm_tasks), out)
        lm_facts(pd.read_csv(args.lm_facts), out)
        activation_bands(pd.read_csv(args.lm_activation), out, "lm_activation_ratio.png",
                         "LM activation ratio per band (paper Fig. 2): memorized suffix positions vs clean text")
    if args.lm_train_metrics:
        lm_training(io.load_json(args.lm_train_metrics)["history"], out)


if __name__ == "__main__":
    main()
