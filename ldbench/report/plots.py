"""Figures of the report, drawn with seaborn/matplotlib and returned as PNG bytes (inlined as data URIs)."""

from __future__ import annotations

import io

import numpy as np

from ldbench.report.figure_cache import kept


def _plotting():
    """(pyplot, seaborn), imported at the first drawing: with pandas they cost about 2 s on 2 cores, and a run
    whose figures are all kept (ldbench.report.figure_cache) draws none."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display is ever needed
    import matplotlib.pyplot as plt
    import seaborn as sns

    return plt, sns


def _png(fig, tight: bool = True) -> bytes:
    """The figure as PNG bytes, cropped to what was drawn unless `tight` is False (a figure laid out with
    fixed margins, which keep everything inside it)."""
    plt, _ = _plotting()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


@kept
def channel_distributions(groups: dict[str, np.ndarray], max_values: int = 20000, seed: int = 0) -> bytes:
    """One panel per latent channel: the distribution of latent values of each group (the paper's
    channel-wise latent distribution figure). `groups`: label -> latents (N, C, h, w)."""
    import pandas as pd

    _, sns = _plotting()
    rng = np.random.default_rng(seed)
    rows = []
    n_channels = next(iter(groups.values())).shape[1]
    for label, z in groups.items():
        for c in range(n_channels):
            values = z[:, c].ravel()
            if len(values) > max_values:
                values = rng.choice(values, max_values, replace=False)
            rows.append(pd.DataFrame({"value": values, "channel": f"channel {c}", "latents": label}))
    df = pd.concat(rows, ignore_index=True)
    # The x range covers the central 99% of all values: a few extreme natural-image latents would
    # otherwise squeeze every curve into a spike.
    lo, hi = np.percentile(df["value"], [0.5, 99.5])
    g = sns.displot(df, x="value", hue="latents", col="channel", kind="kde", common_norm=False, height=2.6,
                    aspect=1.0, facet_kws={"sharey": False}, clip=(lo - 0.5, hi + 0.5))
    g.set_titles("{col_name}")
    for ax in g.axes.flat:
        ax.axvline(0.0, color="grey", lw=0.6, ls=":")
        ax.set_xlim(lo - 0.5, hi + 0.5)
    return _png(g.figure)


@kept
def sample_grid(rows: list[tuple[str, list[np.ndarray]]], columns: list[str]) -> bytes:
    """A grid of gray images: one row per label, one column per entry (difference maps in a diverging map)."""
    plt, _ = _plotting()
    n_rows, n_cols = len(rows), len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = axes[r][c]
            # nearest: the pixels as generated, not smoothed by the upscale (and a third of the PNG's size)
            if columns[c].startswith("difference"):
                ax.imshow(img, cmap="RdBu_r", vmin=-0.5, vmax=0.5, interpolation="nearest")
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout()
    return _png(fig)


@kept
def sweep_curves(series: dict[str, dict[str, list[tuple[float, float, tuple[float, float] | None]]]],
                 metric_labels: dict[str, str] | None = None) -> bytes:
    """Small multiples of metric vs δ: one panel per metric, one line per drift placement.

    `series`: metric -> placement label -> [(δ, value, (ci_low, ci_high) or None)], points sorted by δ.
    Error bars are the records' bootstrap 95% CIs, so a reader sees at once whether a δ step moves a
    metric by more than its own sampling noise.
    """
    _, sns = _plotting()
    if not series:
        raise ValueError("sweep_curves needs at least one metric")
    metric_labels = metric_labels or {}
    n = len(series)
    n_cols = min(n, 4)
    n_rows = -(-n // n_cols)
    fig, axes = _panel_grid(n_rows, n_cols)
    palette = sns.color_palette("colorblind")
    placements = sorted({p for lines in series.values() for p in lines})
    colors = {p: palette[i % len(palette)] for i, p in enumerate(placements)}
    for ax, (metric, lines) in zip(axes.flat, series.items(), strict=False):
        for placement, points in lines.items():
            x = np.array([p[0] for p in points], dtype=float)
            y = np.array([p[1] for p in points], dtype=float)
            lo = np.array([p[2][0] if p[2] is not None else p[1] for p in points], dtype=float)
            hi = np.array([p[2][1] if p[2] is not None else p[1] for p in points], dtype=float)
            # A CI need not contain its point estimate (e.g. KD's subset mean); clip so errorbar never
            # receives a negative length.
            yerr = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
            ax.errorbar(x, y, yerr=yerr, marker="o", ms=3.5, capsize=2.5, lw=1.2, color=colors[placement],
                        label=placement)
        ax.axvline(0.0, color="grey", lw=0.6, ls=":")
        ax.set_title(metric_labels.get(metric, metric), fontsize=9)
        ax.set_xlabel("δ", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    legend: dict = {}  # every placement once, whichever panel drew it
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    labels, handles = list(legend), list(legend.values())
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    return _png(fig, tight=False)


# The sweep grid's margins in inches. A suite's sweep has one panel per metric (dozens), and measuring
# every tick label for tight_layout and a tight bounding box took 7.4 s for 36 panels against 3.2 s with
# fixed margins (benchmarks/perf/bench_report.py, 2 CPU cores); the labels' sizes are fixed, so fixed
# margins fit them.
_PANEL_W, _PANEL_H = 2.3, 1.7
_LEFT, _RIGHT, _TOP, _BOTTOM, _LEGEND = 0.6, 0.3, 0.3, 0.45, 0.3
_GAP_W, _GAP_H = 0.7, 0.75


def _panel_grid(n_rows: int, n_cols: int):
    """A figure of n_rows x n_cols panels of fixed size, with room for titles, ticks and a legend below."""
    plt, _ = _plotting()
    width = _LEFT + _RIGHT + n_cols * _PANEL_W + (n_cols - 1) * _GAP_W
    height = _TOP + _BOTTOM + _LEGEND + n_rows * _PANEL_H + (n_rows - 1) * _GAP_H
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=_LEFT / width, right=1 - _RIGHT / width, top=1 - _TOP / height,
                        bottom=(_BOTTOM + _LEGEND) / height, wspace=_GAP_W / _PANEL_W, hspace=_GAP_H / _PANEL_H)
    return fig, axes


@kept
def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], metric_labels: dict[str, str] | None = None,
               title: str = "") -> bytes:
    """ROC curves of one cell: one line per AUC metric (its AUC in the legend) and the chance diagonal.

    `curves`: metric -> (y_true in {0, 1}, score). A metric whose labels hold a single class has no ROC
    curve; it is listed in the legend as undefined instead of being silently dropped.
    """
    plt, sns = _plotting()
    from sklearn.metrics import roc_auc_score, roc_curve

    metric_labels = metric_labels or {}
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance (AUC 0.5)")
    palette = sns.color_palette("colorblind")
    for i, (metric, (y_true, score)) in enumerate(curves.items()):
        y_true, score = np.asarray(y_true).astype(int).ravel(), np.asarray(score, dtype=float).ravel()
        label = metric_labels.get(metric, metric)
        if len(np.unique(y_true)) < 2:
            ax.plot([], [], color=palette[i % len(palette)], label=f"{label}: AUC undefined (one class)")
            continue
        fpr, tpr, _ = roc_curve(y_true, score)
        auc = roc_auc_score(y_true, score)
        ax.plot(fpr, tpr, color=palette[i % len(palette)], lw=1.4, label=f"{label} (AUC {auc:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate", fontsize=8)
    ax.set_ylabel("true positive rate", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


@kept
def validation_figure_png(result: dict) -> bytes:
    """Distance against level, one panel per disturbance, with the real held-out floor as a dashed line."""
    plt, sns = _plotting()
    from ldbench.metrics.validation import verdict

    items = list(result["disturbances"].items())
    cols = min(3, max(1, len(items)))
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    palette = sns.color_palette("colorblind", 2)
    for ax, (name, r) in zip(axes.flat, items, strict=False):
        x = np.arange(1, len(r["values"]) + 1)
        ax.plot(x, r["values"], marker="o", color=palette[0] if r["passed"] else palette[1])
        ax.axhline(result["floor"], color="grey", ls="--", lw=1, label="real held-out")
        ax.set_xticks(x, [f"{s:g}" for s in r["levels"]])
        ax.set_title(f"{name} ({'pass' if r['passed'] else 'FAIL'})", fontsize=9)
        ax.set_xlabel(r["unit"], fontsize=8)
        ax.set_ylabel(f"{result['metric'].upper()} [{result['extractor']['name']}]", fontsize=8)
        ax.set_yscale("symlog", linthresh=max(abs(result["floor"]) * 0.1, 1e-6))
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    if items:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(verdict(result), fontsize=9)
    fig.tight_layout()
    return _png(fig)


@kept
def loss_curves(series: dict[str, list[float]], window: int = 20, title: str = "") -> bytes:
    """Training loss per optimizer step of the fine-tunes of one dataset × method, one colour per training
    drift: each step's loss (thin) and its moving average over `window` steps (thick)."""
    plt, sns = _plotting()
    if not series:
        raise ValueError("loss_curves: no series")
    fig, ax = plt.subplots(figsize=(5.0, 3.0))
    palette = sns.color_palette("colorblind")
    for i, (label, losses) in enumerate(series.items()):
        y = np.asarray(losses, dtype=float)
        x = np.arange(1, len(y) + 1)
        color = palette[i % len(palette)]
        ax.plot(x, y, color=color, lw=0.5, alpha=0.35)
        w = max(1, min(window, len(y)))
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1:], smooth, color=color, lw=1.6, label=f"{label} (last {w}: {smooth[-1]:.4g})")
    ax.set_xlabel("optimizer step", fontsize=8)
    ax.set_ylabel("training loss", fontsize=8)
    ax.set_yscale("log")
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)



@kept
def latent_checkpoints(series: dict[str, dict], reference: tuple | None = None, title: str = "") -> bytes:
    """Each latent channel's mean (top row) and std (bottom row) over generated samples and pixels at each
    checkpoint of the fine-tunes of one dataset × method, one colour per training drift (`series`: label ->
    the probe's arrays); `reference` = (mean (C,), std (C,)) of the real test latents, dashed."""
    plt, sns = _plotting()
    from ldbench.metrics.latent_stability import channel_summary

    if not series:
        raise ValueError("latent_checkpoints: no series")
    n_channels = next(iter(series.values()))["channel_mean"].shape[2]
    fig, axes = plt.subplots(2, n_channels, figsize=(1.9 * n_channels + 0.6, 3.6), sharex=True, squeeze=False)
    palette = sns.color_palette("colorblind")
    for i, (label, probe) in enumerate(series.items()):
        summary = channel_summary(probe["channel_mean"], probe["channel_mean_square"])
        for row, values in enumerate(summary):
            for c in range(n_channels):
                axes[row][c].plot(probe["steps"], values[:, c], color=palette[i % len(palette)], lw=1.4,
                                  marker=".", label=label if row == c == 0 else None)
    for c in range(n_channels):
        axes[0][c].set_title(f"channel {c}", fontsize=8)
        axes[1][c].set_xlabel("optimizer step", fontsize=7)
        for row in range(2):
            if reference is not None:
                axes[row][c].axhline(reference[row][c], color="0.2", ls="--", lw=0.9,
                                     label="real test latents" if row == c == 0 else None)
            axes[row][c].tick_params(labelsize=6)
    axes[0][0].set_ylabel("mean", fontsize=7)
    axes[1][0].set_ylabel("std", fontsize=7)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title + ": generated latents at checkpoints" if title else "generated latents at checkpoints",
                 fontsize=8)
    fig.tight_layout()
    return _png(fig)
