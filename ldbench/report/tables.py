"""Tables in the paper's layout: rows method × drift (no LD first), columns dataset · editor · metric.

One table model, three renderings (markdown, LaTeX, CSV). The best value of each column is marked
(direction from the metric's metadata); CIs are the bootstrap 95% intervals of the records.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ldbench.drift import Drift
from ldbench.metrics.scores import METRICS, display_name

FORMATS = ("markdown", "latex", "csv")


@dataclass(frozen=True)
class Cell:
    value: float | None
    ci95: tuple[float, float] | None
    n_seeds: int
    best: bool
    fmt: str

    def text(self, with_ci: bool) -> str:
        if self.value is None:
            return "—"
        out = self.fmt.format(self.value)
        if with_ci and self.ci95 is not None:
            out += f" [{self.fmt.format(self.ci95[0])}, {self.fmt.format(self.ci95[1])}]"
        if self.n_seeds > 1:
            out += f" (mean of {self.n_seeds} seeds)"
        return out


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[tuple[str, str, list[Cell]]]  # (method, drift label, cells)
    caption: str


def summarize(records: list[dict]) -> dict:
    """(dataset, editor, metric) -> (method, drift label) -> records (one per seed)."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    extractors = {}
    for r in records:
        cells[(r["dataset"], r["editor"], r["metric"])][(r["method"], Drift(**r["drift"]).label)].append(r)
        extractors[r["metric"]] = r["extractor"]
    return {"cells": cells, "extractors": extractors}


def build_table(records: list[dict]) -> Table:
    s = summarize(records)
    columns = sorted(s["cells"])
    rows = sorted({row for col in columns for row in s["cells"][col]}, key=lambda r: (r[0], r[1] != "no LD", r[1]))
    means = {col: {row: float(np.mean([r["value"] for r in recs])) for row, recs in s["cells"][col].items()}
             for col in columns}
    best = {}
    for col in columns:
        info = METRICS.get(col[2])
        best[col] = (max if info and info.higher_is_better else min)(means[col].values())
    out_rows = []
    for row in rows:
        cells = []
        for col in columns:
            recs = s["cells"][col].get(row)
            fmt = METRICS[col[2]].fmt if col[2] in METRICS else "{:.4g}"
            if not recs:
                cells.append(Cell(None, None, 0, False, fmt))
                continue
            ci = tuple(recs[0]["ci95"]) if len(recs) == 1 and recs[0].get("ci95") else None
            cells.append(Cell(means[col][row], ci, len(recs), means[col][row] == best[col], fmt))
        out_rows.append((row[0], row[1], cells))
    headers = [f"{ds} · {ed} · {display_name(m, s['extractors'][m])}" for ds, ed, m in columns]
    extractors = sorted(set(s["extractors"].values()))
    caption = (f"Features: {', '.join(extractors)}. Best per column in bold (lower is better for distances); "
               "brackets: bootstrap 95% CI over the generated set.")
    if any(e != "inception" for e in extractors):
        caption += (" FD/KD are Fréchet/kernel distances on an offline stand-in extractor, not Inception FID/KID,"
                    " and are not comparable with published FID values.")
    return Table(headers, out_rows, caption)


def render(table: Table, fmt: str, with_ci: bool = True) -> str:
    if fmt == "markdown":
        lines = ["| method | drift | " + " | ".join(table.columns) + " |", "|" + "---|" * (len(table.columns) + 2)]
        for method, drift, cells in table.rows:
            texts = [f"**{c.text(with_ci)}**" if c.best else c.text(with_ci) for c in cells]
            lines.append(f"| {method} | {drift} | " + " | ".join(texts) + " |")
        return "\n".join(lines) + f"\n\n{table.caption}\n"
    if fmt == "latex":
        def esc(text: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                         ("δ", r"$\delta$"), ("·", r"$\cdot$"), ("—", "--"), ("[", "{[}"), ("]", "{]}")):
                text = text.replace(a, b)
            return text

        lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{ll" + "c" * len(table.columns) + "}",
                 r"\toprule", "Method & Drift & " + " & ".join(esc(c) for c in table.columns) + r" \\", r"\midrule"]
        for method, drift, cells in table.rows:
            texts = [r"\textbf{" + esc(c.text(with_ci)) + "}" if c.best else esc(c.text(with_ci)) for c in cells]
            lines.append(f"{esc(method)} & {esc(drift)} & " + " & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + esc(table.caption) + "}", r"\end{table}"]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["method", "drift"] + [f"{c} {part}" for c in table.columns for part in ("value", "ci_low", "ci_high")])
        for method, drift, cells in table.rows:
            values = []
            for c in cells:
                values += [c.value if c.value is not None else "", *(c.ci95 if c.ci95 else ("", ""))]
            writer.writerow([method, drift, *values])
        return buf.getvalue()
    raise ValueError(fmt)


def main_table_markdown(records: list[dict]) -> str:
    if not records:
        return "_no results_\n"
    return render(build_table(records), "markdown")
