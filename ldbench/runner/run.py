"""Run a suite: expand its cells, run every stage through the store, write results, tables and report."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench.config import Suite
from ldbench.errors import UserError
from ldbench.fsutil import atomic_write_text
from ldbench.progress import console
from ldbench.runner import stages
from ldbench.runner.provenance import environment
from ldbench.runner.store import Artifact, Store

RESULTS_SCHEMA = "ldbench.results/1"


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    cache_dir: Path
    quiet: bool = False
    base_model: str | None = None  # --base-model PATH_OR_ID replaces the suite's base model
    inception_weights: str | None = None
    allow_unverified_weights: bool = False


@dataclass
class RunResult:
    records: list[dict]
    out_dir: Path
    seconds: float
    store_events: list[dict]


def make_extractor(suite: Suite, opts: RunOptions):
    from ldbench.metrics.extractors import create_extractor

    options = dict(suite.evaluation.extractor_options)
    if suite.evaluation.extractor.startswith("inception"):
        if opts.inception_weights:
            options["weights_path"] = opts.inception_weights
        if opts.allow_unverified_weights:
            options["allow_unverified"] = True
    return create_extractor(suite.evaluation.extractor, **options)


def run_suite(suite: Suite, opts: RunOptions) -> RunResult:
    from ldbench.config import Component

    start = time.perf_counter()
    store = Store(opts.cache_dir)
    ctx = stages.Context(store=store, quiet=opts.quiet)
    base_spec = Component("diffusers", {"path": opts.base_model}) if opts.base_model else suite.base_model
    extractor = make_extractor(suite, opts)  # fails early (missing weights) before any training
    cells = suite.cells()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    with open(opts.out_dir / "events.jsonl", "a") as events:

        def log(event: str, **fields) -> None:
            events.write(json.dumps({"t": round(time.perf_counter() - start, 3), "event": event, **fields}) + "\n")
            events.flush()

        log("start", suite=suite.name, cells=len(cells))
        if not opts.quiet:
            console.print(f"[bold]ldbench[/bold] suite [cyan]{suite.name}[/cyan]: {len(cells)} cells, "
                          f"cache {opts.cache_dir}")
        records = _run(suite, opts, ctx, base_spec, extractor, log)
        seconds = time.perf_counter() - start
        log("end", seconds=round(seconds, 2), built=sum(not e["cached"] for e in store.events))
    return RunResult(records, opts.out_dir, seconds, store.events)


def _run(suite: Suite, opts: RunOptions, ctx: stages.Context, base_spec, extractor, log) -> list[dict]:
    store, ev, env = ctx.store, suite.evaluation, environment()

    def log_stage() -> None:
        log("stage", **store.events[-1])

    # Data and reference statistics first: cheap, and every size check fails before any training.
    datasets: dict = {}
    for spec in suite.datasets:
        ds = stages.make_dataset(spec)
        art = stages.dataset_stage(ctx, ds)
        log_stage()
        if ev.kid_subset_size > art.meta["n_test"]:
            raise UserError(
                f"evaluation.kid_subset_size={ev.kid_subset_size} is larger than the {art.meta['n_test']} test images "
                f"of {ds.name}; set it explicitly, e.g. --set evaluation.kid_subset_size={art.meta['n_test']}"
            )
        stats, stats_source = stages.reference_stats_stage(ctx, ds, art, ev.reference_split, extractor, ev.batch_size)
        log("reference-stats", dataset=ds.name, **stats_source)
        datasets[spec] = (ds, art, stats, stats_source)
    base = stages.base_model_stage(ctx, base_spec)
    log_stage()

    records: list[dict] = []
    generated: list[dict] = []
    cells = suite.cells()
    for i, cell in enumerate(cells, 1):
        ds, data_art, stats, stats_source = datasets[cell.dataset]
        if not opts.quiet:
            console.print(f"cell {i}/{len(cells)}: {ds.name} · {cell.method.name} · {cell.drift.label} · "
                          f"seed {cell.seed} · {cell.editor.name}")
        ft = stages.finetune_stage(ctx, ds, data_art, base, cell.method, cell.drift, cell.seed)
        log_stage()
        gen = stages.generate_stage(ctx, ds, data_art, base, ft, cell.method.name, cell.editor, cell.drift, cell.seed)
        log_stage()
        met = stages.metrics_stage(ctx, gen, stats, stats_source, extractor, ev, cell.seed)
        log_stage()
        provenance = {
            "suite": suite.name,
            "cell": {"dataset": dataclasses.asdict(cell.dataset), "method": dataclasses.asdict(cell.method),
                     "drift": cell.drift.to_dict(), "seed": cell.seed, "editor": dataclasses.asdict(cell.editor)},
            "resolved_config": suite.to_dict(),
            "seeds": {"train": cell.seed, "sample": cell.seed, "bootstrap": cell.seed, "kid_subsets": cell.seed},
            "method_options": ft.meta["options"],
            "editor_options": gen.meta["options"],
            "artifacts": {"dataset": data_art.key, "base_model": base.key, "finetune": ft.key, "generate": gen.key,
                          "metrics": met.key},
            "base_model_source": base.meta.get("source", "embedded tiny latent diffusion model (pretrained by ldbench)"),
            "reference_stats": stats_source,
            "extractor": extractor.describe(),
            "environment": env,
        }
        for m in json.loads(met.file("metrics.json").read_text()):
            records.append({
                "dataset": ds.name,
                "method": cell.method.name,
                "drift": cell.drift.to_dict(),
                "seed": cell.seed,
                "editor": cell.editor.name,
                "metric": m["metric"],
                "value": m["value"],
                "ci95": m.get("ci95"),
                "n": m["n"],
                "extractor": m["extractor"],
                "details": {k: v for k, v in m.items() if k not in ("metric", "value", "ci95", "n", "extractor")},
                "provenance": provenance,
            })
        generated.append({"cell": cell, "dataset": ds, "data_art": data_art, "generate": gen})

    latents = {spec: stages.latents_stage(ctx, art, base) for spec, (_, art, _, _) in datasets.items()}
    write_outputs(suite, opts, records, base, latents, generated, env, log)
    return records


def write_outputs(suite: Suite, opts: RunOptions, records: list[dict], base: Artifact, latents: dict,
                  generated: list[dict], env: dict, log) -> None:
    from ldbench.report.html import render_report
    from ldbench.report.tables import main_table_markdown

    results = {"schema": RESULTS_SCHEMA, "suite": suite.name, "environment": env, "records": records}
    atomic_write_text(opts.out_dir / "results.json", json.dumps(results, indent=1, allow_nan=False))
    atomic_write_text(opts.out_dir / "tables" / "main.md", main_table_markdown(records))
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
                "ground_truth": _ground_truth(g["data_art"]),
            }
            for g in generated
        ],
        "environment": env,
    }
    atomic_write_text(opts.out_dir / "report.html", render_report(report_inputs))
    log("outputs", files=["results.json", "tables/main.md", "report.html"])


def _npz(path: Path, key: str) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return z[key]


def _ground_truth(data_art: Artifact) -> np.ndarray | None:
    if not data_art.meta.get("has_counterfactuals"):
        return None
    return stages.load_table(data_art, "counterfactuals").split("test").images
