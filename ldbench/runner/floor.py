"""The floor of every realism number: real held-out images scored exactly like a generated set.

FID of a finite set against a finite reference is biased upward, and at the sizes medical test sets have
(a hundred or a few hundred images) the bias is most of the number: 120 real held-out synth-brain scans
score tens of FID points against the 120-image test split. A generated set's FID only means something next
to this floor. So every run scores real images of the dataset that are neither in the reference split nor
used for fine-tuning (the `val` split), as many as a generated set holds, with the same extractor,
reference statistics, KID subsets, bootstrap and seed. Its records have method `real` and editor
`held-out`; tables show them as the first row of every realism table.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ldbench.config import Evaluation
from ldbench.drift import Drift
from ldbench.metrics.scores import FLOOR_EDITOR, FLOOR_METHOD
from ldbench.runner.store import Artifact

FLOOR_SPLIT = "val"  # tune-delta and the oracles' epoch choice read it; fine-tuning never does
STAGE_VERSION = "1"


def floor_images(data_art: Artifact, n: int) -> tuple[np.ndarray, str]:
    """The first `n` images of the held-out split (all of them, with a note, when it holds fewer)."""
    from ldbench.runner.stages import load_table

    held = load_table(data_art).split(FLOOR_SPLIT).images
    note = ""
    if len(held) < n:
        note = (f"the {FLOOR_SPLIT} split holds {len(held)} images, fewer than the {n} of a generated set: "
                "the floor uses all of them, so it is a little higher than at equal size")
    return held[:n], note


def heldout_metrics_stage(ctx, data_art: Artifact, reference: tuple, extractor, evaluation: Evaluation,
                          seed: int, n: int) -> Artifact:
    """Realism metrics of `n` held-out real images against `reference` = (stats, stats_source), cached."""
    from ldbench.metrics.scores import distribution_metrics

    stats, stats_source = reference
    config = {"evaluation": dataclasses.asdict(evaluation), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed, "n": n, "split": FLOOR_SPLIT}

    def build(tmp: Path) -> dict:
        images, note = floor_images(data_art, n)
        feats = extractor.features(images, batch_size=evaluation.batch_size)
        metrics = distribution_metrics(feats, stats, extractor, evaluation, seed)
        for m in metrics:
            m["split"] = FLOOR_SPLIT
            if note:
                m["note"] = note
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return {"n_metrics": len(metrics), "n_images": int(len(images))}

    return ctx.store.get_or_build("heldout-metrics", STAGE_VERSION, config, [data_art], build)


def floor_records(dataset: str, seed: int, art: Artifact, provenance: dict) -> list[dict]:
    """Tidy records (the shape of a cell's) of a held-out floor artifact."""
    records = []
    for m in json.loads(art.file("metrics.json").read_text()):
        records.append({
            "dataset": dataset, "method": FLOOR_METHOD, "drift": Drift(0.0, "none", "none").to_dict(),
            "seed": seed, "editor": FLOOR_EDITOR, "metric": m["metric"], "value": m["value"],
            "ci95": m.get("ci95"), "n": m["n"], "extractor": m["extractor"],
            "details": {k: v for k, v in m.items() if k not in ("metric", "value", "ci95", "n", "extractor")},
            "provenance": {**provenance, "artifacts": {"heldout_metrics": art.key}},
        })
    return records
