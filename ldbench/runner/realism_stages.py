"""Realism stages: the reference statistics of a split and the realism metrics of a generated set on each
extractor (FID / KID on Inception, FD / KD on others), with the features kept for the LD-effect tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ldbench import __version__
from ldbench.data.base import Dataset
from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.paths import REFERENCE_STATS_DIR
from ldbench.runner.stages import STAGE_VERSIONS, Context, load_generated, load_table
from ldbench.store import Artifact

# --- reference statistics --------------------------------------------------------------------------


def expected_stats_meta(dataset: Dataset, data_art: Artifact, split: str, extractor) -> dict:
    content = data_art.meta["test_content_hash"] if split == "test" else None
    if content is None:
        content = load_table(data_art).split(split).content_hash()
    return {
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "dataset_options": dataset.options(),
        "split": split,
        "content_hash": content,
        "extractor": extractor.describe(),
    }


def reference_stats_stage(ctx: Context, dataset: Dataset, data_art: Artifact, split: str, extractor,
                          batch_size: int) -> tuple[object, dict]:
    """Reference statistics of a split: the shipped file in reference_stats/ when one was made from the
    same images with the same extractor, else built once into the store. Either way the numbers are those
    of the same images and extractor; the record says which file was used and its SHA-256."""
    from ldbench.metrics.stats import (
        build_reference_stats,
        check_compatible,
        load_reference_stats,
        save_reference_stats,
    )

    expected = expected_stats_meta(dataset, data_art, split, extractor)
    for sidecar in sorted(REFERENCE_STATS_DIR.glob("*.json")):
        if sidecar.name == "manifest.json":
            continue
        try:
            meta = json.loads(sidecar.read_text())
            check_compatible(meta, expected)
        except (UserError, ValueError, KeyError):
            continue
        npz = sidecar.with_suffix(".npz")
        stats = load_reference_stats(npz)
        return stats, {"source": "shipped", "path": str(npz.relative_to(REFERENCE_STATS_DIR.parent)),
                       "sha256": sha256_file(npz)}

    def build(tmp: Path) -> dict:
        images = load_table(data_art).split(split).images
        stats = build_reference_stats(images, extractor, {**expected, "ldbench_version": __version__},
                                      keep_features=True, batch_size=batch_size)
        save_reference_stats(stats, tmp / "stats.npz")
        return {"n": int(stats.meta["n"])}

    config = {k: v for k, v in expected.items()}
    art = ctx.store.get_or_build("reference-stats", STAGE_VERSIONS["reference-stats"], config, [data_art], build)
    return load_reference_stats(art.file("stats.npz")), {
        "source": "built", "path": str(art.file("stats.npz")), "sha256": sha256_file(art.file("stats.npz"))}


# --- metrics ---------------------------------------------------------------------------------------


def build_metrics(rt, node, up: dict) -> Artifact:
    """Realism metrics of a generated set on one extractor against the reference statistics; keeps the
    features (features.npz) for the LD-effect tests and the diversity stage."""
    from ldbench.metrics.scores import distribution_metrics

    gen, (stats, stats_source) = up["generate"], up["reference"]
    extractor, evaluation, seed = rt.extractors[node["extractor"]], rt.evaluation, node["seed"]
    config = {"evaluation": evaluation.scoring_key(), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed}

    def build(tmp: Path) -> dict:
        images = load_generated(gen)["images"]
        feats = extractor.features(images, batch_size=evaluation.batch_size)
        metrics = distribution_metrics(feats, stats, extractor, evaluation, seed)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        np.savez(tmp / "features.npz", features=np.asarray(feats, dtype=np.float64))  # for LD-effect tests
        return {"n_metrics": len(metrics)}

    return rt.ctx.store.get_or_build("metrics", STAGE_VERSIONS["metrics"], config, [gen], build)


def collect_metrics(rt, node, art: Artifact, cell) -> None:
    cell.metrics += json.loads(art.file("metrics.json").read_text())
    with np.load(art.file("features.npz"), allow_pickle=False) as z:
        cell.features[rt.extractors[node["extractor"]].name] = z["features"]


def build_reference_stats(rt, node, up: dict) -> tuple[object, dict]:
    dataset, name = rt.dataset(node["dataset"]), node["extractor"]
    stats, source = reference_stats_stage(rt.ctx, dataset, up["dataset"], node["split"], rt.extractors[name],
                                          rt.evaluation.batch_size)
    if rt.log is not None:
        rt.log("reference-stats", dataset=dataset.name, extractor=name, **source)
    return stats, source
