"""The autoencoder's reconstruction of the test split: the ceiling of every generated image's fidelity.

A latent diffusion model only ever makes images through its autoencoder's decoder, so no generated or
edited image can be closer to the data than the decoder's reconstruction of the data's own latents. Every
run scores it (PSNR and SSIM per test image, mean with a bootstrap CI over images), as records with method
`autoencoder` and editor `reconstruction`: a low number here says that the base model, not fine-tuning
or Latent Drifting, limits what the other metrics can show.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ldbench.drift import NO_DRIFT
from ldbench.store import Artifact

STAGE_VERSION = "1"
AUTOENCODER_METHOD, AUTOENCODER_EDITOR = "autoencoder", "reconstruction"
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
                "dataset": rt.dataset(spec).name, "method": AUTOENCODER_METHOD, "drift": NO_DRIFT.to_dict(),
                "seed": seed, "editor": AUTOENCODER_EDITOR, "metric": f"autoencoder_{name}", "value": value,
                "ci95": list(ci) if ci else None, "n": len(z[name]), "extractor": "pixels",
                "details": {"bootstrap": {"B": n_boot, "seed": seed, "resampled": "images"}},
                "provenance": provenance})
    return records
