"""Figures of the vision arm: Table 2, the cutoff sweep, spectra, activation bands, training."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..plotting import (MODEL_LABELS, activation_bands, cutoff_profile, frontier_figure, interval_bars, save,
                        stability_figure)
from ..sweep import cutoff_steps, with_bands
from .tables import COUNTS, Headline

METRIC_LABELS = {"memorized_train_pct": "memorized %",
                 "train_gt_acc_pct": "GT recovery %",
                 "val_acc_pct": "validation accuracy %"}


def vit_table2(table2: pd.DataFrame, out: Path) -> None:
    rows = []
    for _, r in table2.iterrows():
        for metric, label in METRIC_LABELS.items():
            rows.append({"source": "ours", "model": MODEL_LABELS[r.model], "metric": label, "value": r[metric],
                         "ci_low": r[f"{metric}_ci_low"], "ci_high": r[f"{metric}_ci_high"]})
            rows.append({"source": "paper (ImageNet ViT-B/16)", "model": MODEL_LABELS[r.model], "metric": label,
                         "value": r[f"paper_{metric}"]})
    frame = pd.DataFrame(rows)
    grid = sns.catplot(frame, x="metric", y="value", hue="model", col="source", kind="bar", height=4, aspect=1.3,
                       palette="deep")
    grid.set_axis_labels("", "% of images")
    grid.set_titles("{col_name}")
    for ax in grid.axes.flat:
        for container in ax.containers:
            ax.bar_label(container, fmt="%.1f", fontsize=7, padding=6)
    interval_bars(grid.axes.flat[0], frame[frame.source == "ours"], x="metric", hue="model")
    grid.figure.suptitle("Table 2: label-noise memorization before and after the edit (bars: 95% Wilson intervals "
                         "over the images; BSN: our extension,\nthe paper has no ViT BalancedSubnet)", y=1.06)
    save(grid.figure, out, "vit_table2.png")


def vit_sweep(sweep: pd.DataFrame, headline: Headline, out: Path) -> None:
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
    fig.suptitle(f"Cutoff sweep; dashed: unedited model; Table 2 uses {headline.layer_set} at rho "
                 f"{headline.rho:g} / SVD drop {headline.svd_drop_fraction:g}")
    fig.tight_layout()
    save(fig, out, "vit_rho_sweep.png")


def vit_rho_profile(sweep: pd.DataFrame, headline: Headline, out: Path) -> None:
    """The K-FAC sweep of the headline layer set against rho and against the kept pairs, with intervals."""
    curve = sweep[(sweep.method == "kfac") & (sweep.layer_set == headline.layer_set)]
    cutoff_profile(with_bands(curve, COUNTS), [("Table 2 metrics", METRIC_LABELS)], cutoff_steps(curve, "kfac", COUNTS),
                   sweep[sweep.method == "none"].iloc[0],
                   f"K-FAC on {headline.layer_set}: smooth or abrupt in rho? (red: a step beyond the noise)",
                   out, "vit_rho_profile.png")


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


def vit_weight_decay(family: pd.DataFrame, out: Path) -> None:
    """Paper App. H: band separation and the headline edit's outcome against the training weight decay."""
    wds = sorted(family.weight_decay.unique())
    x = {wd: i for i, wd in enumerate(wds)}  # evenly spaced: the family's decays span decades, 0 included
    members = family.drop_duplicates("weight_decay").sort_values("weight_decay")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    for column, label in (("top10_ratio", "top 10% band"), ("bottom50_ratio", "bottom 50% band")):
        ax.plot(members.weight_decay.map(x), members[column], marker="o", label=label)
    ax.axhline(1, color="grey", ls="--", lw=1)
    ax.set(title="Memorized / clean activation ratio\n(headline layers, curvature bands)", ylabel="ratio")
    ax.legend(fontsize=8)
    for ax, metric in zip(axes[1:], ("memorized_train_pct", "val_acc_pct")):
        for model, style, shift in (("baseline", "--", -0.04), ("kfac", "-", 0.04)):  # shifted: intervals overlap
            rows = family[family.model == model].sort_values("weight_decay")
            ax.errorbar(rows.weight_decay.map(x) + shift, rows[metric], ls=style, marker="o", capsize=3,
                        yerr=[rows[metric] - rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"] - rows[metric]],
                        label=MODEL_LABELS[model])
        ax.set(title=f"{METRIC_LABELS[metric]} (bars: 95% Wilson intervals)", ylabel=METRIC_LABELS[metric])
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(range(len(wds)), [f"{wd:g}" for wd in wds])
        ax.set_xlabel("training weight decay")
    fig.suptitle("App. H: the weight-decay family; paper (ImageNet ViT-B/16, wd 0.05-0.6): higher decay separates "
                 "memorization more clearly", y=1.03)
    fig.tight_layout()
    save(fig, out, "vit_weight_decay.png")


def draw(out: Path, *, table2: pd.DataFrame, sweep: pd.DataFrame, activation: pd.DataFrame, spectra: pd.DataFrame,
         history: list[dict], headline: Headline, weight_decay: pd.DataFrame, frontier: pd.DataFrame,
         stability_overlap: pd.DataFrame | None = None, stability_edits: pd.DataFrame | None = None) -> None:
    """Every figure of the vision arm into `out`."""
    vit_table2(table2, out)
    vit_sweep(sweep, headline, out)
    vit_rho_profile(sweep, headline, out)
    vit_spectra(spectra, out)
    vit_activation(activation, out)
    vit_training(history, out)
    vit_weight_decay(weight_decay, out)
    frontier_figure(frontier, {"memorized_train_pct": "mislabeled images still memorized (%)",
                               "val_acc_drop_pts": "validation accuracy lost (points)"},
                    "Frontier of bases (vision): memorization left against damage, every method swept over its "
                    "own cutoff on the same layers", out, "vit_frontier.png")
    if stability_overlap is not None:
        stability_figure(stability_overlap, stability_edits, "memorized_train_pct", "val_acc_pct",
                         METRIC_LABELS, f"Seeds and checkpoints (vision): the curvature basis of {headline.layer_set}"
                         f" across training seeds and through training; edits at rho {headline.rho:g}", out,
                         "vit_stability.png")
