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
from ldbench.metrics.scores import (
    CEILING_EDITOR,
    CEILING_METHOD,
    FLOOR_EDITOR,
    FLOOR_METHOD,
    display_name,
    is_ceiling,
    is_floor,
    metric_info,
)

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


FLOOR_ROW = (FLOOR_METHOD, FLOOR_EDITOR)  # the real held-out floor's row (ldbench.runner.floor), first in every table
# real images through the autoencoder (ldbench.runner.autoencoder), second
CEILING_ROW = (CEILING_METHOD, CEILING_EDITOR)
ANCHOR_ROWS = (FLOOR_ROW, CEILING_ROW)  # rows that read a generated set's number, never contenders themselves


def is_anchor(record: dict) -> bool:
    return is_floor(record) or is_ceiling(record)


def summarize(records: list[dict]) -> dict:
    """(dataset, editor, metric) -> (method, drift label) -> records (one per seed). The real held-out floor
    (method `real`, editor `held-out`) and the autoencoder's ceiling (method `autoencoder`, editor
    `reconstruction`) are put in every editor's column of their dataset and metric, so they are the first
    two rows of every realism table."""
    cells: dict = defaultdict(lambda: defaultdict(list))
    extractors = {}
    anchors = [r for r in records if is_anchor(r)]
    for r in records:
        if not is_anchor(r):
            cells[(r["dataset"], r["editor"], r["metric"])][(r["method"], Drift(**r["drift"]).label)].append(r)
            extractors[r["metric"]] = r["extractor"]
    for r in anchors:
        columns = [c for c in cells if c[0] == r["dataset"] and c[2] == r["metric"]]
        for column in columns or [(r["dataset"], r["editor"], r["metric"])]:
            cells[column][(r["method"], r["editor"])].append(r)
        extractors[r["metric"]] = r["extractor"]
    return {"cells": cells, "extractors": extractors}


def row_order(row: tuple[str, str]) -> tuple:
    """The floor first, the autoencoder's ceiling second, then per method no LD before the LD settings."""
    return (ANCHOR_ROWS.index(row) if row in ANCHOR_ROWS else len(ANCHOR_ROWS), row[0], row[1] != "no LD", row[1])


def build_table(records: list[dict]) -> Table:
    s = summarize(records)
    columns = sorted(s["cells"])
    rows = sorted({row for col in columns for row in s["cells"][col]}, key=row_order)
    means = {col: {row: float(np.mean([r["value"] for r in recs])) for row, recs in s["cells"][col].items()}
             for col in columns}
    best = {}
    for col in columns:
        info = metric_info(col[2])
        generated = [v for row, v in means[col].items() if row not in ANCHOR_ROWS]  # floor, ceiling: no contenders
        best[col] = (max if info and info.higher_is_better else min)(generated) if generated else None
    out_rows = []
    for row in rows:
        cells = []
        for col in columns:
            recs = s["cells"][col].get(row)
            fmt = metric_info(col[2]).fmt if metric_info(col[2]) else "{:.4g}"
            if not recs:
                cells.append(Cell(None, None, 0, False, fmt))
                continue
            ci = tuple(recs[0]["ci95"]) if len(recs) == 1 and recs[0].get("ci95") else None
            cells.append(Cell(means[col][row], ci, len(recs), means[col][row] == best[col], fmt))
        out_rows.append((row[0], row[1], cells))
    failed = {col for col in columns for recs in s["cells"][col].values() for r in recs
              if r.get("details", {}).get("extractor_validation") == "failed"}
    headers = [f"{ds} · {ed} · {display_name(m, s['extractors'][m])}" + (" ✗" if (ds, ed, m) in failed else "")
               for ds, ed, m in columns]
    realism = any(group_of(m) == "realism" for _, _, m in columns)
    extractors = sorted({s["extractors"][m] for _, _, m in columns if not realism or group_of(m) == "realism"})
    if realism:
        caption = (f"Features: {', '.join(extractors)}. Best per column in bold (direction from each metric); "
                   "brackets: bootstrap 95% CI over the generated set.")
        if failed:
            caption += (" ✗: the column's extractor failed the disturbance test on this dataset (`ldbench "
                        "extractors validate`): its distances may not rank degraded images worse than real ones.")
        if any(FLOOR_ROW in s["cells"][col] for col in columns):
            caption += (" First row (real · held-out): real images of the dataset that are neither in the reference "
                        "split nor used for fine-tuning, as many as a generated set holds, scored the same way: the "
                        "floor a generated set's number is read against.")
        if any(CEILING_ROW in s["cells"][col] for col in columns):
            caption += (" Second row (autoencoder · reconstruction): those real images encoded and decoded by the "
                        "base model's autoencoder, scored the same way: every generated image passes through that "
                        "decoder, so a generated set is not expected to score better.")
        classifiers = sorted({r["details"]["classifier"] for r in records
                              if group_of(r["metric"]) == "utility" and r.get("details", {}).get("classifier")})
        if classifiers:
            caption += (f" AUC: timm {', '.join(classifiers)} trained as the column says (generated images carry the "
                        "attribute they were generated or edited to have) and tested on the real test split; CI "
                        "stratified.")
    else:
        caption = (f"Computed on: {', '.join(extractors)}. Best per column in bold (direction from each metric); "
                   "brackets: bootstrap 95% CI (items resampled; AUCs stratified).")
    if realism and any(e != "inception" for e in extractors):
        caption += (" FD/KD are Fréchet/kernel distances on an offline stand-in extractor, not Inception FID/KID,"
                    " and are not comparable with published FID values.")
    return Table(headers, out_rows, caption)


# The paper's main table: realism (FID / KID, or FD / KD on a stand-in extractor) and the AUC of a classifier
# trained on generated images and tested on real ones.
PAPER_METRICS = ("fid", "kid", "fd", "kd", "auc_synthetic")


def select_metrics(records: list[dict], spec: str = "paper") -> list[dict]:
    """The records of the metrics `spec` names: "paper" (PAPER_METRICS), "all", or comma-separated metric
    names (a name also selects its qualified forms, e.g. effectiveness_auc selects effectiveness_auc:diagnosis)."""
    from ldbench.errors import UserError
    from ldbench.metrics.scores import METRICS

    if spec == "all":
        return list(records)
    wanted = PAPER_METRICS if spec == "paper" else tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in wanted if n not in METRICS]
    if unknown or not wanted:
        raise UserError(f"--metrics {spec!r}: unknown metric {', '.join(unknown) or '(none given)'}; use paper, all, "
                        f"or names from: {', '.join(sorted(METRICS))}")
    chosen = [r for r in records if r["metric"].split(":", 1)[0] in wanted]
    if not chosen:
        present = sorted({r["metric"] for r in records})
        raise UserError(f"--metrics {spec!r}: the results hold none of {', '.join(wanted)}; they hold "
                        f"{', '.join(present)} (use --metrics all, or some of those names)")
    return chosen


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


RANDOM_WEIGHTS_FOOTNOTE = ("\n**Random weights:** the base model ({source}) has random weights; these numbers are "
                           "for tests and timings only, not results.\n")


def random_weights_source(records: list[dict]) -> str | None:
    """The base model's label when any record's base model has random weights (sd14-random), else None."""
    for r in records:
        prov = r.get("provenance", {})
        if prov.get("base_model_random_weights"):
            return str(prov.get("base_model_source", "random weights"))
    return None


def main_table_markdown(records: list[dict]) -> str:
    if not records:
        return "_no results_\n"
    text = render(build_table(records), "markdown")
    source = random_weights_source(records)
    return text + RANDOM_WEIGHTS_FOOTNOTE.format(source=source) if source else text


# One table per metric group (tables/<name>.md); "main" is realism, the paper's FID/KID table.
TABLE_GROUPS = {
    "main": ("realism",),
    "counterfactual": ("identity", "ground truth", "axioms"),
    "effectiveness": ("effectiveness",),
    "utility": ("utility",),
    "diversity": ("diversity",),
    "training": ("training", "autoencoder"),
}


def group_of(metric: str) -> str:
    info = metric_info(metric)
    return info.group if info else "realism"


def group_tables_markdown(records: list[dict]) -> dict[str, str]:
    """{table name: markdown} for every group that has records ("main" always)."""
    out = {}
    for name, groups in TABLE_GROUPS.items():
        subset = [r for r in records if group_of(r["metric"]) in groups]
        if subset or name == "main":
            out[name] = main_table_markdown(subset)
    return out


def effects_rows(effects: list[dict]) -> list[dict]:
    """Display rows of the LD-effect records: LD − no-LD per metric, CI, p-value, significance."""
    rows = []
    for e in effects:
        info = metric_info(e["metric"])
        fmt = info.fmt if info else "{:.4g}"
        better = None
        if e["significant"] and info is not None:
            better = "LD" if (e["difference"] > 0) == info.higher_is_better else "no LD"
        rows.append({
            "dataset": e["dataset"], "method": e["method"], "editor": e["editor"], "seed": e["seed"],
            "drift": Drift(**e["drift"]).label, "metric": display_name(e["metric"], e["extractor"]),
            "no_ld": fmt.format(e["no_ld_value"]), "ld": fmt.format(e["ld_value"]),
            "difference": fmt.format(e["difference"]),
            "ci": f"[{fmt.format(e['ci95'][0])}, {fmt.format(e['ci95'][1])}]" if e.get("ci95") else "—",
            "p": f"{e['p_value']:.3g}",
            "p_adjusted": f"{e['p_adjusted']:.3g}" if e.get("p_adjusted") is not None else "—",
            "significant": "yes" if e["significant"] else "no",
            "better": better or "—", "test": e["test"],
        })
    return rows


CORRECTION_NAMES = {"holm": "Holm (family-wise error rate)", "bh": "Benjamini–Hochberg (false discovery rate)",
                    "none": "none"}


def correction_text(effects: list[dict]) -> str:
    """How the effects' significance was decided, for captions: the correction and the family size."""
    methods = sorted({e.get("correction") for e in effects if e.get("correction")})
    if not methods:
        return "Significant: the 95% CI excludes 0 (no multiple-comparison correction)."
    name = ", ".join(CORRECTION_NAMES.get(m, m) for m in methods)
    if methods == ["none"]:
        return "Significant: p < 0.05, not corrected for multiple comparisons."
    return (f"Adjusted p: {name} correction over all {len(effects)} LD effects of the run (one family); "
            "significant: adjusted p < 0.05. The CI and raw p are per comparison, uncorrected.")


def effects_table_markdown(effects: list[dict]) -> str:
    head = ["dataset", "editor", "method", "seed", "drift", "metric", "no LD", "LD", "LD − no LD", "95% CI", "p",
            "adjusted p", "significant", "better", "test"]
    keys = ["dataset", "editor", "method", "seed", "drift", "metric", "no_ld", "ld", "difference", "ci", "p",
            "p_adjusted", "significant", "better", "test"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in effects_rows(effects):
        lines.append("| " + " | ".join(str(row[k]) for k in keys) + " |")
    return "\n".join(lines) + ("\n\nEach row compares a Latent Drifting cell with the no-LD cell of the same dataset, "
                               "method, editor and seed. CI and p: paired bootstrap over the same test items where "
                               "both cells edit the same sources (unpaired otherwise), DeLong for AUCs. "
                               f"{correction_text(effects)}\n")
