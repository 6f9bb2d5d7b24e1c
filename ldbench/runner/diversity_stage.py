"""Diversity and memorization of a generated set (ldbench.metrics.diversity), as cached stages.

Memorization compares each generated image's distance to its nearest train image with the same distance
of real held-out images (the floor's images, ldbench.runner.floor), in pixel space and in the feature
space of the suite's first extractor. The train split's features are a stage of their own, shared by
every cell of a dataset.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ldbench.store import Artifact

STAGE_VERSION = "1"


def build_split_features(rt, node, up: dict) -> Artifact:
    """Features of one split of a dataset on one extractor, cached."""
    from ldbench.runner.stages import load_table

    data_art, split, extractor = up["dataset"], node["split"], rt.extractors[node["extractor"]]
    batch_size, ctx = rt.evaluation.batch_size, rt.ctx

    def build(tmp: Path) -> dict:
        images = load_table(data_art).split(split).images
        np.savez(tmp / "features.npz", features=extractor.features(images, batch_size=batch_size))
        return {"n": int(len(images))}

    config = {"split": split, "extractor": extractor.describe()}
    return ctx.store.get_or_build("split-features", STAGE_VERSION, config, [data_art], build)


def build_diversity(rt, node, up: dict) -> Artifact:
    """MS-SSIM diversity and memorization records of the generated set (with its features on the suite's
    first extractor, kept by its metrics stage) against the train split (and its features) and the held-out
    floor's images on the same extractor. metrics.json holds the records, items.npz the per-item evidence."""
    from ldbench.metrics.diversity import DiversityOptions, ImageSet, diversity_records
    from ldbench.runner.stages import load_generated, load_table

    gen, train_feats, heldout, ctx = up["generate"], up["train_features"], up["heldout"], rt.ctx
    data_art = up["dataset"]
    extractor, evaluation, seed = rt.extractors[node["extractor"]], rt.evaluation, node["seed"]
    with np.load(up["metrics"].file("features.npz"), allow_pickle=False) as z:
        gen_features = z["features"]
    config = {"evaluation": evaluation.scoring_key(), "extractor": extractor.describe(), "seed": seed}

    def build(tmp: Path) -> dict:
        with np.load(train_feats.file("features.npz"), allow_pickle=False) as z:
            train_set = ImageSet(load_table(data_art).split("train").images, z["features"])
        with np.load(heldout.file("heldout.npz"), allow_pickle=False) as z:
            held = ImageSet(z["images"], z["features"])
        images = load_generated(gen)["images"]
        options = DiversityOptions(n_boot=evaluation.bootstrap, seed=seed)
        options = dataclasses.replace(options, scales=fitting_scales(min(images.shape[-2:]), options))
        records, items = diversity_records(ImageSet(images, gen_features), train_set, held, extractor=extractor.name,
                                           options=options)
        records[0]["msssim_scales"] = options.scales  # fewer for images too small for the window at 3 scales
        (tmp / "metrics.json").write_text(json.dumps(records, indent=1))
        np.savez(tmp / "items.npz", **items)
        return {"n_metrics": len(records)}

    return ctx.store.get_or_build("diversity", STAGE_VERSION, config, [gen, train_feats, heldout], build)


def fitting_scales(size: int, options) -> int:
    """The most MS-SSIM scales (up to options.scales) whose smallest image still holds the window."""
    scales = options.scales
    while scales > 1 and size // 2 ** (scales - 1) < options.window:
        scales -= 1
    return scales


def collect_diversity(rt, node, art: Artifact, cell) -> None:
    records, items = load_diversity(art)
    cell.metrics += records
    cell.items.update(items)


def load_diversity(art: Artifact) -> tuple[list[dict], dict[str, np.ndarray]]:
    with np.load(art.file("items.npz"), allow_pickle=False) as z:
        items = {k: z[k] for k in z.files}
    return json.loads(art.file("metrics.json").read_text()), items
