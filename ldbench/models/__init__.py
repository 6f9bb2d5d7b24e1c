"""Base models: the embedded tiny latent diffusion model, or any diffusers Stable Diffusion.

Both are loaded the same way, from a diffusers StableDiffusionPipeline directory (or a hub id when the
hub can be reached), into one Components value that the methods and editors share.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ldbench.errors import UserError
from ldbench.models.components import Components

__all__ = ["Components", "load_components"]


def load_components(path_or_id: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Components:
    """vae, text_encoder, tokenizer, unet, scheduler of a Stable Diffusion pipeline, frozen, in eval mode."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # ldbench shows its own progress; loading takes a moment and its bars would only be noise.
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    path = Path(path_or_id)
    looks_local = path.exists() or str(path_or_id).startswith((".", "/", "~"))
    if looks_local and not (path / "model_index.json").exists():
        raise UserError(
            f"{path}: not a diffusers Stable Diffusion directory (no model_index.json); pass a directory "
            "saved with save_pretrained, e.g. a local copy of CompVis/stable-diffusion-v1-4"
        )
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            str(path_or_id), safety_checker=None, requires_safety_checker=False, dtype=dtype,
            use_safetensors=True,
        )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"could not load base model {str(path_or_id)!r}: {first}. Give a local diffusers directory "
            "(--base-model PATH) with safetensors weights; hub ids need network access"
        ) from None
    parts = Components(
        vae=pipe.vae.to(device),
        text_encoder=pipe.text_encoder.to(device),
        tokenizer=pipe.tokenizer,
        unet=pipe.unet.to(device),
        scheduler=pipe.scheduler,
    )
    for module in parts.networks().values():
        module.eval().requires_grad_(False)
    return parts
