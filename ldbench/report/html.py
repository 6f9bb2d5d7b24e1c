"""The self-contained HTML report: every figure inlined, every text value escaped by jinja2."""

from __future__ import annotations

import base64
import json

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from ldbench.drift import Drift
from ldbench.metrics.scores import display_name, is_ceiling, is_floor, metric_info
from ldbench.metrics.validation_results import validation_rows
from ldbench.report import plots
from ldbench.report.tables import (
    correction_text,
    effects_rows,
    is_anchor,
    random_weights_source,
    row_order,
    summarize,
)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _metric_rows(records: list[dict]) -> list[dict]:
    s = summarize(records)
    rows, anchors_shown = [], set()
    for (dataset, _editor, metric), by_row in sorted(s["cells"].items()):
        info = metric_info(metric)
        for (method, label), recs in sorted(by_row.items(), key=lambda kv: row_order(kv[0])):
            r = recs[0]
            if is_anchor(r):  # summarize puts the floor and ceiling in every editor's column: list each once
                if (dataset, metric, method) in anchors_shown:
                    continue
                anchors_shown.add((dataset, metric, method))
            fmt = info.fmt if info else "{:.4g}"
            rows.append({
                "dataset": dataset, "editor": r["editor"], "metric": display_name(metric, r["extractor"]),
                "method": method, "drift": label, "seed": r["seed"], "value": fmt.format(r["value"]),
                "ci": f"[{fmt.format(r['ci95'][0])}, {fmt.format(r['ci95'][1])}]" if r.get("ci95") else "—",
                "n": r["n"], "extractor": r["extractor"],
            })
    return rows


def _latent_figures(inputs: dict) -> list[dict]:
    figures = []
    text2img = [g for g in inputs["generated"] if g["editor"] == "text2img"] or inputs["generated"]
    by_model: dict = {}
    for g in text2img:
        by_model.setdefault((g["dataset"], g["method"], g["seed"], g["editor"]), []).append(g)
    for (dataset, method, seed, editor), gens in sorted(by_model.items(), key=lambda kv: kv[0]):
        groups = {}
        if inputs.get("natural_latents") is not None:
            groups["natural images (pretraining)"] = inputs["natural_latents"]
        if dataset in inputs["real_latents"]:
            groups[f"real {dataset} (test)"] = inputs["real_latents"][dataset]
        for g in gens:
            groups[f"generated, {g['drift'].label}"] = g["latents"]
        figures.append({
            "title": f"{dataset} · {method} · {editor} · seed {seed}",
            "src": _data_uri(plots.channel_distributions(groups)),
        })
    return figures


def _sample_figures(inputs: dict, n: int = 4) -> list[dict]:
    """Source / counterfactual / ground truth / difference for the first `n` edits of each edit set."""
    figures = []
    for g in inputs["generated"]:
        if g["source_index"].min() < 0:  # text-to-image: no source image
            continue
        has_gt = g["ground_truth"] is not None
        columns = ["source", "counterfactual"] + (["ground truth", "difference (cf − gt)"] if has_gt
                                                 else ["difference (cf − source)"])
        rows = []
        for j, i in enumerate(g["source_index"][:n]):
            src, cf = g["source_images"][i], g["images"][j]
            entries = [src, cf, g["ground_truth"][j], cf - g["ground_truth"][j]] if has_gt else [src, cf, cf - src]
            rows.append((f"test #{int(i)}", entries))
        figures.append({
            "title": f"{g['dataset']} · {g['method']} · {g['drift'].label} · {g['editor']} · seed {g['seed']}",
            "src": _data_uri(plots.sample_grid(rows, columns)),
        })
    return figures


def _fmt(metric: str):
    info = metric_info(metric)
    return (info.fmt if info else "{:.4g}").format


def _value_text(recs: list[dict]) -> str:
    """Value [CI] of one record, or the mean over seeds (CIs are per generated set, so there is no single
    CI for a mean over seeds; the seed count is shown instead)."""
    fmt = _fmt(recs[0]["metric"])
    if len(recs) == 1:
        r = recs[0]
        ci = f" [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]" if r.get("ci95") else ""
        return fmt(r["value"]) + ci
    return f"{fmt(float(np.mean([r['value'] for r in recs])))} (mean of {len(recs)} seeds)"


def _summary_rows(records: list[dict], effects: list[dict]) -> list[dict]:
    """The report's first table: per dataset · editor · metric · method · LD setting, no-LD and LD values
    with CIs and a one-word verdict from the LD-effect tests, aggregated over seeds. The effects table
    below keeps the per-seed detail (differences, p-values, tests); this one is for reading at a glance."""
    by_key: dict = {}
    floor: dict = {}
    ceiling: dict = {}
    for r in records:
        if is_floor(r) or is_ceiling(r):
            (floor if is_floor(r) else ceiling).setdefault((r["dataset"], r["metric"]), []).append(r)
            continue
        drift = Drift(**r["drift"])
        by_key.setdefault((r["dataset"], r["editor"], r["metric"], r["method"]), {}).setdefault(
            drift.label, []).append(r)
    tests: dict = {}
    for e in effects:
        key = (e["dataset"], e["editor"], e["metric"], e["method"], Drift(**e["drift"]).label)
        tests.setdefault(key, []).append(e)
    rows = []
    for (dataset, editor, metric, method), by_label in sorted(by_key.items()):
        base = by_label.get("no LD")
        if base is None:
            continue
        info = metric_info(metric)
        for label, recs in sorted(by_label.items()):
            if label == "no LD":
                continue
            found = tests.get((dataset, editor, metric, method, label), [])
            significant = [e for e in found if e["significant"]]
            if not found:
                verdict = "not tested"
            elif not significant:
                verdict = "no significant difference"
            else:
                better_ld = [(e["difference"] > 0) == info.higher_is_better for e in significant] if info else []
                who = ("LD better" if all(better_ld) else "no LD better" if not any(better_ld) else "mixed") \
                    if info else "different"
                verdict = f"{who} (significant in {len(significant)}/{len(found)} seeds)" if len(found) > 1 \
                    else f"{who} (significant)"
            rows.append({
                "dataset": dataset, "editor": editor, "metric": display_name(metric, recs[0]["extractor"]),
                "direction": "" if info is None else ("↑" if info.higher_is_better else "↓"),
                "floor": _value_text(floor[(dataset, metric)]) if (dataset, metric) in floor else "—",
                "ceiling": _value_text(ceiling[(dataset, metric)]) if (dataset, metric) in ceiling else "—",
                "method": method, "drift": label, "no_ld": _value_text(base), "ld": _value_text(recs),
                "verdict": verdict, "significant": bool(significant),
            })
    return rows


def _scalar_delta(drift: Drift) -> float | None:
    """δ on the sweep's x axis: 0 for every no-LD setting, None for per-channel vectors (no single x)."""
    if not drift.uses_ld:
        return 0.0
    return None if isinstance(drift.delta, tuple) else float(drift.delta)


def _sweep_figures(records: list[dict]) -> list[dict]:
    """Metric vs δ for every dataset · method · editor with records at two or more δ values; one line per
    drift placement, the no-LD point (δ = 0) shared by every line. Several seeds at one δ: the mean value,
    with the mean of their CI bounds as the error bar."""
    groups: dict = {}
    for r in records:
        drift = Drift(**r["drift"])
        x = _scalar_delta(drift)
        if x is None or not np.isfinite(r["value"]):
            continue
        placement = "no LD" if not drift.uses_ld else f"{drift.train}/{drift.sample}"
        groups.setdefault((r["dataset"], r["method"], r["editor"]), []).append((r, x, placement))
    figures = []
    for (dataset, method, editor), items in sorted(groups.items()):
        if len({x for _, x, _ in items}) < 2:
            continue
        placements = sorted({p for _, _, p in items if p != "no LD"}) or ["no LD"]
        series: dict = {}
        labels: dict = {}
        for metric in sorted({r["metric"] for r, _, _ in items}):
            labels[metric] = display_name(metric, next(r["extractor"] for r, _, _ in items if r["metric"] == metric))
            lines = {}
            for placement in placements:
                at: dict = {}
                for r, x, p in items:
                    if r["metric"] == metric and (p == placement or p == "no LD"):
                        at.setdefault(x, []).append(r)
                points = []
                for x in sorted(at):
                    recs = at[x]
                    cis = [r["ci95"] for r in recs if r.get("ci95")]
                    ci = (float(np.mean([c[0] for c in cis])), float(np.mean([c[1] for c in cis]))) if cis else None
                    points.append((x, float(np.mean([r["value"] for r in recs])), ci))
                if len(points) >= 2:
                    lines[placement] = points
            if lines:
                series[metric] = lines
        if series:
            figures.append({"title": f"{dataset} · {method} · {editor}",
                            "src": _data_uri(plots.sweep_curves(series, labels))})
    return figures


def _roc_figures(roc: list[dict]) -> list[dict]:
    figures = []
    for entry in roc:
        if not entry.get("curves"):
            continue
        labels = {m: display_name(m, "") for m in entry["curves"]}
        figures.append({"title": entry["title"], "src": _data_uri(plots.roc_curves(entry["curves"], labels))})
    return figures


def _loss_figures(training: list[dict], real_latents: dict) -> list[dict]:
    """One row per dataset × method: the loss curve of each of its fine-tunes (one per training drift) and,
    next to it, their generated latents' channel statistics at checkpoints against the real test latents'."""
    figures = []
    for entry in training:
        loss = _data_uri(plots.loss_curves(entry["series"], title=entry["title"])) if entry.get("series") else None
        latents = None
        if entry.get("latents"):
            real = real_latents.get(entry.get("dataset"))
            reference = (real.mean(axis=(0, 2, 3)), real.std(axis=(0, 2, 3))) if real is not None else None
            latents = _data_uri(plots.latent_checkpoints(entry["latents"], reference, title=entry["title"]))
        figures.append({"title": entry["title"], "src": loss, "latents": latents})
    return figures


# A section longer than this starts folded (<details>), so a large suite's report opens on its summary and
# section headings instead of hundreds of rows or figures; its count is shown on the fold.
FOLD_ROWS = 80
FOLD_FIGURES = 16


def render_report(inputs: dict) -> str:
    env = Environment(loader=PackageLoader("ldbench", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    records = inputs["records"]
    extractors = sorted({r["extractor"] for r in records})
    # the realism extractors that are not Inception (pixel and classifier metrics name no feature extractor)
    realism = {r["extractor"] for r in records if getattr(metric_info(r["metric"]), "group", "") == "realism"}
    stand_ins = [e for e in extractors if e != "inception" and e in realism]
    provenance = records[0]["provenance"] if records else {}
    return template.render(
        suite=inputs["suite"].name,
        description=inputs["suite"].description,
        metric_rows=_metric_rows(records),
        validation_rows=validation_rows(records),
        summary_rows=_summary_rows(records, inputs.get("effects", [])),
        sweep_figures=_sweep_figures(records),
        roc_figures=_roc_figures(inputs.get("roc", [])),
        loss_figures=_loss_figures(inputs.get("losses", []), inputs.get("real_latents", {})),
        effect_rows=effects_rows(inputs.get("effects", [])),
        effects_correction=correction_text(inputs.get("effects", [])),
        notes=sorted({n for r in records for n in r["provenance"].get("notes", [])}),
        stand_in=bool(stand_ins),
        random_weights=random_weights_source(records),
        extractors=stand_ins,
        latent_figures=_latent_figures(inputs),
        sample_figures=_sample_figures(inputs),
        environment=json.dumps(inputs["environment"], indent=1, sort_keys=True),
        stage_resources=inputs.get("stage_resources", []),
        resolved_config=json.dumps(provenance.get("resolved_config", {}), indent=1, sort_keys=True),
        reference_stats=json.dumps(provenance.get("reference_stats", {}), indent=1, sort_keys=True),
        n_records=len(records),
        fold_rows=FOLD_ROWS,
        fold_figures=FOLD_FIGURES,
        np=np,
    )
