"""Run a suite: expand its cells, run every stage through the store, write results, tables and report."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ldbench.config import Suite
from ldbench.errors import UserError
from ldbench.hashing import stable_hash
from ldbench.metrics.validation_results import mark_validation
from ldbench.progress import console, escape
from ldbench.runner import stages
from ldbench.runner.effects import CellEvidence, stored_ld_effects
from ldbench.runner.graph import STAGES, CellResults, Runtime, execute, plan
from ldbench.runner.outputs import (
    RESULTS_SCHEMA,  # noqa: E402,F401  (re-exported)
    RunOutputs,
    write_outputs,
)
from ldbench.runner.pipeline import RunFacts, base_node
from ldbench.runner.provenance import base_model_provenance, environment, new_run_id
from ldbench.runner.training_records import training_records
from ldbench.store import Artifact, Store
from ldbench.suite_checks import check_before_building, check_table_for_suite


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
    log_with: tuple = ()  # experiment trackers of the training loops (ldbench.models.training.use_trackers)

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


def _use_trackers(opts: RunOptions) -> None:
    from ldbench.models.training import use_trackers

    use_trackers(opts.log_with, str(opts.out_dir / "logs"))


def _planned_suite(suite: Suite, opts: RunOptions) -> Suite:
    """The suite as it runs: --base-model PATH replaces its base model (its resolved config stays as written)."""
    from ldbench.config import Component

    if not opts.base_model:
        return suite
    return dataclasses.replace(suite, base_model=Component("diffusers", {"path": opts.base_model}))


def run_suite(suite: Suite, opts: RunOptions) -> RunResult:
    start = time.perf_counter()
    opts = dataclasses.replace(opts, run_id=opts.run_id or new_run_id())
    from ldbench.device import key_fields, use_device

    use_device(opts.device)
    _use_trackers(opts)
    store = Store(opts.cache_dir, read_only=opts.require_cached, device=opts.device, precision=opts.precision)
    if opts.cache_device:  # re-render on this machine what a run made elsewhere (nothing is built)
        store.key_extra = key_fields(opts.cache_device, opts.precision)
    ctx = stages.context(store, opts.quiet, opts.device, opts.precision)
    extractors = make_extractors(suite, opts)  # fails early (missing weights) before any training
    store.before_first_build = lambda: check_before_building(suite, extractors)
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
        records = _run(suite, opts, ctx, _planned_suite(suite, opts), extractors, log)
        seconds = time.perf_counter() - start
        log("end", seconds=round(seconds, 2), built=sum(not e["cached"] for e in store.events))
    return RunResult(records, opts.out_dir, seconds, store.events)


@dataclass
class Shared:
    """The results of the shared nodes (datasets, reference statistics, base model, latents, held-out floor),
    built once by the driver before any cell runs, so workers only read them."""

    results: dict  # Node -> its result
    env: dict
    threads: int  # torch threads of the driver; workers use the same, so numbers match across executors


@dataclass
class CellOutput:
    records: list[dict]
    evidence: CellEvidence
    generated: dict
    store_events: list[dict]


def _check_dataset(suite: Suite):
    """The checks a suite makes of each dataset once built: every size fails before any training."""

    def check(dataset, art: Artifact) -> None:
        table = stages.load_table(art)
        check_table_for_suite(suite, dataset.name, table)
        if any(e.name == "instruct" for e in suite.editors) and len(table):
            from ldbench.generate.instruct import age_prompt

            age_prompt(dataset, table.row(0), "number")  # instruct rewrites the age in a caption: one must be there
        kid = suite.evaluation.kid_subset_size
        if kid > art.meta["n_test"]:
            raise UserError(
                f"evaluation.kid_subset_size={kid} is larger than the {art.meta['n_test']} test images of "
                f"{dataset.name}; set it explicitly, e.g. --set evaluation.kid_subset_size={art.meta['n_test']}")

    return check


def _run(suite: Suite, opts: RunOptions, ctx: stages.Context, planned: Suite, extractors: dict, log) -> list[dict]:
    """Execute the plan of `planned` (the suite with its base model as run): shared nodes in the driver, then
    every cell's nodes through the executor; then the LD effects and the outputs."""
    import torch

    from ldbench.runner.executors import create_executor

    executor = create_executor(opts.executor, opts.executor_options, opts.out_dir)  # bad options fail first
    rt = Runtime(ctx, planned, extractors, log=log, on_dataset=_check_dataset(suite))
    facts = RunFacts(rt)
    execute(rt, plan(planned, facts, cells=[]).shared)  # data and statistics first, then the base model
    full = plan(planned, facts)
    shared = Shared(dict(rt.results), environment(opts.device, opts.precision), torch.get_num_threads())
    shared_records = _shared_records(suite, full, rt, shared)
    log("executor", name=opts.executor, **{k: str(v) for k, v in opts.executor_options.items()})
    progress = _CellProgress(len(full.cells), opts.quiet, executor.in_process)

    def on_done(i: int, out: CellOutput) -> None:
        if not executor.in_process:  # in-process cells log each stage as it ends; workers report at the end
            for event in out.store_events:
                log("stage", **event)
                ctx.store.events.append(event)
        progress.done(i)
        log("cell", index=i, cached=all(e["cached"] for e in out.store_events))

    worker_opts = dataclasses.replace(opts, quiet=opts.quiet or not executor.in_process,
                                      executor_gpus=getattr(executor, "gpus", 0))
    jobs = [(suite, worker_opts, shared, cell) for cell in full.cells]
    outputs: list[CellOutput] = executor.map(run_cell, jobs, on_start=lambda i: progress.start(i, full.cells[i][0]),
                                             on_done=on_done, **({"rt": rt} if executor.in_process else {}))
    training, training_evidence = training_records(suite, [out.generated for out in outputs],
                                                   (shared.env, shared.threads))
    records = shared_records + training + [r for out in outputs for r in out.records]
    mark_validation(records, {e.name: e.fingerprint for e in extractors.values()})
    evidence = [out.evidence for out in outputs] + training_evidence
    effects = []
    if suite.evaluation.significance:
        effects = stored_ld_effects(ctx.store, evidence, suite.evaluation)
        log("stage", **ctx.store.events[-1])  # the effects' store entry, built or read, like every stage's
    latents = {n["dataset"]: rt.results[n] for n in full.shared if n.stage == "latents"}
    write_outputs(suite, opts, RunOutputs(records, effects, rt.results[base_node(planned)], latents,
                                          [out.generated for out in outputs], shared.env, _roc(evidence)), log)
    return records


def _roc(evidence: list[CellEvidence]) -> list[dict]:
    """The ROC curves of every AUC metric (effectiveness oracles, AUC protocol), per cell, for the report."""
    return [{"title": f"{c.dataset} · {c.method} · {c.drift.label} · {c.editor} · seed {c.seed}",
             "curves": {k.split("__", 1)[1]: (c.items[k], c.items["auc_score__" + k.split("__", 1)[1]])
                        for k in sorted(c.items) if k.startswith("auc_y__")}}
            for c in evidence if any(k.startswith("auc_y__") for k in c.items)]


class _CellProgress:
    """One line per cell as it starts, with the time so far and (in process) an ETA at the pace so far."""

    def __init__(self, n: int, quiet: bool, in_process: bool) -> None:
        self.n, self.quiet, self.in_process = n, quiet, in_process
        self.start_time, self.finished = time.perf_counter(), 0

    def start(self, i: int, cell) -> None:
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start_time
        eta = (f", eta ~{_minutes(elapsed / self.finished * (self.n - self.finished))} at the pace so far"
               if self.finished and self.in_process else "")
        console.print(escape(f"cell {i + 1}/{self.n}: {cell.dataset.name} · {cell.method.name} · "
                             f"{cell.drift.label} · seed {cell.seed} · {cell.editor.name} ")
                      + f"[dim](elapsed {_minutes(elapsed)}{eta})[/dim]", soft_wrap=True)  # one line in a log

    def done(self, i: int) -> None:
        self.finished += 1


def _shared_records(suite: Suite, full, rt: Runtime, shared: Shared) -> list[dict]:
    """The tidy records of the shared nodes that have their own (Stage.records): the real held-out floor of
    every dataset × extractor × seed (ldbench.runner.floor), the autoencoder's reconstruction of each dataset."""
    base = {"suite": suite.name, "resolved_config": suite.to_dict(), "environment": shared.env,
            "torch_threads": shared.threads}
    records = []
    for node in full.shared:
        stage = STAGES.get(node.stage)
        if stage.records is not None:
            records += stage.records(rt, node, shared.results[node], base)
    return records


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def run_cell(suite: Suite, opts: RunOptions, shared: Shared, planned_cell: tuple, rt: Runtime | None = None
             ) -> CellOutput:
    """Every node of one cell (fine-tune, editor model, generations, metrics, counterfactual stages), then its
    records. Runs in the driver (local executor, `rt` given) or in a worker (Ray, SLURM) against the same
    shared store."""
    cell, nodes = planned_cell
    env = shared.env
    if rt is None:  # a worker: its own store handle on the shared cache directory, the driver's threads
        ctx, opts, env = _worker_context(opts, shared)
        extractors = make_extractors(suite, opts, reuse=True)  # built once per worker process and configuration
        ctx.store.before_first_build = lambda: check_before_building(suite, extractors)
        rt = Runtime(ctx, _planned_suite(suite, opts), extractors, results=dict(shared.results))
    first_event = len(rt.ctx.store.events)
    execute(rt, nodes)
    collected, artifacts = CellResults(), {}
    for node in nodes:
        stage, result = STAGES.get(node.stage), rt.results[node]
        artifacts[stage.artifact_label(node, result)] = result.key
        if stage.collect is not None:
            stage.collect(rt, node, result, collected)
    gen_node = next(n for n in nodes if n.stage == "generate" and n["split"] == "test")
    gen, base = rt.results[gen_node], rt.results[gen_node.up("base")]
    data_node = gen_node.up("dataset")
    ds, data_art = rt.dataset(cell.dataset), rt.results[data_node]
    artifacts = {"dataset": data_art.key, "base_model": base.key, **artifacts}
    built = {"finetune": rt.results[gen_node.up("finetune")], "generate": gen, "base": base}
    provenance = _cell_provenance(suite, cell, built, artifacts, collected.notes, (env, shared.threads))
    references = {n["extractor"]: rt.results[n.up("reference")] for n in nodes if n.stage == "metrics"}
    realism = {rt.extractors[n].name: {"extractor": rt.extractors[n].describe(), "reference_stats": references[n][1]}
               for n in references}
    cell_records = [_record(ds.name, cell, m, {**provenance, **realism.get(m["extractor"], {})})
                    for m in collected.metrics]
    gen_arrays = stages.load_generated(gen)
    evidence = CellEvidence(
        dataset=ds.name, method=cell.method.name, editor=cell.editor.name, seed=cell.seed, drift=cell.drift,
        records=cell_records, items=collected.items, features=collected.features,
        pairing=stable_hash({"source": gen_arrays["source_index"].tolist(), "plan": stages.load_plan(gen)}),
        stats={rt.extractors[n].name: references[n][0] for n in references})
    generated = {"cell": cell, "dataset": ds, "data_art": data_art, "generate": gen,
                 "finetune": rt.results[gen_node.up("finetune")], "base": base}
    return CellOutput(cell_records, evidence, generated, list(rt.ctx.store.events[first_event:]))


def _cell_provenance(suite: Suite, cell, built: dict, artifacts: dict, notes: list, environment: tuple) -> dict:
    """A cell's provenance: `built` = its finetune, generate and base artifacts by role; `environment` =
    (the environment it ran in, torch threads)."""
    (ft, gen, base), (env, threads) = (built["finetune"], built["generate"], built["base"]), environment
    return {
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
        "environment": env,
        "torch_threads": threads,
        **base_model_provenance(base.meta, notes),
    }


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
    _use_trackers(opts)
    ctx = stages.context(Store(opts.cache_dir, read_only=opts.require_cached), opts.quiet, device, opts.precision)
    return ctx, opts, {**shared.env, **describe(device, opts.precision)}


def _record(dataset: str, cell, m: dict, provenance: dict) -> dict:
    """One tidy record of a cell's metric `m`."""
    return {"dataset": dataset, "method": cell.method.name, "drift": cell.drift.to_dict(), "seed": cell.seed,
            "editor": cell.editor.name, "metric": m["metric"], "value": m["value"], "ci95": m.get("ci95"),
            "n": m["n"], "extractor": m["extractor"],
            "details": {k: v for k, v in m.items() if k not in ("metric", "value", "ci95", "n", "extractor")},
            "provenance": provenance}
