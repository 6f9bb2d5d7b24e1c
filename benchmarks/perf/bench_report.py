"""Benchmark: drawing the report's δ-sweep figure (one panel per metric) with fixed margins (ldbench)
against matplotlib's tight_layout and tight bounding box (the anchor).

    python benchmarks/perf/bench_report.py [--panels 4 12 36] [--repeat 3]

A suite's sweep figure has one panel per metric: the smoke suite's about 20, the counterfactual suite's
about 30 per editor. Both layouts draw the same panels (two drift placements, two δ values, error bars);
the anchor lays them out with `tight_layout` and saves with `bbox_inches="tight"`, which measure every
tick label twice more. Prints the best of --repeat seconds for each and the ratio anchor / ldbench (> 1:
ldbench faster). Not a test: run by hand.
"""

from __future__ import annotations

import argparse
import io
import time
from unittest import mock

import matplotlib.pyplot as plt

from ldbench.report import plots


def _series(panels: int) -> dict:
    return {f"metric_{i}": {"noise/init": [(0.0, 1.0, (0.9, 1.1)), (0.1, 1.2, (1.1, 1.3))],
                            "noise/every-step": [(0.0, 1.0, (0.9, 1.1)), (0.1, 1.25, (1.15, 1.35))]}
            for i in range(panels)}


def _anchor_grid(n_rows: int, n_cols: int):
    """The anchor's figure: 3.0 x 2.5 inches a panel, laid out when saved."""
    return plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.5 * n_rows), squeeze=False)


def _anchor_png(fig, tight: bool = True) -> bytes:
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _best(draw, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        draw()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, nargs="+", default=[4, 12, 36])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    draw = plots.sweep_curves.__wrapped__  # the figure itself, not the report's figure cache
    print(f"{'panels':>6} {'anchor s':>9} {'ldbench s':>10} {'ratio':>6}")
    for panels in args.panels:
        series = _series(panels)
        ours = _best(lambda s=series: draw(s), args.repeat)
        with mock.patch.object(plots, "_panel_grid", _anchor_grid), mock.patch.object(plots, "_png", _anchor_png):
            anchor = _best(lambda s=series: draw(s), args.repeat)
        print(f"{panels:>6} {anchor:>9.2f} {ours:>10.2f} {anchor / ours:>6.2f}")


if __name__ == "__main__":
    main()
