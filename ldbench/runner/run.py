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
from ldbench.hashing import stable_hash
from ldbench.metrics.validation_results import mark_validation
from ldbench.progress import console, escape
from ldbench.runner import counterfactual as cf_stages
from ldbench.runner import stages
from ldbench.runner.diversity_stage import load_diversity
from ldbench.runner.effects import CellEvidence, ld_effects
from ldbench.runner.outputs import (
    RESULTS_SCHEMA,  # noqa: E402,F401  (re-exported)
    write_outputs,
)
from ldbench.runner.provenance import base_model_notes, environment, new_run_id
from ldbench.store import Artifact, Store
from ldbench.suite_checks import check_table_for_suite


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    cache_dir: Path
    quiet: bool = False
    base_model: str | None = None  # --base-model PATH_OR_ID replaces the suite's base model
    inception_weights: str | None = None
    allow_unverified_weights: bool = False
    require_cached: bool = False  # `ldbench report`: every stage must come from the cache
    executor: str = "local"  # where cells run: local | ray | slurm (ldbench.runner.executors)
    executor_options: dict = dataclasses.field(default_factory=dict)
    run_id: str = ""  # written in every event and in results.json; "" = a new one (new_run_id)
    device: str = "cpu"  # resolved (ldbench.device.resolve_device): "cpu" or "cuda:N"
    precision: str = "fp32"  # inference precision of sampling and the autoencoder
    executor_gpus: float = 0  # GPUs each worker is given (set from the executor)
    cache_device: str = ""  # `ldbench report`: the device type whose cache keys the run used ("" = device's)

    def to_dict(self) -> dict:
        """What `ldbench report` needs to re-open the same cache entries."""
        from ldbench.device import device_type

        return {"base_model": self.base_model, "inception_weights": self.inception_weights,
                "allow_unverified_weights": self.allow_unverified_weights,
                "device": self.cache_device or device_type(self.device), "precision": self.precision}


@dataclass
class RunResult:
    records: list[dict]
    out_dir: Path
    seconds: float
    store_events: list[dict]


def make_extractors(suite: Suite, opts: RunOptions, reuse: bool = False) -> dict:
    """Every extractor of the suite's realism metrics, by name (missing weights fail here, before any work)."""
    from ldbench.metrics.factory import suite_extractors

    return suite_extractors(suite.evaluation, opts.inception_weights, opts.allow_unverified_weights, opts.device,
                            reuse=reuse)


def run_suite(suite: Suite, opts: RunOptions) -> RunResult:
    from ldbench.config import Component

    start = time.perf_counter()
    opts = dataclasses.replace(opts, run_id=opts.run_id or new_run_id())
    from ldbench.device import key_fields, use_device

    use_device(opts.device)
    store = Store(opts.cache_dir, read_only=opts.require_cached, device=opts.device, precision=opts.precision)
    if opts.cache_device:  # re-render on this machine what a run made elsewhere (nothing is built)
        store.key_extra = key_fields(opts.cache_device, opts.precision)
    ctx = stages.context(store, opts.quiet, opts.device, opts.precision)
    base_spec = Component("diffusers", {"path": opts.base_model}) if opts.base_model else suite.base_model
    extractors = make_extractors(suite, opts)  # fails early (missing weights) before any training
    cells = suite.cells()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    with open(opts.out_dir / "events.jsonl", "w") as events:  # one run's events (its run id in each)

        def log(event: str, **fields) -> None:
            events.write(json.dumps({"run": opts.run_id, "t": round(time.perf_counter() - start, 3), "event": event,
                                     **fields}) + "\n")
            events.flush()

        log("start", suite=suite.name, cells=len(cells))
        if not opts.quiet:
            console.print(f"[bold]ldbench[/bold] suite [cyan]{escape(suite.name)}[/cyan]: {len(cells)} cells, "
                          f"cache {escape(str(opts.cache_dir))}")
        records = _run(suite, opts, ctx, base_spec, extractors, log)
        seconds = time.perf_counter() - start
        log("end", seconds=round(seconds, 2), built=sum(not e["cached"] for e in store.events))
    return RunResult(records, opts.out_dir, seconds, store.events)


@dataclass
class Shared:
    """What every cell needs, built once by the driver before any cell runs (so workers only read it)."""

    datasets: dict  # dataset Component -> (Dataset, dataset artifact, {extractor: (reference stats, source)})
    base: Artifact
    latents: dict  # dataset Component -> latents artifact (the test split's autoencoder latents)
    env: dict
    threads: int  # torch threads of the driver; workers use the same, so numbers match across executors
    floors: dict = dataclasses.field(default_factory=dict)  # (dataset Component, extractor, seed) -> floor artifact
    train_features: dict = dataclasses.field(default_factory=dict)  # dataset Component -> first extractor's


@dataclass
class CellOutput:
    records: list[dict]
    evidence: CellEvidence
    generated: dict
    store_events: list[dict]


def _run(suite: Suite, opts: RunOptions, ctx: stages.Context, base_spec, extractors: dict, log) -> list[dict]:
    import torch

    from ldbench.runner.executors import create_executor

    store, ev = ctx.store, suite.evaluation
    executor = create_executor(opts.executor, opts.executor_options, opts.out_dir)  # bad options fail first

    def log_stage() -> None:
        log("stage", **store.events[-1])

    # Data and reference statistics first: cheap, and every size check fails before any training.
    datasets: dict = {}
    for spec in suite.datasets:
        ds = stages.make_dataset(spec)
        art = stages.dataset_stage(ctx, ds)
        log_stage()
        check_table_for_suite(suite, ds.name, stages.load_table(art))
        if ev.kid_subset_size > art.meta["n_test"]:
            raise UserError(
                f"evaluation.kid_subset_size={ev.kid_subset_size} is larger than the {art.meta['n_test']} test images "
                f"of {ds.name}; set it explicitly, e.g. --set evaluation.kid_subset_size={art.meta['n_test']}"
            )
        references = {}
        for name, extractor in extractors.items():
            references[name] = stages.reference_stats_stage(ctx, ds, art, ev.reference_split, extractor,
                                                            ev.batch_size)
            log("reference-stats", dataset=ds.name, extractor=name, **references[name][1])
        datasets[spec] = (ds, art, references)
    base = stages.base_model_stage(ctx, base_spec)
    log_stage()
    latents = {}
    for spec, (_, art, _) in datasets.items():
        latents[spec] = stages.latents_stage(ctx, art, base)
        log_stage()
    shared = Shared(datasets, base, latents, environment(opts.device, opts.precision), torch.get_num_threads())
    floor = _floor(suite, ctx, shared, extractors, log_stage)

    cells = suite.cells()
    log("executor", name=opts.executor, **{k: str(v) for k, v in opts.executor_options.items()})

    cells_start = time.perf_counter()
    finished: list[int] = []

    def on_start(i: int) -> None:
        cell = cells[i]
        if not opts.quiet:
            elapsed = time.perf_counter() - cells_start
            eta = (f", eta ~{_minutes(elapsed / len(finished) * (len(cells) - len(finished)))} at the pace so far"
                   if finished and executor.in_process else "")
            console.print(escape(f"cell {i + 1}/{len(cells)}: {cell.dataset.name} · {cell.method.name} · "
                                 f"{cell.drift.label} · seed {cell.seed} · {cell.editor.name} ")
                          + f"[dim](elapsed {_minutes(elapsed)}{eta})[/dim]")

    def on_done(i: int, out: CellOutput) -> None:
        if not executor.in_process:  # in-process cells log each stage as it ends; workers report at the end
            for event in out.store_events:
                log("stage", **event)
                store.events.append(event)
        finished.append(i)
        log("cell", index=i, cached=all(e["cached"] for e in out.store_events))

    worker_opts = dataclasses.replace(opts, quiet=opts.quiet or not executor.in_process,
                                      executor_gpus=getattr(executor, "gpus", 0))
    jobs = [(suite, worker_opts, shared, cell) for cell in cells]
    in_process = {"ctx": ctx, "log_stage": log_stage, "extractors": extractors} if executor.in_process else {}
    outputs: list[CellOutput] = executor.map(run_cell, jobs, on_start=on_start, on_done=on_done, **in_process)

    records = floor + [r for out in outputs for r in out.records]
    mark_validation(records, {e.name: e.fingerprint for e in extractors.values()})
    evidence = [out.evidence for out in outputs]
    generated = [out.generated for out in outputs]
    effects = ld_effects(evidence, ev) if ev.significance else []
    roc = [{"title": f"{c.dataset} · {c.method} · {c.drift.label} · {c.editor} · seed {c.seed}",
            "curves": {k.split("__", 1)[1]: (c.items[k], c.items["auc_score__" + k.split("__", 1)[1]])
                       for k in sorted(c.items) if k.startswith("auc_y__")}}
           for c in evidence if any(k.startswith("auc_y__") for k in c.items)]
    write_outputs(suite, opts, records, effects, base, latents, generated, shared.env, log, roc)
    return records


def _floor(suite: Suite, ctx: stages.Context, shared: Shared, extractors: dict, log_stage) -> list[dict]:
    """The real held-out floor of every dataset × extractor × seed (ldbench.runner.floor), kept in `shared`;
    with evaluation.diversity also the train split's features on the first extractor (memorization)."""
    from ldbench.runner.diversity_stage import split_features_stage
    from ldbench.runner.floor import FLOOR_SPLIT, floor_records, heldout_metrics_stage

    records = []
    for spec, (ds, data_art, references) in shared.datasets.items():
        for name, extractor in extractors.items():
            for seed in suite.seeds:
                art = heldout_metrics_stage(ctx, (ds, data_art), references[name], extractor, suite.evaluation,
                                            seed, int(data_art.meta["n_test"]))
                log_stage()
                shared.floors[(spec, name, seed)] = art
                provenance = {"suite": suite.name, "dataset": dataclasses.asdict(spec), "split": FLOOR_SPLIT,
                              "resolved_config": suite.to_dict(), "seeds": {"bootstrap": seed, "kid_subsets": seed},
                              "reference_stats": references[name][1], "extractor": extractor.describe(),
                              "environment": shared.env, "torch_threads": shared.threads}
                records += floor_records(ds.name, seed, art, provenance)
        if suite.evaluation.diversity:
            first = extractors[suite.evaluation.extractors[0]]
            shared.train_features[spec] = split_features_stage(ctx, data_art, "train", first,
                                                               suite.evaluation.batch_size)
            log_stage()
    return records


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def run_cell(suite: Suite, opts: RunOptions, shared: Shared, cell, ctx: stages.Context | None = None,
             log_stage=None, extractors: dict | None = None) -> CellOutput:
    """Every stage of one cell: fine-tune, editor model, generate, metrics, counterfactual stages. Runs in
    the driver (local executor) or in a worker (Ray, SLURM) against the same shared store."""
    env = None
    if ctx is None:  # a worker: its own store handle on the shared cache directory, the driver's threads
        ctx, opts, env = _worker_context(opts, shared)
        extractors = make_extractors(suite, opts, reuse=True)  # built once per worker process and configuration
    first_event = len(ctx.store.events)
    log_stage = log_stage or (lambda: None)
    ev, base = suite.evaluation, shared.base
    env = shared.env if env is None else env
    ds, data_art, references = shared.datasets[cell.dataset]
    ft = stages.finetune_stage(ctx, ds, data_art, base, cell.method, cell.drift, cell.seed)
    log_stage()
    editor_model = stages.editor_model_stage(ctx, ds, data_art, base, ft, cell.method.name, cell.editor,
                                             cell.drift, cell.seed)
    if editor_model is not None:
        log_stage()
    gen = stages.generate_stage(ctx, ds, data_art, base, ft, cell.method.name, cell.editor, cell.drift, cell.seed,
                                editor_model=editor_model)
    log_stage()
    artifacts = {"dataset": data_art.key, "base_model": base.key, "finetune": ft.key, "generate": gen.key}
    metrics, features = _realism_metrics(ctx, gen, references, extractors, ev, cell.seed, log_stage, artifacts)
    if editor_model is not None:
        artifacts["editor_model"] = editor_model.key
    items: dict = {}
    notes: list[str] = []
    extra = _counterfactual_evaluation(ctx, ev, cell, ds, data_art, base, ft, editor_model, gen,
                                       shared.latents[cell.dataset], log_stage)
    for stage_name, art in extra.items():
        artifacts[stage_name] = art.key
        if stage_name in ("counterfactual_metrics", "utility"):
            metrics += json.loads(art.file("metrics.json").read_text())
            items.update(cf_stages.load_items(art))
            notes += art.meta.get("notes", [])
    if ev.diversity:
        art = _diversity(ctx, shared, cell, gen, features, extractors[ev.extractors[0]], ev)
        log_stage()
        artifacts["diversity"] = art.key
        records, evidence_items = load_diversity(art)
        metrics += records
        items.update(evidence_items)
    provenance = {
        "suite": suite.name,
        "cell": {"dataset": dataclasses.asdict(cell.dataset), "method": dataclasses.asdict(cell.method),
                 "drift": cell.drift.to_dict(with_note=True), "seed": cell.seed,
                 "editor": dataclasses.asdict(cell.editor)},
        "resolved_config": suite.to_dict(),
        "seeds": {"train": cell.seed, "sample": cell.seed, "bootstrap": cell.seed, "kid_subsets": cell.seed,
                  "classifiers": cell.seed},
        "method_options": ft.meta["options"],
        "finetune_source": ({"loaded_from": ft.meta["loaded_from"], "sha256": ft.meta["checkpoint_sha256"]}
                            if "loaded_from" in ft.meta else "trained by ldbench"),
        "editor_options": gen.meta["options"],
        "artifacts": artifacts,
        "base_model_source": base.meta.get("source", "embedded tiny latent diffusion model (pretrained by ldbench)"),
        "base_model_random_weights": bool(base.meta.get("random_weights")),
        "environment": env,
        "torch_threads": shared.threads,
        "notes": notes + base_model_notes(base.meta),
    }
    realism = {e.name: {"extractor": e.describe(), "reference_stats": references[n][1]} for n, e in extractors.items()}
    cell_records = [_record(ds.name, cell, m, {**provenance, **realism.get(m["extractor"], {})}) for m in metrics]
    gen_arrays = stages.load_generated(gen)
    evidence = CellEvidence(
        dataset=ds.name, method=cell.method.name, editor=cell.editor.name, seed=cell.seed, drift=cell.drift,
        records=cell_records, items=items, features=features,
        pairing=stable_hash({"source": gen_arrays["source_index"].tolist(), "plan": stages.load_plan(gen)}),
        stats={e.name: references[n][0] for n, e in extractors.items()})
    generated = {"cell": cell, "dataset": ds, "data_art": data_art, "generate": gen}
    return CellOutput(cell_records, evidence, generated, list(ctx.store.events[first_event:]))


def _worker_context(opts: RunOptions, shared: Shared) -> tuple:
    """A Ray task's / SLURM job's context: the driver's threads, the GPU its executor gave it (else cpu)."""
    import os

    import torch

    from ldbench.device import check_precision, describe, use_device, worker_device

    torch.set_num_threads(shared.threads)
    device = worker_device(opts.device, opts.executor_gpus, os.environ)
    check_precision(opts.precision, device)
    use_device(device)
    opts = dataclasses.replace(opts, device=device)
    ctx = stages.context(Store(opts.cache_dir, read_only=opts.require_cached), opts.quiet, device, opts.precision)
    return ctx, opts, {**shared.env, **describe(device, opts.precision)}


def _realism_metrics(ctx, gen, references: dict, extractors: dict, ev, seed: int, log_stage, artifacts: dict
                     ) -> tuple[list[dict], dict]:
    """The metrics stage of a generated set on every extractor: its metric dicts and its features by extractor
    name (kept for the LD-effect tests); each stage's key goes into `artifacts`."""
    metrics, features = [], {}
    for name, extractor in extractors.items():
        stats, stats_source = references[name]
        met = stages.metrics_stage(ctx, gen, stats, stats_source, extractor, ev, seed)
        log_stage()
        artifacts[f"metrics:{name}"] = met.key
        metrics += json.loads(met.file("metrics.json").read_text())
        with np.load(met.file("features.npz"), allow_pickle=False) as z:
            features[extractor.name] = z["features"]
    return metrics, features


def _diversity(ctx, shared: Shared, cell, gen, features: dict, extractor, ev) -> Artifact:
    """The diversity/memorization stage of a cell's generated set on the suite's first extractor."""
    from ldbench.runner.diversity_stage import diversity_stage

    data_art = shared.datasets[cell.dataset][1]
    heldout = shared.floors[(cell.dataset, ev.extractors[0], cell.seed)]
    return diversity_stage(ctx, gen, features[extractor.name], (data_art, shared.train_features[cell.dataset]),
                           heldout, extractor, ev, cell.seed)


def _record(dataset: str, cell, m: dict, provenance: dict) -> dict:
    """One tidy record of a cell's metric `m`."""
    return {"dataset": dataset, "method": cell.method.name, "drift": cell.drift.to_dict(), "seed": cell.seed,
            "editor": cell.editor.name, "metric": m["metric"], "value": m["value"], "ci95": m.get("ci95"),
            "n": m["n"], "extractor": m["extractor"],
            "details": {k: v for k, v in m.items() if k not in ("metric", "value", "ci95", "n", "extractor")},
            "provenance": provenance}


def _counterfactual_evaluation(ctx, ev, cell, ds, data_art, base, ft, editor_model, gen, test_latents,
                               log_stage) -> dict:
    """The counterfactual-metrics and AUC-protocol stages a suite asks for (evaluation.counterfactual,
    .effectiveness, .utility); {} when it asks for none."""
    out: dict = {}
    parts: dict = {}

    def load_parts() -> dict:  # loaded at most once, and only when a stage is built (not on a cache hit)
        if "parts" not in parts:
            parts["parts"] = stages.load_editing_parts(ctx, base, ft, cell.method.name, cell.editor.name, editor_model)
        return parts["parts"]

    if ev.counterfactual or ev.effectiveness:
        oracles = {}
        if ev.effectiveness:
            test = stages.load_table(data_art).split("test")
            for attr in cf_stages.effectiveness_attributes(stages.load_plan(gen), test):
                oracles[attr] = cf_stages.oracle_stage(ctx, data_art, attr, ev, cell.seed)
                log_stage()
                out[f"oracle_{attr}"] = oracles[attr]
        out["counterfactual_metrics"] = cf_stages.counterfactual_metrics_stage(
            ctx, ds, data_art, gen, test_latents, load_parts, cell.editor, cell.drift, ev, oracles, cell.seed)
        log_stage()
    if ev.utility:
        gen_train = stages.generate_stage(ctx, ds, data_art, base, ft, cell.method.name, cell.editor, cell.drift,
                                          cell.seed, editor_model=editor_model, split="train")
        log_stage()
        real = cf_stages.real_classifier_stage(ctx, ds, data_art, ev, cell.seed)
        log_stage()
        out["generate_train"], out["classifier_real"] = gen_train, real
        out["utility"] = cf_stages.utility_stage(ctx, ds, data_art, gen_train, real, ev, cell.seed)
        log_stage()
    return out
