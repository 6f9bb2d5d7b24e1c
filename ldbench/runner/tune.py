"""Choosing δ: a grid over [-0.2, 0.2], scored on the validation split only (never on test).

For each δ of the grid the method is fine-tuned with Latent Drifting (δ = 0: plain fine-tuning) and one
text-to-image sample is drawn for every validation image, prompted with that image's own caption, under
the same drift. Two criteria, both with bootstrap 95% CIs:

  L1 (the paper's criterion, made precise here): the Monte Carlo estimate of
        L1(δ) = E_{(x, c) ~ val} E_{z_T ~ N(δ, I)} [ mean_pixels |G_δ(c, z_T) − x| ],
     one sample per validation image (M = n_val draws), i.e. the mean absolute pixel difference between
     each validation image and a sample generated from its caption. It rewards matching the intensity
     layout of real scans (black background, tissue contrast), which is what Latent Drifting shifts.
  FD: the Fréchet distance [extractor] between the samples and the validation split's features.

The δ with the lowest value of the chosen criterion (default FD) is selected; the whole curve is kept.
Every fine-tune and sample set goes through the same cached stages as `ldbench run`, so a suite that
then uses the chosen δ reuses the fine-tune.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench import validate as v
from ldbench.config import Cell, Component, Suite
from ldbench.drift import NO_DRIFT, Drift
from ldbench.errors import UserError
from ldbench.fsutil import atomic_write_text
from ldbench.progress import console
from ldbench.runner import pipeline, stages
from ldbench.runner.graph import Node, Runtime, Stage, declare, execute
from ldbench.store import Artifact, Store
from ldbench.suite_checks import check_before_building

CRITERIA = ("fd", "l1")
MAX_GRID_POINTS = 201  # each δ of the grid is a fine-tune
TUNE_SCHEMA = "ldbench.tune-delta/1"


@dataclass(frozen=True)
class TuneOptions:
    low: float = -0.2
    high: float = 0.2
    step: float = 0.05
    criterion: str = "fd"
    train: str = "noise"  # the drift placements of the tuned δ (ldbench.drift)
    sample: str = "init"
    seed: int = 0
    device: str = "cpu"  # resolved (ldbench.device.resolve_device)
    precision: str = "fp32"
    inception_weights: str | None = None  # as `ldbench run`'s --inception-weights / --allow-unverified-weights
    allow_unverified_weights: bool = False

    def check(self) -> None:
        """Every option, before any work: finite bounds, step > 0, at most MAX_GRID_POINTS values."""
        grid = f"{self.low}:{self.high}:{self.step}"
        for name in ("low", "high", "step"):
            if not v.is_real(getattr(self, name)) or not np.isfinite(getattr(self, name)):
                raise UserError(f"--grid={grid}: {name} must be a finite number; e.g. --grid=-0.2:0.2:0.05")
        if not self.step > 0 or not self.low <= self.high:
            raise UserError(f"--grid={grid}: need LOW <= HIGH and STEP > 0; e.g. --grid=-0.2:0.2:0.05")
        points = (self.high - self.low) / self.step + 1
        if points > MAX_GRID_POINTS:
            raise UserError(f"--grid={grid} has {points:.3g} values, more than {MAX_GRID_POINTS} (each is a "
                            f"fine-tune); use a larger STEP, e.g. --grid={self.low}:{self.high}:"
                            f"{(self.high - self.low) / (MAX_GRID_POINTS - 1):.3g}")
        if self.criterion not in CRITERIA:
            raise UserError(f"tune-delta: criterion {self.criterion!r} is not one of {', '.join(CRITERIA)}")
        Drift(0.1, train=self.train, sample=self.sample)
        v.seed(self.seed, "--seed")

    def grid(self) -> list[float]:
        self.check()
        n = int(np.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [round(self.low + i * self.step, 10) for i in range(n)]
        if 0.0 not in values:  # the no-LD reference point is always on the curve
            values = sorted(values + [0.0])
        return values


def parse_grid(text: str) -> tuple[float, float, float]:
    """"LOW:HIGH:STEP", e.g. "-0.2:0.2:0.05"."""
    try:
        low, high, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise UserError(f"--grid {text!r}: expected LOW:HIGH:STEP, e.g. -0.2:0.2:0.05") from None
    return low, high, step


def _criterion_extractor(ev, opts: TuneOptions):
    """The criterion's features: the suite's first extractor, with the Inception weights options and device."""
    from ldbench.metrics import factory

    name = ev.extractors[0]
    return factory.extractor(factory.ExtractorConfig(name, dict(ev.extractor_options.get(name, {})),
                                                     opts.inception_weights, opts.allow_unverified_weights, opts.device))


SCORE_VERSION = "1"


def build_delta_score(rt, node, up: dict) -> Artifact:
    """L1 and FD of one δ's validation samples against the validation split, with bootstrap CIs, cached."""
    from ldbench.metrics.scores import distribution_metrics
    from ldbench.metrics.significance import mean_with_ci

    gen, (stats, stats_source), data_art = up["generate"], up["reference"], up["dataset"]
    extractor, ev, seed = rt.extractors[node["extractor"]], rt.evaluation, node["seed"]
    config = {"evaluation": dataclasses.asdict(ev), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed, "split": "val"}

    def build(tmp: Path) -> dict:
        images, val = stages.load_generated(gen)["images"], stages.load_table(data_art).split("val")
        l1, l1_ci = mean_with_ci(np.abs(images - val.images).mean(axis=(1, 2)), ev.bootstrap, seed)
        feats = extractor.features(images, batch_size=ev.batch_size)
        fd = next(m for m in distribution_metrics(feats, stats, extractor, ev, seed) if m["metric"] in ("fd", "fid"))
        score = {"l1": l1, "l1_ci95": list(l1_ci) if l1_ci else None, "fd": fd["value"], "fd_ci95": fd["ci95"],
                 "fd_metric": fd["metric"], "n": len(images)}
        (tmp / "score.json").write_text(json.dumps(score))
        return {"fd": fd["value"], "l1": l1}

    return rt.ctx.store.get_or_build("delta-score", SCORE_VERSION, config, [gen], build)


declare(Stage("delta-score", SCORE_VERSION, shared=False, nodes=lambda suite, scope, facts: [],  # tune-delta only
              build=build_delta_score, cost=lambda node, costs, facts: costs.metrics))


def _grid_nodes(suite: Suite, cells: list, extractor: str) -> list[tuple[Cell, Node, Node]]:
    """Per δ of the grid: its cell, its validation samples' node and their score's node (pipeline nodes)."""
    spec = suite.datasets[0]
    reference = pipeline.reference_node(spec, extractor, "val")
    out = []
    for cell in cells:
        gen = pipeline.generate_node(suite, cell, "val")
        score = Node.make("delta-score", {"dataset": pipeline.dataset_node(spec), "generate": gen,
                                          "reference": reference}, extractor=extractor, seed=cell.seed)
        out.append((cell, gen, score))
    return out


def tune_delta(suite: Suite, dataset_spec: Component, method_spec: Component, opts: TuneOptions, out_dir: Path,
               cache_dir: Path, quiet: bool = False) -> dict:
    from ldbench.device import use_device

    grid = opts.grid()  # every option checked before any work
    use_device(opts.device)
    ctx = stages.context(Store(cache_dir, device=opts.device, precision=opts.precision), quiet, opts.device,
                         opts.precision)
    extractors = {suite.evaluation.extractors[0]: _criterion_extractor(suite.evaluation, opts)}
    # the checks `run` makes before its first build (the extractor's network, the classifier's name)
    ctx.store.before_first_build = lambda: check_before_building(suite, extractors)
    editor = Component("text2img", next((e.options for e in suite.editors if e.name == "text2img"), {}))
    tuned = dataclasses.replace(suite, datasets=(dataset_spec,), methods=(method_spec,), editors=(editor,))
    rt = Runtime(ctx, tuned, extractors)
    val = _validation_split(rt, dataset_spec)
    rt.suite = dataclasses.replace(tuned, evaluation=dataclasses.replace(
        suite.evaluation, kid_subset_size=min(suite.evaluation.kid_subset_size, len(val))))
    cells = [Cell(dataset_spec, method_spec, NO_DRIFT if d == 0 else Drift(d, train=opts.train, sample=opts.sample),
                  opts.seed, editor) for d in grid]
    curve = []
    for delta, (cell, gen, score) in zip(grid, _grid_nodes(rt.suite, cells, suite.evaluation.extractors[0]), strict=True):
        if not quiet:
            console.print(f"δ = {delta:+.3f} ({cell.drift.label})")
        execute(rt, [score])  # its fine-tune, samples and reference statistics first
        result = json.loads(rt.results[score].file("score.json").read_text())
        curve.append({"delta": delta, "drift": cell.drift.to_dict(), **result,
                      "artifacts": {"finetune": rt.results[gen.up("finetune")].key, "generate": rt.results[gen].key}})
    return _write_result(rt, opts, curve, out_dir)


def _validation_split(rt: Runtime, spec: Component):
    data = pipeline.dataset_node(spec)
    execute(rt, [data])
    val = stages.load_table(rt.results[data]).split("val")
    if len(val) < 2:
        raise UserError(f"tune-delta: dataset {rt.dataset(spec).name} has {len(val)} validation images; δ is "
                        "chosen on the validation split only, so it needs at least 2")
    return val


def _write_result(rt: Runtime, opts: TuneOptions, curve: list[dict], out_dir: Path) -> dict:
    suite, ev = rt.suite, rt.evaluation
    spec, method, editor = suite.datasets[0], suite.methods[0], suite.editors[0]
    extractor = rt.extractors[ev.extractors[0]]
    reference = rt.results[pipeline.reference_node(spec, ev.extractors[0], "val")]
    best = min(curve, key=lambda c: c[opts.criterion])
    result = {
        "schema": TUNE_SCHEMA, "dataset": rt.dataset(spec).name, "dataset_options": rt.dataset(spec).options(),
        "method": dataclasses.asdict(method), "criterion": opts.criterion, "split": "val",
        "chosen_delta": best["delta"], "chosen_drift": best["drift"], "curve": curve,
        "options": dataclasses.asdict(opts), "extractor": extractor.describe(), "reference_stats": reference[1],
        "base_model": rt.results[pipeline.base_node(suite)].key, "editor": dataclasses.asdict(editor),
        "bootstrap": {"B": ev.bootstrap, "seed": opts.seed},
        "definition": "L1: mean |sample - validation image| per pixel, one sample per validation image prompted "
                      "with its caption (Monte Carlo, M = n_val); FD: Fréchet distance to the validation split",
        "use_it": suite_override(best["drift"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "tune-delta.json", json.dumps(result, indent=1, allow_nan=False))
    atomic_write_text(out_dir / "tune-delta.md", curve_markdown(result))
    return result


def suite_override(drift: dict) -> str:
    """The --set argument that puts the chosen δ (and no LD) in any suite."""
    chosen = "" if drift["delta"] == 0 else (f", {{delta: {drift['delta']}, train: {drift['train']}, "
                                              f"sample: {drift['sample']}}}")
    return f"--set 'drifts=[{{delta: 0.0, train: none, sample: none}}{chosen}]'"


def curve_markdown(result: dict) -> str:
    def ci(c):
        return f"[{c[0]:.4f}, {c[1]:.4f}]" if c else "—"

    fd_name = result["curve"][0]["fd_metric"].upper()
    lines = [f"δ curve for {result['dataset']} · {result['method']['name']} on the validation split "
             f"(criterion: {result['criterion']}; {fd_name} on {result['extractor']['name']})", "",
             f"| δ | L1 | L1 95% CI | {fd_name} | {fd_name} 95% CI | chosen |", "|---|---|---|---|---|---|"]
    for c in result["curve"]:
        mark = "**←**" if c["delta"] == result["chosen_delta"] else ""
        lines.append(f"| {c['delta']:+.3f} | {c['l1']:.4f} | {ci(c['l1_ci95'])} | {c['fd']:.4f} | "
                     f"{ci(c['fd_ci95'])} | {mark} |")
    lines += ["", f"Chosen δ = {result['chosen_delta']:+.3f}. Use it: `ldbench run --suite NAME {result['use_it']}`", ""]
    return "\n".join(lines)
