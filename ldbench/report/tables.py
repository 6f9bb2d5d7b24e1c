"""Tables in the paper's layout: rows method × LD (no / yes), columns per dataset and metric."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ldbench.metrics.scores import METRICS, display_name


def _fmt(metric: str, value: float) -> str:
    info = METRICS.get(metric)
    return (info.fmt if info else "{:.4g}").format(value)


def summarize(records: list[dict]) -> dict:
    """(dataset, editor, metric) -> (method, drift label) -> mean over seeds, CI of the first seed."""
    from ldbench.drift import Drift

    cells: dict = defaultdict(lambda: defaultdict(list))
    extractors = {}
    for r in records:
        label = Drift(**r["drift"]).label
        cells[(r["dataset"], r["editor"], r["metric"])][(r["method"], label)].append(r)
        extractors[r["metric"]] = r["extractor"]
    return {"cells": cells, "extractors": extractors}


def main_table_markdown(records: list[dict]) -> str:
    """Markdown table: one row per (method, drift), one column per (dataset, editor, metric); the best
    value of each column in bold (direction from the metric's metadata); 95% CIs in brackets."""
    if not records:
        return "_no results_\n"
    s = summarize(records)
    columns = sorted(s["cells"])
    rows = sorted({row for col in columns for row in s["cells"][col]}, key=lambda r: (r[0], r[1] != "no LD", r[1]))
    header = ["method", "drift"] + [f"{ds} · {ed} · {display_name(m, s['extractors'][m])}" for ds, ed, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for col in columns:
        info = METRICS.get(col[2])
        vals = {row: float(np.mean([r["value"] for r in recs])) for row, recs in s["cells"][col].items()}
        if vals:
            pick = max if (info and info.higher_is_better) else min
            best[col] = pick(vals.values())
    for row in rows:
        out = [row[0], row[1]]
        for col in columns:
            recs = s["cells"][col].get(row)
            if not recs:
                out.append("—")
                continue
            value = float(np.mean([r["value"] for r in recs]))
            text = _fmt(col[2], value)
            ci = recs[0].get("ci95")
            if ci and len(recs) == 1:
                text += f" [{_fmt(col[2], ci[0])}, {_fmt(col[2], ci[1])}]"
            elif len(recs) > 1:
                text += f" (mean of {len(recs)} seeds)"
            out.append(f"**{text}**" if value == best.get(col) else text)
        lines.append("| " + " | ".join(out) + " |")
    ext = sorted(set(s["extractors"].values()))
    caption = (f"\nFeatures: {', '.join(ext)}. Lower is better for every distance; best per column in bold; "
               "brackets: bootstrap 95% CI over the generated set.")
    if any(e != "inception" for e in ext):
        caption += (" FD/KD are Fréchet/kernel distances on an offline stand-in extractor, not Inception FID/KID, "
                    "and are not comparable with published FID values.")
    return "\n".join(lines) + "\n" + caption + "\n"
