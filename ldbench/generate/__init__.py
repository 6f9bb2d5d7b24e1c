"""Editors: how a (possibly fine-tuned) model turns the test split into generated images. One registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.generate.sampling import decode_latents, edit_latents, encode_images, text_to_latents
from ldbench.methods import prompt_for
from ldbench.models import make_sampler
from ldbench.progress import progress_bar
from ldbench.registry import Registry


@dataclass(frozen=True)
class EditorOptions:
    """Sampling settings shared by every editor (all part of the generate stage's cache key)."""

    sampler: str = "ddim"
    steps: int = 25
    guidance_scale: float = 3.0
    strength: float = 0.6  # sdedit only: fraction of the chain re-run from the noised source
    batch_size: int = 64


@dataclass(frozen=True)
class Generated:
    """Generated images (N, H, W) in [0, 1], their final latents z_0, the prompts, and for edits the
    row of the source image in the test split (-1 for text-to-image)."""

    images: np.ndarray
    latents: np.ndarray
    prompts: tuple[str, ...]
    source_index: np.ndarray


Editor = Callable[[dict, Dataset, ImageTable, Drift, EditorOptions, int, bool], Generated]
EDITORS: Registry[Editor] = Registry("editor")


def _batched(n: int, size: int):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@EDITORS.register("text2img")
def text2img(parts, dataset, test: ImageTable, drift, opts: EditorOptions, seed: int, quiet: bool) -> Generated:
    """Text-to-image: one sample per test image, prompted with that image's own caption, so the
    generated set follows the test split's attribute distribution."""
    prompts = [prompt_for(parts, dataset.caption(test.row(i))) for i in range(len(test))]
    scheduler = make_sampler(opts.sampler, parts["scheduler"])
    gen = torch.Generator(device=parts["unet"].device).manual_seed(seed)
    latents = [
        text_to_latents(parts, scheduler, prompts[s], drift, opts.steps, opts.guidance_scale, gen)
        for s in progress_bar(_batched(len(prompts), opts.batch_size), "text2img", quiet=quiet)
    ]
    z = torch.cat(latents)
    return Generated(decode_latents(parts, z).numpy(), z.cpu().numpy(), tuple(prompts), np.full(len(prompts), -1))


@EDITORS.register("sdedit")
def sdedit(parts, dataset, test: ImageTable, drift, opts: EditorOptions, seed: int, quiet: bool) -> Generated:
    """Counterfactual edit of every test image (SDEdit): the source is noised to `strength` and
    denoised with the caption of its counterfactual (e.g. the diagnosis flipped)."""
    prompts = [prompt_for(parts, dataset.caption(dataset.counterfactual_row(test.row(i)))) for i in range(len(test))]
    scheduler = make_sampler(opts.sampler, parts["scheduler"])
    source = encode_images(parts, torch.from_numpy(test.images))
    gen = torch.Generator(device=parts["unet"].device).manual_seed(seed)
    latents = [
        edit_latents(parts, scheduler, source[s], prompts[s], drift, opts.steps, opts.strength,
                     opts.guidance_scale, gen)
        for s in progress_bar(_batched(len(prompts), opts.batch_size), "sdedit", quiet=quiet)
    ]
    z = torch.cat(latents)
    return Generated(decode_latents(parts, z).numpy(), z.cpu().numpy(), tuple(prompts), np.arange(len(prompts)))
