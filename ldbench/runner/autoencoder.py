"""The autoencoder's reconstruction of real images: the ceiling of every generated image's fidelity and realism.

A latent diffusion model only ever makes images through its autoencoder's decoder, so no generated or
edited image can be closer to the data than the decoder's reconstruction of the data's own latents, and no
generated set can be expected to look more real than real images passed through the autoencoder. Every run
scores both, as records with method `autoencoder` and editor `reconstruction`:

- fidelity (stage `autoencoder`): PSNR and SSIM of the test split against its reconstruction, per image,
  mean with a bootstrap CI over images;
- realism (stage `realism-ceiling`): the real held-out floor's own images (ldbench.runner.floor) encoded
  (posterior mean) and decoded, scored exactly like a generated set (FID/KID or FD/KD per extractor, same
  reference statistics, subsets, bootstrap and seed). Tables show it as the second row, under the floor.

A low ceiling says that the base model, not fine-tuning or Latent Drifting, limits what the other metrics
can show: a generated set's FID reads between the floor (real images) and this ceiling (real images
through the decoder) before it says anything about the fine-tune.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from ldbench.drift import NO_DRIFT
from ldbench.metrics.scores import CEILING_EDITOR, CEILING_METHOD
from ldbench.store import Artifact

STAGE_VERSION = "1"
CEILING_STAGE_VERSION = "1"
SPLIT = "test"  # the latents stage's split


def build_reconstruction(rt, node, up: dict) -> Artifact:
    """Decode the test split's latents (the latents stage: encoder means) and compare with the images."""
    from ldbench.device import inference_precision
    from ldbench.metrics.counterfactual_scores import image_similarity
    from ldbench.models.sampling import decode_latents
    from ldbench.runner.stages import load_base, load_table

    data_art, base, latents = up["dataset"], up["base"], up["latents"]
    ctx = rt.ctx

    def build(tmp: Path) -> dict:
        parts = load_base(ctx, base)
        images = load_table(data_art).split(SPLIT).images
        with np.load(latents.file("latents.npz"), allow_pickle=False) as z:
            codes = torch.from_numpy(z["latents"]).to(parts.vae.device, parts.vae.dtype)
        with inference_precision(ctx.device, ctx.precision):
            recon = decode_latents(parts, codes).float().numpy()
        scores = image_similarity(recon, images)
        np.savez(tmp / "reconstruction.npz", **{k: np.asarray(v, dtype=np.float64) for k, v in scores.items()})
        return {"n": len(images), "split": SPLIT}

    return ctx.store.get_or_build("autoencoder", STAGE_VERSION, {"split": SPLIT}, [data_art, base, latents], build)


def reconstruction_records(rt, node, art: Artifact, base_provenance: dict) -> list[dict]:
    """PSNR and SSIM of the reconstruction, each the mean over test images with a bootstrap CI."""
    from ldbench.metrics.significance import mean_with_ci
    from ldbench.runner.provenance import base_model_provenance

    seed, n_boot = rt.suite.seeds[0], rt.evaluation.bootstrap
    spec, base = node["dataset"], rt.results[node.up("base")]
    provenance = {**base_provenance, "dataset": dataclasses.asdict(spec), "split": SPLIT,
                  "seeds": {"bootstrap": seed}, "artifacts": {"autoencoder": art.key, "base_model": base.key},
                  **base_model_provenance(base.meta)}
    records = []
    with np.load(art.file("reconstruction.npz"), allow_pickle=False) as z:
        for name in ("psnr", "ssim"):
            value, ci = mean_with_ci(z[name], n_boot, seed)
            records.append({
                "dataset": rt.dataset(spec).name, "method": CEILING_METHOD, "drift": NO_DRIFT.to_dict(),
                "seed": seed, "editor": CEILING_EDITOR, "metric": f"autoencoder_{name}", "value": value,
                "ci95": list(ci) if ci else None, "n": len(z[name]), "extractor": "pixels",
                "details": {"bootstrap": {"B": n_boot, "seed": seed, "resampled": "images"}},
                "provenance": provenance})
    return records


def build_realism_ceiling(rt, node, up: dict) -> Artifact:
    """The held-out floor's images through the autoencoder (encoder mean, decoder), scored like a generated
    set against the reference statistics (`up["reference"]` = (stats, stats_source)), cached."""
    from ldbench.device import inference_precision
    from ldbench.metrics.scores import distribution_metrics
    from ldbench.models.sampling import decode_latents, encode_images
    from ldbench.runner.stages import load_base

    heldout, base, (stats, stats_source) = up["heldout"], up["base"], up["reference"]
    extractor, evaluation, ctx, seed = rt.extractors[node["extractor"]], rt.evaluation, rt.ctx, node["seed"]
    config = {"evaluation": evaluation.scoring_key(), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed}

    def build(tmp: Path) -> dict:
        parts = load_base(ctx, base)
        with np.load(heldout.file("heldout.npz"), allow_pickle=False) as z:
            images = z["images"].astype(np.float32)
        with torch.no_grad(), inference_precision(ctx.device, ctx.precision):
            recon = decode_latents(parts, encode_images(parts, torch.from_numpy(images))).float().numpy()
        feats = extractor.features(recon, batch_size=evaluation.batch_size)
        metrics = distribution_metrics(feats, stats, extractor, evaluation, seed)
        source = json.loads(heldout.file("metrics.json").read_text())[0].get("images", "the held-out floor's images")
        for m in metrics:
            m["images"] = f"{source}, encoded (posterior mean) and decoded by the base model's autoencoder"
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return {"n_metrics": len(metrics), "n_images": int(len(images))}

    return ctx.store.get_or_build("realism-ceiling", CEILING_STAGE_VERSION, config, [heldout, base], build)


def ceiling_records(rt, node, art: Artifact, base_provenance: dict) -> list[dict]:
    """The realism ceiling's records of one dataset × extractor × seed (Stage.records)."""
    from ldbench.runner.floor import realism_provenance, realism_records
    from ldbench.runner.provenance import base_model_provenance

    base = rt.results[node.up("base")]
    provenance = {**realism_provenance(rt, node, base_provenance),
                  "artifacts": {"realism_ceiling": art.key, "heldout_metrics": rt.results[node.up("heldout")].key,
                                "base_model": base.key},
                  **base_model_provenance(base.meta)}
    return realism_records(rt.dataset(node["dataset"]).name, node["seed"], art, provenance, CEILING_METHOD,
                           CEILING_EDITOR)
