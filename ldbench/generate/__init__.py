"""Editors: how a (possibly fine-tuned) model turns a split into generated images. One registry.

An editor has two halves. `plan` decides, from a split's attribute table alone, what to generate: one
output per entry, with its source row (or none), its intended attributes, and where its true
counterfactual lives when the dataset has one. `edit` turns one batch of sources and targets into
latents. `run_edits` batches any editor over arbitrary sources/targets (so the stages can also run
null edits and round trips), and `generate` runs it over a plan.

Editors: text2img, sdedit (Meng et al. 2022), inversion-edit (DDIM inversion, Song et al. 2021, as in
Pix2Pix-Zero, Parmar et al. 2023) and instruct (InstructPix2Pix, Brooks et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.errors import UserError
from ldbench.generate.sampling import decode_latents, encode_images
from ldbench.models import SAMPLERS
from ldbench.progress import progress_bar
from ldbench.registry import Registry

AGE_FORMATS = ("binned", "words", "number")
TRUTH_TABLES = ("counterfactuals", "split", "")


@dataclass(frozen=True)
class EditorOptions:
    """Sampling (and, for instruct, training) settings; all part of the generate stage's cache key.

    Shared: sampler, steps, guidance_scale (text classifier-free guidance), batch_size.
    strength             sdedit / inversion-edit: fraction of the chain re-run from the source
                         (1.0 = from pure noise / a full inversion to z_T).
    image_guidance_scale instruct: guidance towards the source image (InstructPix2Pix's s_I).
    instruct_steps       instruct: training steps of the image-conditioned UNet.
    instruct_lr          instruct: its AdamW learning rate.
    age_format           instruct: how the target age is written in the prompt, the three formats the
                         Latent Drifting paper compares: "number" ("72 year old"), "binned" (5-year
                         bins, "70-74 year old") or "words" ("seventy-two year old").
    """

    sampler: str = "ddim"
    steps: int = 25
    guidance_scale: float = 3.0
    strength: float = 0.6
    batch_size: int = 64
    image_guidance_scale: float = 1.5
    instruct_steps: int = 400
    instruct_lr: float = 1e-4
    age_format: str = "number"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"editor option sampler {self.sampler!r} is unknown; valid: {', '.join(SAMPLERS)}")
        if self.age_format not in AGE_FORMATS:
            raise UserError(f"editor option age_format {self.age_format!r} is unknown; valid: {', '.join(AGE_FORMATS)}")
        for name, low in (("steps", 1), ("batch_size", 1), ("instruct_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"editor option {name} must be an integer >= {low}, got {value!r}")
        for name in ("guidance_scale", "strength", "image_guidance_scale", "instruct_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise UserError(f"editor option {name} must be a non-negative number, got {value!r}")
        if self.strength > 1:
            raise UserError(f"editor option strength must be in [0, 1], got {self.strength!r}")
        if self.instruct_lr <= 0:
            raise UserError(f"editor option instruct_lr must be > 0, got {self.instruct_lr!r}")


@dataclass(frozen=True)
class EditPlan:
    """What an editor produces from one split: one output per entry.

    source_index  int64 row of the source image in the split table; -1 = no source (text2img).
    target_rows   the intended attributes of each output.
    truth_table   where the true counterfactual lives: "counterfactuals" (the dataset's counterfactual
                  table, same split, row-aligned with the split table), "split" (the split table itself,
                  e.g. a real follow-up) or "" (none).
    truth_index   int64 row in that table per output; -1 = none.
    changes       the attributes the edit sets (("diagnosis",), ("age",), or () for text2img).
    """

    source_index: np.ndarray
    target_rows: tuple[dict, ...]
    truth_table: str
    truth_index: np.ndarray
    changes: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.target_rows)
        if len(self.source_index) != n or len(self.truth_index) != n:
            raise ValueError(f"plan: {len(self.source_index)} sources, {n} targets, {len(self.truth_index)} truths")
        if self.truth_table not in TRUTH_TABLES:
            raise ValueError(f"plan: unknown truth table {self.truth_table!r}")

    def __len__(self) -> int:
        return len(self.target_rows)


@dataclass(frozen=True)
class Generated:
    """Generated images (N, H, W) in [0, 1], their final latents z_0, the prompts, the row of the
    source image in the split (-1 for text-to-image) and the plan they were made from."""

    images: np.ndarray
    latents: np.ndarray
    prompts: tuple[str, ...]
    source_index: np.ndarray
    plan: EditPlan


@runtime_checkable
class Editor(Protocol):
    name: str
    description: str  # one line, shown by the CLI
    needs_source: bool

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        """What to generate from `table` (one split)."""
        ...

    def edit(self, parts: dict, dataset: Dataset, source_latents: torch.Tensor | None, source_rows: list[dict],
             target_rows: list[dict], drift: Drift, opts: EditorOptions,
             generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        """One batch: z_0 latents of the edited images and the prompts used."""
        ...

    # Optional, for editors that need their own trained model (instruct):
    # train(parts, dataset, train_table, drift, opts, seed, quiet) -> (tensors, loss per step); trains in place
    # apply(parts, tensors) -> None: installs the trained tensors into freshly loaded parts


EDITORS: Registry[Editor] = Registry("editor")


def all_rows(table: ImageTable) -> list[dict]:
    return [table.row(i) for i in range(len(table))]


def _batched(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def run_edits(editor: Editor, parts: dict, dataset: Dataset, images: np.ndarray | None, source_rows: list[dict],
              target_rows: list[dict], drift: Drift, opts: EditorOptions, seed: int, quiet: bool = False,
              desc: str | None = None, image_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Batch an editor over arbitrary sources and targets with one seeded generator.

    `images` (N, H, W) in [0, 1] are encoded to scaled latent means (None for text2img). Used for a
    plan's outputs, and by the stages for null edits (targets = sources) and round trips (edit, then
    edit back). `image_size`: without sources, the side of the images to sample (the dataset's, so that
    generated and real sets have one size); None = the UNet's native size.
    Returns (images (N, H, W) float32 in [0, 1], latents z_0 (N, C, h, w), prompts).
    """
    n = len(target_rows)
    if n == 0:
        raise UserError(f"editor {editor.name}: nothing to generate (no targets)")
    if len(source_rows) != n or (images is not None and len(images) != n):
        raise ValueError(f"run_edits: {len(source_rows)} source rows and "
                         f"{'no' if images is None else len(images)} images for {n} targets")
    if editor.needs_source and images is None:
        raise ValueError(f"editor {editor.name} needs source images")
    source = None if images is None else encode_images(parts, torch.from_numpy(np.ascontiguousarray(images)))
    if images is None and image_size is not None:
        factor = 2 ** (len(parts["vae"].config.block_out_channels) - 1)
        if image_size % factor:
            raise UserError(f"image size {image_size} is not a multiple of the autoencoder's factor {factor}")
        parts = {**parts, "latent_size": image_size // factor}  # a view: the caller's parts stay as they are
    gen = torch.Generator(device=parts["unet"].device).manual_seed(seed)
    latents, prompts = [], []
    for s in progress_bar(_batched(n, opts.batch_size), desc or editor.name, quiet=quiet):
        z, p = editor.edit(parts, dataset, None if source is None else source[s], source_rows[s], target_rows[s],
                           drift, opts, gen)
        latents.append(z)
        prompts.extend(p)
    z = torch.cat(latents)
    return decode_latents(parts, z).numpy(), z.float().cpu().numpy(), prompts


def generate(editor: Editor, parts: dict, dataset: Dataset, table: ImageTable, plan: EditPlan, drift: Drift,
             opts: EditorOptions, seed: int, quiet: bool = False) -> Generated:
    """run_edits over a plan: sources are rows of `table` (an empty dict where there is none)."""
    index = np.asarray(plan.source_index, dtype=np.int64)
    source_rows = [table.row(int(i)) if i >= 0 else {} for i in index]
    images = table.images[index] if editor.needs_source else None
    out, z, prompts = run_edits(editor, parts, dataset, images, source_rows, list(plan.target_rows), drift, opts,
                                seed, quiet, image_size=table.images.shape[-1])
    return Generated(out, z, tuple(prompts), index, plan)


def _register_builtin() -> None:
    from ldbench.generate import instruct, inversion, sdedit, text2img  # noqa: F401


_register_builtin()
