"""A run's outputs: results.json, the markdown tables and the HTML report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench.config import Suite
from ldbench.fsutil import atomic_write_text
from ldbench.runner import stages
from ldbench.store import Artifact

RESULTS_SCHEMA = "ldbench.results/1"


@dataclass(frozen=True)
class RunOutputs:
    """What a run writes. `latents`: the test split's latents artifact per dataset spec; `generated`: per cell
    {cell, dataset, data_art, generate}; `roc`: [{title, curves: {metric: (y_true, score)}}] of the AUC
    metrics (effectiveness oracles, AUC protocol) for the report's ROC figures."""

    records: list
    effects: list
    base: Artifact
    latents: dict
    generated: list
    env: dict
    roc: list = ()


def write_outputs(suite: Suite, opts, run: RunOutputs, log) -> None:
    """results.json, tables/*.md and report.html."""
    records, effects, base, latents, generated, env = (run.records, run.effects, run.base, run.latents,
                                                        run.generated, run.env)
    from ldbench.report.figure_cache import figures_kept_in
    from ldbench.report.html import render_report
    from ldbench.report.tables import effects_table_markdown, group_tables_markdown

    results = {"schema": RESULTS_SCHEMA, "run_id": opts.run_id, "suite": suite.name, "cache_dir": str(Path(opts.cache_dir).resolve()),
               "run_options": opts.to_dict(), "resolved_config": suite.to_dict(), "environment": env, "records": records,
               "ld_effects": effects}
    atomic_write_text(opts.out_dir / "results.json", json.dumps(results, indent=1, allow_nan=False))
    written = ["results.json"]
    for name, text in group_tables_markdown(records).items():
        atomic_write_text(opts.out_dir / "tables" / f"{name}.md", text)
        written.append(f"tables/{name}.md")
    if effects:
        atomic_write_text(opts.out_dir / "tables" / "ld_effect.md", effects_table_markdown(effects))
        written.append("tables/ld_effect.md")
    natural = base.path / "natural_latents.npz"
    natural_latents = None
    if natural.exists():
        with np.load(natural, allow_pickle=False) as z:
            natural_latents = z["latents"]
    report_inputs = {
        "suite": suite,
        "records": records,
        "natural_latents": natural_latents,
        "real_latents": {spec.name: _npz(art.file("latents.npz"), "latents") for spec, art in latents.items()},
        "generated": [
            {
                "dataset": g["dataset"].name,
                "method": g["cell"].method.name,
                "drift": g["cell"].drift,
                "editor": g["cell"].editor.name,
                "seed": g["cell"].seed,
                **stages.load_generated(g["generate"]),
                "source_images": stages.load_table(g["data_art"]).split("test").images,
                "ground_truth": stages.truth_images(g["data_art"], g["generate"]),
            }
            for g in generated
        ],
        "effects": effects,
        "roc": list(run.roc),
        "losses": loss_series(generated),
        "environment": env,
        "stage_resources": stage_resources(opts.out_dir / "events.jsonl"),
    }
    with figures_kept_in(opts.cache_dir / "figures"):  # a run from a warm cache does not redraw them
        html = render_report(report_inputs)
    atomic_write_text(opts.out_dir / "report.html", html)
    log("outputs", files=[*written, "report.html"])


def loss_series(generated: list[dict]) -> list[dict]:
    """Per dataset × method, each fine-tune the cells used (once per training drift): its loss per step
    ("series") and its latent probe ("latents": steps, channel_mean, channel_mean_square; ldbench.models.probe).
    A fine-tune loaded from a checkpoint has neither."""
    from ldbench.runner.training_records import load_probe

    groups: dict[str, dict] = {}
    seen: set[str] = set()  # cells share fine-tunes: read each one's losses once
    for g in generated:
        ft, cell = g.get("finetune"), g["cell"]
        if ft is None or ft.key in seen:
            continue
        seen.add(ft.key)
        losses, probe = json.loads(ft.file("losses.json").read_text()), load_probe(ft)
        title = f"{g['dataset'].name} · {cell.method.name} · seed {cell.seed}"
        group = groups.setdefault(title, {"title": title, "dataset": g["dataset"].name, "series": {}, "latents": {}})
        label = cell.drift.for_training().label
        if losses:
            group["series"][label] = losses
        if probe is not None:
            group["latents"][label] = probe
    return [g for g in groups.values() if g["series"] or g["latents"]]


def stage_resources(events_path: Path) -> list[dict]:
    """The stages this run built (not cache hits), with their seconds and peak memory, from events.jsonl."""
    rows = []
    if events_path.exists():
        for line in events_path.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "stage" and not event.get("cached"):
                rows.append({k: event.get(k) for k in ("stage", "key", "seconds", "peak_gpu_mem_mb", "peak_rss_mb")})
    return rows


def _npz(path: Path, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return z[key]
