"""The floor of every realism number: real held-out images scored exactly like a generated set.

FID of a finite set against a finite reference is biased upward, and at the sizes medical test sets have
(a hundred or a few hundred images) the bias is most of the number: 120 real held-out synth-brain scans
score tens of FID points against the 120-image test split. A generated set's FID only means something next
to this floor. So every run scores real images of the dataset that are neither in the reference split nor
used for fine-tuning (the `val` split; where it holds fewer images than a generated set, a synthetic dataset
renders new subjects with another seed to make up the count), as many as a generated set holds, with the
same extractor,
reference statistics, KID subsets, bootstrap and seed. Its records have method `real` and editor
`held-out`; tables show them as the first row of every realism table.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ldbench.drift import NO_DRIFT
from ldbench.metrics.scores import FLOOR_EDITOR, FLOOR_METHOD
from ldbench.store import Artifact

FLOOR_SPLIT = "val"  # tune-delta and the oracles' epoch choice read it; fine-tuning never does
STAGE_VERSION = "2"  # 2: topped up to the generated-set size; keeps its images and features


HELDOUT_SEED_OFFSET = 1_000_003  # a synthetic dataset's extra subjects: another seed, the same generative model


def _render_more(dataset, m: int) -> np.ndarray | None:
    """`m` images of new subjects from a synthetic dataset (its options with another seed), or None for a
    dataset that cannot render more (real data)."""
    opts = dataset.options()
    if not {"seed", "n_subjects", "visits"} <= set(opts):
        return None
    fresh = type(dataset)(**{**opts, "seed": opts["seed"] + HELDOUT_SEED_OFFSET,
                             "n_subjects": max(3, -(-m // opts["visits"]))})
    return fresh.prepare().table.images[:m]


def floor_images(dataset, data_art: Artifact, n: int) -> tuple[np.ndarray, str]:
    """`n` held-out real images: the held-out split, topped up with newly rendered subjects where it holds
    fewer (synthetic datasets); with a note saying what was used."""
    from ldbench.runner.stages import load_table

    held = load_table(data_art).split(FLOOR_SPLIT).images
    if len(held) >= n:
        return held[:n], f"the first {n} images of the {FLOOR_SPLIT} split"
    extra = _render_more(dataset, n - len(held))
    if extra is None:
        return held, (f"the {FLOOR_SPLIT} split holds {len(held)} images, fewer than the {n} of a generated set: "
                      "the floor uses all of them, so it is a little higher than at equal size")
    return np.concatenate([held, extra]), (f"the {len(held)} images of the {FLOOR_SPLIT} split and {len(extra)} of "
                                           f"new subjects rendered with seed + {HELDOUT_SEED_OFFSET}")


def build_heldout_metrics(rt, node, up: dict) -> Artifact:
    """Realism metrics of as many held-out real images as a generated set holds (the test split's size)
    against the reference statistics (`up["reference"]` = (stats, stats_source)), cached."""
    from ldbench.metrics.scores import distribution_metrics

    data_art, (stats, stats_source) = up["dataset"], up["reference"]
    dataset, extractor, evaluation = rt.dataset(node["dataset"]), rt.extractors[node["extractor"]], rt.evaluation
    seed, n = node["seed"], int(data_art.meta["n_test"])
    config = {"evaluation": evaluation.scoring_key(), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed, "n": n, "split": FLOOR_SPLIT}

    def build(tmp: Path) -> dict:
        images, source = floor_images(dataset, data_art, n)
        feats = extractor.features(images, batch_size=evaluation.batch_size)
        metrics = distribution_metrics(feats, stats, extractor, evaluation, seed)
        for m in metrics:
            m["images"] = source
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        np.savez(tmp / "heldout.npz", images=np.asarray(images, dtype=np.float64),
                 features=np.asarray(feats, dtype=np.float64))  # the memorization metrics' reference
        return {"n_metrics": len(metrics), "n_images": int(len(images))}

    return rt.ctx.store.get_or_build("heldout-metrics", STAGE_VERSION, config, [data_art], build)


def heldout_records(rt, node, art: Artifact, base_provenance: dict) -> list[dict]:
    """The floor's records of one dataset × extractor × seed, with their provenance (Stage.records)."""
    provenance = {**realism_provenance(rt, node, base_provenance), "artifacts": {"heldout_metrics": art.key}}
    return realism_records(rt.dataset(node["dataset"]).name, node["seed"], art, provenance,
                           FLOOR_METHOD, FLOOR_EDITOR)


def realism_provenance(rt, node, base_provenance: dict) -> dict:
    """The provenance of a shared node scored like a generated set on the floor's images (the floor, the
    autoencoder's realism ceiling): dataset, split, seeds, reference statistics and extractor."""
    spec, seed = node["dataset"], node["seed"]
    return {**base_provenance, "dataset": dataclasses.asdict(spec), "split": FLOOR_SPLIT,
            "seeds": {"bootstrap": seed, "kid_subsets": seed},
            "reference_stats": rt.results[node.up("reference")][1],
            "extractor": rt.extractors[node["extractor"]].describe()}


def realism_records(dataset: str, seed: int, art: Artifact, provenance: dict, method: str, editor: str) -> list[dict]:
    """Tidy records (the shape of a cell's) of an artifact's `metrics.json` (distribution_metrics' output),
    under the row (method, editor): the held-out floor's, or the realism ceiling's."""
    records = []
    for m in json.loads(art.file("metrics.json").read_text()):
        records.append({
            "dataset": dataset, "method": method, "drift": NO_DRIFT.to_dict(),
            "seed": seed, "editor": editor, "metric": m["metric"], "value": m["value"],
            "ci95": m.get("ci95"), "n": m["n"], "extractor": m["extractor"],
            "details": {k: v for k, v in m.items() if k not in ("metric", "value", "ci95", "n", "extractor")},
            "provenance": provenance,
        })
    return records
