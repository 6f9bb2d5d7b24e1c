"""Editors: how a (possibly fine-tuned) model turns a split into generated images. One registry.

Each editor declares its own options (`options_class`, a SamplingOptions with its own fields added);
`editor_options` builds and checks them. An editor has two halves. `plan` decides, from a split's attribute table alone, what to generate: one
output per entry, with its source row (or none), its intended attributes, and where its true
counterfactual lives when the dataset has one. `edit` turns one batch of sources and targets into
latents. `run_edits` batches any editor over arbitrary sources/targets (so the stages can also run
null edits and round trips), and `generate` runs it over a plan.

Editors: text2img, sdedit (Meng et al. 2022), inversion-edit (DDIM inversion, Song et al. 2021, as in
Pix2Pix-Zero, Parmar et al. 2023) and instruct (InstructPix2Pix, Brooks et al. 2023).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.errors import UserError
from ldbench.models import Components
from ldbench.models.samplers import SAMPLERS
from ldbench.models.sampling import decode_latents, encode_images
from ldbench.progress import progress_bar
from ldbench.registry import Registry

if TYPE_CHECKING:
    from ldbench.config import Component

TRUTH_TABLES = ("counterfactuals", "split", "")


@dataclass(frozen=True)
class SamplingOptions:
    """What every editor samples with; all part of the generate stage's cache key. An editor's own
    options extend it (sdedit's strength, instruct's training and image guidance).

    sampler              a registered sampler (ldbench.models.samplers.SAMPLERS: ddim, ddpm).
    steps                steps of the full reverse chain.
    guidance_scale       text classifier-free guidance (1 = none).
    batch_size           images per batch.
    """

    sampler: str = "ddim"
    steps: int = 25
    guidance_scale: float = 3.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserError(f"editor option sampler {self.sampler!r} is unknown; valid: {', '.join(SAMPLERS.names())}")
        check_numbers(self, ints=(("steps", 1), ("batch_size", 1)), non_negative=("guidance_scale",))


def check_numbers(options, ints: tuple[tuple[str, int], ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """Integer options >= their bound, and finite non-negative numbers: a UserError naming the option."""
    for name, low in ints:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"editor option {name} must be an integer >= {low}, got {value!r}")
    for name in non_negative:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise UserError(f"editor option {name} must be a non-negative number, got {value!r}")


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


@dataclass(frozen=True)
class EditBatch:
    """One batch for Editor.edit: the sources' scaled latent means (None for text2img), their attribute
    rows, the intended attributes of each output, the sampling drift, the editor's options and the run's
    generator (shared by its batches, so a run's draws depend only on its seed)."""

    source_latents: torch.Tensor | None
    source_rows: list[dict]
    target_rows: list[dict]
    drift: Drift
    options: SamplingOptions
    generator: torch.Generator


@runtime_checkable
class Editor(Protocol):
    name: str
    description: str  # one line, shown by the CLI
    needs_source: bool
    options_class: type[SamplingOptions]  # its options (SamplingOptions and its own fields)

    def sampling_steps(self, opts: SamplingOptions) -> float:
        """UNet-pass-weighted sampling steps per image, relative to one guided step (the cost model)."""
        ...

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        """What to generate from `table` (one split)."""
        ...

    def edit(self, parts: Components, dataset: Dataset, batch: EditBatch) -> tuple[torch.Tensor, list[str]]:
        """One batch: z_0 latents of the edited images and the prompts used."""
        ...

    # Optional, for editors that need their own trained model (instruct):
    # train(parts, dataset, train_table, drift, options, seed, quiet) -> (tensors, loss per step); in place
    # apply(parts, tensors) -> None: installs the trained tensors into freshly loaded parts


EDITORS: Registry[Editor] = Registry("editor")


def all_rows(table: ImageTable) -> list[dict]:
    return [table.row(i) for i in range(len(table))]


def _batched(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass(frozen=True)
class EditRequest:
    """What run_edits edits: `images` (N, H, W) in [0, 1] (None for text2img), their attribute rows and
    the intended attributes of each output. `image_size`: without sources, the side of the images to
    sample (the dataset's, so that generated and real sets have one size); None = the UNet's native size."""

    images: np.ndarray | None
    source_rows: list[dict]
    target_rows: list[dict]
    image_size: int | None = None


@dataclass(frozen=True)
class EditSettings:
    """How: the sampling drift, the editor's options and the seed of the run's one generator."""

    drift: Drift
    options: SamplingOptions
    seed: int


def _check_request(editor: Editor, request: EditRequest) -> None:
    n = len(request.target_rows)
    if n == 0:
        raise UserError(f"editor {editor.name}: nothing to generate (no targets)")
    images = request.images
    if len(request.source_rows) != n or (images is not None and len(images) != n):
        raise ValueError(f"run_edits: {len(request.source_rows)} source rows and "
                         f"{'no' if images is None else len(images)} images for {n} targets")
    if editor.needs_source and images is None:
        raise ValueError(f"editor {editor.name} needs source images")


def _sized(parts: Components, image_size: int) -> Components:
    """A view of parts whose samples have side `image_size` (a shallow copy: the modules are shared, the
    caller's parts stay as they are)."""
    factor = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    if image_size % factor:
        raise UserError(f"image size {image_size} is not a multiple of the autoencoder's factor {factor}")
    return dataclasses.replace(parts, latent_size=image_size // factor)


def run_edits(editor: Editor, parts: Components, dataset: Dataset, request: EditRequest, settings: EditSettings,
              quiet: bool = False, desc: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Batch an editor over arbitrary sources and targets with one seeded generator.

    The request's images are encoded to scaled latent means. Used for a plan's outputs, and by the
    stages for null edits (targets = sources) and round trips (edit, then edit back).
    Returns (images (N, H, W) float32 in [0, 1], latents z_0 (N, C, h, w), prompts).
    """
    _check_request(editor, request)
    images, opts = request.images, settings.options
    source = None if images is None else encode_images(parts, torch.from_numpy(np.ascontiguousarray(images)))
    if images is None and request.image_size is not None:
        parts = _sized(parts, request.image_size)
    gen = torch.Generator(device=parts.unet.device).manual_seed(settings.seed)
    latents, prompts = [], []
    for s in progress_bar(_batched(len(request.target_rows), opts.batch_size), desc or editor.name, quiet=quiet):
        batch = EditBatch(None if source is None else source[s], request.source_rows[s], request.target_rows[s],
                          settings.drift, opts, gen)
        z, p = editor.edit(parts, dataset, batch)
        latents.append(z)
        prompts.extend(p)
    z = torch.cat(latents)
    return decode_latents(parts, z).numpy(), z.float().cpu().numpy(), prompts


def generate(editor: Editor, parts: Components, dataset: Dataset, table: ImageTable, plan: EditPlan,
             settings: EditSettings, quiet: bool = False) -> Generated:
    """run_edits over a plan: sources are rows of `table` (an empty dict where there is none)."""
    index = np.asarray(plan.source_index, dtype=np.int64)
    source_rows = [table.row(int(i)) if i >= 0 else {} for i in index]
    images = table.images[index] if editor.needs_source else None
    request = EditRequest(images, source_rows, list(plan.target_rows), image_size=table.images.shape[-1])
    out, z, prompts = run_edits(editor, parts, dataset, request, settings, quiet)
    return Generated(out, z, tuple(prompts), index, plan)


def editor_options(spec: Component) -> SamplingOptions:
    """A suite's `{name, options}` for an editor as that editor's options, checked (UserError otherwise)."""
    return EDITORS.options(spec.name, spec.options)


def _register_builtin() -> None:
    from ldbench.generate import instruct, inversion, sdedit, text2img  # noqa: F401


_register_builtin()
