"""Figures of the report, drawn with seaborn/matplotlib and returned as PNG bytes (inlined as data URIs)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # headless: no display is ever needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def channel_distributions(groups: dict[str, np.ndarray], max_values: int = 20000, seed: int = 0) -> bytes:
    """One panel per latent channel: the distribution of latent values of each group (the paper's
    channel-wise latent distribution figure). `groups`: label -> latents (N, C, h, w)."""
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


def sample_grid(rows: list[tuple[str, list[np.ndarray]]], columns: list[str]) -> bytes:
    """A grid of gray images: one row per label, one column per entry (difference maps in a diverging map)."""
    n_rows, n_cols = len(rows), len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, img in enumerate(images):
            ax = axes[r][c]
            if columns[c].startswith("difference"):
                ax.imshow(img, cmap="RdBu_r", vmin=-0.5, vmax=0.5)
            else:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.tight_layout()
    return _png(fig)
