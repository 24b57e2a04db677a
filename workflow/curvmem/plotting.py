"""Plotting helpers both arms' figures share (PNG via seaborn; written atomically)."""
from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, PercentFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import io  # noqa: E402

log = logging.getLogger(__name__)

MODEL_LABELS = {"baseline": "unedited", "svd": "SVD", "kfac": "K-FAC", "bsn": "BSN", "bsn (ours)": "BSN (ours)"}
METHOD_PALETTE = {"unedited": "#7f7f7f", "K-FAC": "#1f77b4", "SVD": "#ff7f0e", "BSN": "#2ca02c",
                  "BSN (ours)": "#2ca02c"}


def theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook")


def interval_bars(ax, frame: pd.DataFrame, x: str, hue: str, value: str = "value", low: str = "ci_low",
                  high: str = "ci_high") -> None:
    """95% intervals as error bars on a seaborn barplot drawn from `frame` with this x and hue (both
    in order of appearance, seaborn's default order for string columns)."""
    x_order, hue_order = list(dict.fromkeys(frame[x])), list(dict.fromkeys(frame[hue]))
    assert len(ax.containers) >= len(hue_order), "draw the bars before their intervals"
    cells = frame.set_index([x, hue])
    for container, h in zip(ax.containers, hue_order):
        for bar, xv in zip(container, x_order):
            if (xv, h) not in cells.index:
                continue
            r = cells.loc[(xv, h)]
            if pd.isna(r[low]) or pd.isna(r[value]):
                continue
            ax.errorbar(bar.get_x() + bar.get_width() / 2, r[value], fmt="none", ecolor="black", lw=0.8, capsize=2,
                        yerr=[[r[value] - r[low]], [r[high] - r[value]]])


def save(fig, out: Path, name: str) -> None:
    path = Path(out) / name
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)
    log.info("wrote %s", path)


def cost_figure(cost: pd.DataFrame, out: Path) -> None:
    """Seconds and peak memory each method needs beyond the trained model, per arm (the cost table)."""
    if cost.empty:
        return
    frame = cost.assign(method=cost.method.map(MODEL_LABELS))
    grid = sns.catplot(frame, x="scope", y="seconds", hue="method", col="arm", kind="bar", height=4, aspect=1.2,
                       palette=METHOD_PALETTE, sharey=False)
    for ax, arm in zip(grid.axes.flat, grid.col_names):
        ax.set_yscale("log")
        for container, method in zip(ax.containers, [t.get_text() for t in grid.legend.texts]):
            mb = frame[(frame.arm == arm) & (frame.method == method)].set_index("scope").peak_rss_mb
            labels = [f"{mb.get(s, float('nan')):.0f} MB" for s in ("headline edit", "whole sweep")]
            ax.bar_label(container, labels=labels[:len(container)], fontsize=7)
    grid.set_axis_labels("", "seconds (log scale)")
    grid.set_titles("{col_name} arm")
    grid.figure.suptitle("Cost beyond the trained model (labels: peak memory): K-FAC = factors + eigendecompositions "
                         "+ edits; SVD = decompositions + edits; BSN = mask training", y=1.04, fontsize=10)
    save(grid.figure, out, "cost.png")


def activation_bands(activation: pd.DataFrame, out: Path, name: str, title: str, note: str | None = None) -> None:
    if activation.empty:
        log.warning("no activation-ratio rows (nothing memorized): %s not drawn", name)
        return
    frame = activation.copy()
    frame["basis"] = frame.basis.map({"kfac": "curvature order (A eigenvectors)", "svd": "SVD order (W right singular vectors)"})
    if frame.module.nunique() > MAX_BAR_MODULES:  # paper scale (e.g. 64 OLMo modules): bars would not read
        band_heatmaps(frame, out, name, title, note)
        return
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


MAX_BAR_MODULES = 24  # up to ViT-B/16's 12 blocks x 2 MLP layers as grouped bars; more as heatmaps


def band_heatmaps(frame: pd.DataFrame, out: Path, name: str, title: str, note: str | None) -> None:
    """The activation-ratio table as one heatmap per basis: a row per module (model order), a column
    per band, coloured around 1 (red: more active on memorized inputs)."""
    bands = list(dict.fromkeys(frame.band))
    modules = list(dict.fromkeys(frame.module))
    kinds = list(dict.fromkeys(frame.basis))
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 1.5 + 0.22 * len(modules)), squeeze=False)
    spread = max(float((frame.ratio - 1).abs().max()), 0.05)
    for ax, kind in zip(axes[0], kinds):
        grid = frame[frame.basis == kind].pivot(index="module", columns="band", values="ratio").reindex(modules)[bands]
        sns.heatmap(grid, ax=ax, cmap="RdBu_r", center=1, vmin=1 - spread, vmax=1 + spread, annot=len(modules) <= 40,
                    fmt=".2f", annot_kws={"fontsize": 6}, cbar_kws={"label": "memorized / clean activation"})
        ax.set(title=kind, xlabel="band (high to low)", ylabel="")
        ax.tick_params(axis="y", labelsize=7)
        ax.tick_params(axis="x", labelsize=8, labelrotation=25)
    if note:
        fig.text(0.01, 0.995, note, va="top", fontsize=8)
    fig.suptitle(title, y=1.0 + 0.3 / (1.5 + 0.22 * len(modules)))
    fig.tight_layout()
    save(fig, out, name)


def cutoff_profile(curve: pd.DataFrame, panels: list[tuple[str, dict[str, str]]], steps: pd.DataFrame,
                   baseline: pd.Series, title: str, out: Path, name: str) -> None:
    """Metrics of one method on one layer set against its cutoff (left) and against the kept fraction
    of pairs (right, log scale), one row per panel (title, {metric: label}); shaded: 95% Wilson
    intervals where the curve has `<metric>_ci_low/high`; red spans: steps whose change is beyond the
    noise (`sweep.cutoff_steps`); dashed: the unedited model."""
    fig, axes = plt.subplots(len(panels), 2, figsize=(13, 3.6 * len(panels)), squeeze=False)
    curve = curve.sort_values("cutoff")
    colors = dict(zip([m for _, metrics in panels for m in metrics], sns.color_palette("tab10", 10) * 3))
    for row, (panel_title, metrics) in enumerate(panels):
        for col, x in enumerate(("cutoff", "kept_fraction")):
            ax = axes[row, col]
            for metric, label in metrics.items():
                ax.plot(curve[x], curve[metric], marker="o", ms=3, lw=1.2, color=colors[metric], label=label)
                if f"{metric}_ci_low" in curve:
                    ax.fill_between(curve[x], curve[f"{metric}_ci_low"], curve[f"{metric}_ci_high"], alpha=0.15,
                                    color=colors[metric], lw=0)
                if metric in baseline and not pd.isna(baseline[metric]):
                    ax.axhline(baseline[metric], color=colors[metric], ls="--", lw=0.8)
            jumps = steps[steps.metric.isin(list(metrics)) & steps.beyond_noise] if len(steps) else steps
            ends = ("cutoff_from", "cutoff_to") if x == "cutoff" else ("kept_from", "kept_to")
            for lo, hi in set(jumps[list(ends)].itertuples(index=False, name=None)):  # once per step, any metric
                ax.axvspan(lo, hi, color="red", alpha=0.08, lw=0)
            drawn = bool(curve[list(metrics)].notna().any().any())
            if not drawn:  # e.g. no window recited by a random-weight model: an empty panel, said so
                ax.text(0.5, 0.5, "no values (nothing measured)", ha="center", va="center", transform=ax.transAxes)
            elif x == "kept_fraction":
                ax.set_xscale("log")
            ax.set(xlabel="rho (fraction of curvature mass kept)" if x == "cutoff" else
                   "fraction of coefficient pairs kept (log scale)", ylabel="%", title=panel_title)
        axes[row, 1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    save(fig, out, name)


FRONTIER_LABELS = {"none": "unedited", "kfac": "K-FAC (the paper)", "kfac_mc": "K-FAC, true Fisher (sampled labels)",
                   "kfac_empirical": "K-FAC, empirical Fisher (data labels)", "kfac_scaled": "K-FAC, dropped part x alpha",
                   "ekfac": "EK-FAC (corrected eigenvalues)",
                   "svd": "SVD of W", "bsn": "BalancedSubnet", "activation": "A only (G = identity)",
                   "magnitude": "magnitude (identity basis)", "random": "random orthogonal basis"}
FRONTIER_STYLE = {"none": ("#7f7f7f", "*"), "kfac": ("#1f77b4", "o"), "kfac_mc": ("#393b79", "d"),
                  "kfac_empirical": ("#393b79", "d"), "kfac_scaled": ("#17becf", "v"), "ekfac": ("#bcbd22", "h"),
                  "svd": ("#ff7f0e", "s"), "bsn": ("#2ca02c", "D"), "activation": ("#9467bd", "^"),
                  "magnitude": ("#8c564b", "P"), "random": ("#e377c2", "X")}


def frontier_figure(points: pd.DataFrame, axis_labels: dict[str, str], title: str, out: Path, name: str,
                    columns: int = 2) -> None:
    """One panel per memorization x damage pair of the frontier table (`curvmem.frontier`): each
    method's edits joined in order of damage, the unedited model a star, the Pareto front a black
    step line through its points (ringed)."""
    panels = list(dict.fromkeys(points.panel))
    if not panels:  # e.g. nothing memorized, so no recitation to plot: said, not drawn
        log.warning("no frontier points with both a memorization and a damage value: %s not drawn", name)
        return
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.2 * columns, 4.6 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        frame = points[points.panel == panel]
        for method, edits in frame.groupby("method", sort=False):
            color, marker = FRONTIER_STYLE[method]
            edits = edits.sort_values(["layer_set", "damage_value"])
            for i, (layer_set, curve) in enumerate(edits.groupby("layer_set", sort=False, dropna=False)):
                ax.plot(curve.damage_value, curve.memorization_pct, marker=marker, color=color, lw=1, alpha=0.85,
                        ms=11 if method == "none" else 5, ls=("-", "--", ":", "-.")[i % 4],
                        label=FRONTIER_LABELS[method] + (f" ({layer_set})" if edits.layer_set.nunique() > 1 else ""))
        front = frame[frame.on_front].sort_values("damage_value")
        ax.step(front.damage_value, front.memorization_pct, where="post", color="black", lw=1.4, zorder=0,
                label="Pareto front")
        ax.scatter(front.damage_value, front.memorization_pct, s=90, facecolors="none", edgecolors="black", lw=1)
        memorization, damage = frame.memorization.iloc[0], frame.damage.iloc[0]
        ax.set(xlabel=axis_labels.get(damage, damage), ylabel=axis_labels.get(memorization, memorization),
               title=f"{axis_labels.get(memorization, memorization)}\nvs {axis_labels.get(damage, damage)}")
        ax.title.set_fontsize(10)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    save(fig, out, name)


STABILITY_STYLE = {"unedited": ("#7f7f7f", "*"), "own": ("#1f77b4", "o"), "other seed": ("#d62728", "X"),
                   "checkpoint": ("#2ca02c", "s")}
STABILITY_SHADES = {"other seed": "Reds", "checkpoint": "Greens"}  # one shade per compared pair, darker later


def _interval(rows: pd.DataFrame, metric: str):
    """Error bar lengths of a metric with a 95% interval (`<metric>_ci_low`, `_ci_high`); None without one."""
    if f"{metric}_ci_low" not in rows:
        return None
    return [rows[metric] - rows[f"{metric}_ci_low"], rows[f"{metric}_ci_high"] - rows[metric]]


def stability_figure(overlap: pd.DataFrame, edits: pd.DataFrame, memorization: str, damage: str,
                     axis_labels: dict[str, str], title: str, out: Path, name: str) -> None:
    """Seeds and checkpoints (`curvmem.stability`): the top-k eigenspace overlap of G and of A against
    k/d, each compared pair averaged over the modules (band: the modules' range) with chance as a dotted
    line, and the headline K-FAC edit of each member's weights with its own, another seed's and a
    checkpoint's basis, memorization against damage with 95% intervals."""
    from .subspaces import TOP_FRACTIONS  # here: the module imports torch, the other figures need none

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    spans = overlap[overlap.factor != "pairs"]
    # k / d of a module is its nominal fraction rounded to whole vectors: modules of other widths meet there
    nominal = np.array(TOP_FRACTIONS)[np.abs(np.log(spans.cutoff.to_numpy()[:, None] / TOP_FRACTIONS)).argmin(1)]
    spans = spans.assign(cutoff=nominal)
    for ax, factor in zip(axes[:2], ("G", "A")):
        rows = spans[spans.factor == factor]
        pairs = list(rows.groupby(["a", "b", "relation"], sort=False))
        keys = [key for key, _ in pairs]
        for (a, b, relation), pair in pairs:
            curve = pair.groupby("cutoff").overlap.agg(["mean", "min", "max"])
            same = [key for key in keys if key[2] == relation]
            shade = 0.45 + 0.45 * same.index((a, b, relation)) / max(1, len(same) - 1)
            color = plt.get_cmap(STABILITY_SHADES[relation])(shade)
            ax.plot(curve.index, curve["mean"], marker="o", ms=3, color=color, alpha=0.9,
                    ls="-" if relation == "checkpoint" else "--", label=f"{a} vs {b}")
            ax.fill_between(curve.index, curve["min"], curve["max"], color=color, alpha=0.10)
        chance = rows.groupby("cutoff").chance.mean()
        ax.plot(chance.index, chance.values, color="black", ls=":", lw=1, label="chance (k/d)")
        ax.set(xscale="log", ylim=(0, 1.02), xlabel="top k / d of the eigenvectors",
               ylabel="mean squared cosine of the principal angles",
               title=f"{factor}'s top-k eigenspaces (mean over the modules)")
        ax.set_xticks(TOP_FRACTIONS)
        ax.xaxis.set_major_formatter(PercentFormatter(1, decimals=0))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.legend(fontsize=7)
    ax = axes[2]
    for relation, rows in edits.groupby("relation", sort=False):
        rows = rows[(rows.method == "kfac") | (rows.relation == "unedited") & (rows.method == "none")]
        color, marker = STABILITY_STYLE[relation]
        ax.errorbar(rows[damage], rows[memorization], fmt=marker, color=color, ms=8 if marker == "*" else 6,
                    capsize=2, lw=0.8, label=relation if relation != "own" else "own basis (the paper's edit)",
                    xerr=_interval(rows, damage), yerr=_interval(rows, memorization))
        for r in rows.itertuples():
            tag = r.weights if relation in ("unedited", "own") else f"{r.weights} | {r.basis}"
            ax.annotate(tag, (getattr(r, damage), getattr(r, memorization)), fontsize=6, alpha=0.7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=axis_labels[damage], ylabel=axis_labels[memorization],
           title="K-FAC edit: weights | basis (bars: 95% Wilson)")
    ax.legend(fontsize=7)
    fig.suptitle(title, y=1.02)
    fig.tight_layout()
    save(fig, out, name)
