"""The self-contained HTML report: every figure inlined, every text value escaped by jinja2."""

from __future__ import annotations

import base64
import json

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from ldbench.metrics.scores import METRICS, display_name
from ldbench.report import plots
from ldbench.report.tables import summarize


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _metric_rows(records: list[dict]) -> list[dict]:
    s = summarize(records)
    rows = []
    for (dataset, editor, metric), by_row in sorted(s["cells"].items()):
        info = METRICS.get(metric)
        for (method, label), recs in sorted(by_row.items(), key=lambda kv: (kv[0][0], kv[0][1] != "no LD")):
            r = recs[0]
            fmt = info.fmt if info else "{:.4g}"
            rows.append({
                "dataset": dataset, "editor": editor, "metric": display_name(metric, r["extractor"]),
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
            entries = [src, cf, g["ground_truth"][i], cf - g["ground_truth"][i]] if has_gt else [src, cf, cf - src]
            rows.append((f"test #{int(i)}", entries))
        figures.append({
            "title": f"{g['dataset']} · {g['method']} · {g['drift'].label} · {g['editor']} · seed {g['seed']}",
            "src": _data_uri(plots.sample_grid(rows, columns)),
        })
    return figures


def render_report(inputs: dict) -> str:
    env = Environment(loader=PackageLoader("ldbench", "report/templates"), autoescape=select_autoescape(["html", "j2"]))
    template = env.get_template("report.html.j2")
    records = inputs["records"]
    extractors = sorted({r["extractor"] for r in records})
    provenance = records[0]["provenance"] if records else {}
    return template.render(
        suite=inputs["suite"].name,
        description=inputs["suite"].description,
        metric_rows=_metric_rows(records),
        stand_in=any(e != "inception" for e in extractors),
        extractors=extractors,
        latent_figures=_latent_figures(inputs),
        sample_figures=_sample_figures(inputs),
        environment=json.dumps(inputs["environment"], indent=1, sort_keys=True),
        resolved_config=json.dumps(provenance.get("resolved_config", {}), indent=1, sort_keys=True),
        reference_stats=json.dumps(provenance.get("reference_stats", {}), indent=1, sort_keys=True),
        n_records=len(records),
        np=np,
    )
