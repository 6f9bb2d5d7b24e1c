"""Does an extractor's distance measure realism? The disturbance test of Heusel et al. (2017).

A held-out set of real images is disturbed at increasing levels (ldbench.metrics.disturbances) and
each disturbed set is scored against the reference split with the distance the suites report (the
Fréchet distance on the extractor's features: FD, FID, or FRD for radiomics; ldbench.metrics.scores).
The undisturbed held-out set, of the same size, gives the floor: what real images score.

Sample size. The test compares sets of the size a generated set has: the test split's (`ldbench
extractors validate` defaults to it). The val split is smaller (synth-brain 60 vs 120, synth-cxr 40 vs 80)
and a Fréchet distance of fewer images is noisier and biased upward, which lifts the floor over mild
disturbances. So the held-out set is the val split topped up with newly rendered subjects of the same
synthetic dataset (another seed: ldbench.runner.floor.floor_images, the held-out floor of a suite run), and
every disturbed set is made from that same held-out set. `--n` chooses a smaller n (seeded subsets of both
sets).

Pass rule, per disturbance: the distance rises strictly from each level to the next, and every level
from the second on scores above the floor (the first, mildest level may sit within sampling noise of
it). The extractor passes when every disturbance passes.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ldbench.errors import UserError
from ldbench.metrics.disturbances import DISTURBANCES, disturb, get_disturbance
from ldbench.metrics.math import gaussian_stats
from ldbench.metrics.scores import (
    DistanceOptions,
    FeatureSet,
    feature_distance_metrics,
    metric_info,
    metric_names,
)

FORMAT = "ldbench-extractor-validation/1"


def matched_subsets(reference: np.ndarray, heldout: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded subsets of `n` images of each set (n defaults to, and may not exceed, the smaller set; at that
    size the larger set is subsampled and the smaller one kept whole),
    so that the floor and every disturbed set are scored at the same sample size."""
    most = min(len(reference), len(heldout))
    n = most if n is None else int(n)
    if n < 2 or n > most:
        raise UserError(f"--n must be in 2..{most} (the smaller of the two splits), got {n}")
    rng = np.random.default_rng([int(seed), 7])
    pick_ref = np.sort(rng.permutation(len(reference))[:n])
    pick_held = np.sort(rng.permutation(len(heldout))[:n])
    return np.asarray(reference)[pick_ref], np.asarray(heldout)[pick_held]


def _distance_fn(extractor, ref_feats: np.ndarray, seed: int):
    mu, sigma = gaussian_stats(ref_feats)

    def distance(images: np.ndarray) -> float:
        feats = extractor.features(images)
        with warnings.catch_warnings():  # fewer images than feature dimensions: expected at small n
            warnings.filterwarnings("ignore", message=r"only \d+ samples for")
            records = feature_distance_metrics(
                FeatureSet(feats), FeatureSet(ref_feats, mu, sigma), family=extractor.family, extractor=extractor.name,
                options=DistanceOptions(kid=False, kid_subset_size=2, kid_subsets=1, bootstrap=0, seed=seed))
        return float(records[0]["value"])

    return distance


def judge(values: list[float], floor: float) -> dict[str, Any]:
    """The pass rule on one disturbance's distances (level 1..L) against the real held-out floor."""
    increasing = [bool(b > a) for a, b in zip(values, values[1:], strict=False)]
    above = [bool(v > floor) for v in values]
    return {"increasing": increasing, "above_floor": above,
            "passed": bool(all(increasing) and all(above[1:]))}


@dataclass(frozen=True)
class ValidationSets:
    """The images of the disturbance test: the reference the distance is taken to, the held-out real
    images that are disturbed (and give the floor), and another dataset's images for the contamination
    disturbance (None or empty: that disturbance is left out)."""

    reference: np.ndarray
    heldout: np.ndarray
    other: np.ndarray | None = None


@dataclass(frozen=True)
class ValidationOptions:
    """seed: of every disturbance and distance; n_levels: only the first levels of each disturbance (None:
    all); disturbances: their names (None: every registered one); dataset: named in the result."""

    seed: int = 0
    n_levels: int | None = None
    disturbances: Sequence[str] | None = None
    dataset: str | None = None


def validate_extractor(extractor, sets: ValidationSets, options: ValidationOptions = ValidationOptions()
                       ) -> dict[str, Any]:
    """Score every disturbance level of `sets.heldout` against `sets.reference` with `extractor`;
    `sets.other` (another dataset) feeds the contamination disturbance. Returns a JSON-ready dict:
    floor, per disturbance its strengths, values and pass flags, and the overall verdict."""
    seed = options.seed
    names = list(options.disturbances) if options.disturbances is not None else list(DISTURBANCES)
    ref_feats = extractor.features(sets.reference)
    distance = _distance_fn(extractor, ref_feats, seed)
    floor = distance(sets.heldout)
    results: dict[str, Any] = {}
    for name in names:
        d = get_disturbance(name)
        if d.needs_other and (sets.other is None or len(sets.other) == 0):
            continue
        count = len(d.levels) if options.n_levels is None else min(int(options.n_levels), len(d.levels))
        values = [distance(disturb(name, sets.heldout, lv, seed, sets.other)) for lv in range(1, count + 1)]
        results[name] = {"unit": d.unit, "levels": list(d.levels[:count]), "values": values,
                         **judge(values, floor)}
    return {
        "format": FORMAT,
        "metric": metric_names(extractor.family)[0],
        "dataset": options.dataset,
        "seed": int(seed),
        "n": int(len(sets.heldout)),
        "n_reference": int(len(sets.reference)),
        "extractor": extractor.describe(),
        "floor": floor,
        "disturbances": results,
        "passed": bool(results) and all(r["passed"] for r in results.values()),
    }


def verdict(result: dict[str, Any]) -> str:
    failed = [k for k, r in result["disturbances"].items() if not r["passed"]]
    head = f"{result['extractor']['name']} on {result.get('dataset') or 'this dataset'} (n={result['n']})"
    if not failed:
        return f"PASS: {head}: every disturbance raises the distance level by level above the real floor"
    return f"FAIL: {head}: {', '.join(failed)} not ranked as less realistic than real images"


def _fmt(metric: str, value: float) -> str:
    info = metric_info(metric)
    return (info.fmt if info else "{:.4g}").format(value) if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def markdown_table(result: dict[str, Any]) -> str:
    """One row per disturbance: the distance at each level (✗ marks a level not above the previous one or,
    from the second level on, not above the floor), and its verdict."""
    metric = result["metric"].upper()
    width = max((len(r["values"]) for r in result["disturbances"].values()), default=0)
    lines = [f"{metric} [{result['extractor']['name']}] of disturbed held-out images against the reference "
             f"({result.get('dataset') or ''}, n={result['n']}, seed {result['seed']}); real held-out floor "
             f"{_fmt(result['metric'], result['floor'])}", "",
             "| disturbance | unit | " + " | ".join(f"level {i + 1}" for i in range(width)) + " | passed |",
             "|---|---|" + "---:|" * width + "---|"]
    for name, r in result["disturbances"].items():
        cells = []
        for i, (s, v) in enumerate(zip(r["levels"], r["values"], strict=False)):
            bad = (i > 0 and not r["increasing"][i - 1]) or (i > 0 and not r["above_floor"][i])
            cells.append(f"{_fmt(result['metric'], v)} ({s:g}){' ✗' if bad else ''}")
        cells += [""] * (width - len(cells))
        lines.append(f"| {name} | {r['unit']} | " + " | ".join(cells) + f" | {'yes' if r['passed'] else 'no'} |")
    lines += ["", verdict(result)]
    return "\n".join(lines) + "\n"


def write_validation(result: dict[str, Any], out_dir: Path, figure_png: bytes) -> dict[str, Path]:
    """validation.json, validation.md and validation.png (`figure_png`, drawn by
    ldbench.report.plots.validation_figure_png) in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "validation.json", "md": out_dir / "validation.md", "png": out_dir / "validation.png"}
    paths["json"].write_text(json.dumps(result, indent=1, allow_nan=False, sort_keys=False) + "\n")
    paths["md"].write_text(markdown_table(result))
    paths["png"].write_bytes(figure_png)
    return paths


__all__ = ["FORMAT", "ValidationOptions", "ValidationSets", "judge", "markdown_table", "matched_subsets",
           "validate_extractor", "verdict", "write_validation"]
