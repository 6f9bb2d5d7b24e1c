"""instruct: InstructPix2Pix (Brooks et al., CVPR 2023) trained on longitudinal pairs, for aging.

The Latent Drifting paper (Yeganeh et al., CVPR 2025) edits a subject's scan to an older age with an
image-conditioned diffusion model and compares three ways of writing the target age in the prompt;
this editor reproduces that setup on the benchmark's own (fine-tuned) model.

Model: a copy of parts.unet with conv_in widened from C to 2C input channels, the new channels
zero-initialised (so before training it computes exactly what the original UNet computes), reading
concat(noisy target latent, source latent mean). It is kept in parts.editor_unet: parts.unet
stays untouched, so every other editor still works on the same parts. Install it after the method's
own apply (it copies whatever parts.unet is then, LoRA adapters included).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.data.pairs import longitudinal_pairs
from ldbench.drift import Drift, initial_latents, training_inputs
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditBatch, EditPlan, SamplingOptions, check_numbers
from ldbench.models import Components
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import denoise, diffusers_randn, encode_prompts
from ldbench.models.text import prompt_for
from ldbench.models.training import Batch, TrainConfig, TrainData, train_denoiser

AGE_FORMATS = ("binned", "words", "number")
BATCH_SIZE = 16
# InstructPix2Pix's conditioning dropout (5% each: text only, image only, both), so one model learns
# the three scores its two-way classifier-free guidance combines.
DROP = 0.05

_AGE = re.compile(r"\b(\d+) year old\b")
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0..120: 72 -> "seventy-two", 105 -> "one hundred five"."""
    if not 0 <= n <= 120:
        raise UserError(f"editor instruct: age {n} cannot be written in words (supported: 0..120)")
    if n >= 100:
        return "one hundred" + (f" {number_words(n - 100)}" if n > 100 else "")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def age_prompt(dataset: Dataset, row: dict, age_format: str) -> str:
    """dataset.caption(row) with its "<n> year old" part written in `age_format`: "number" (as is,
    "72 year old"), "binned" (5-year bins, "70-74 year old") or "words" ("seventy-two year old")."""
    if age_format not in AGE_FORMATS:
        raise UserError(f"editor option age_format {age_format!r} is unknown; valid: {', '.join(AGE_FORMATS)}")
    caption = dataset.caption(row)
    match = _AGE.search(caption)
    if match is None:
        raise UserError(f"editor instruct: dataset {dataset.name} has no age in its captions (e.g. {caption!r}); "
                        "instruct ages a scan by rewriting the age in its prompt: drop it from the suite's editors")
    age = int(match.group(1))
    if age_format == "binned":
        low = age // 5 * 5
        text = f"{low}-{low + 4} year old"
    elif age_format == "words":
        text = f"{number_words(age)} year old"
    else:
        text = match.group(0)
    return caption[: match.start()] + text + caption[match.end() :]


@dataclass(frozen=True)
class InstructOptions(SamplingOptions):
    """SamplingOptions and:

    image_guidance_scale guidance towards the source image (InstructPix2Pix's s_I).
    instruct_steps       training steps of the image-conditioned UNet.
    instruct_lr          its AdamW learning rate.
    age_format           how the target age is written in the prompt, the three formats the Latent
                         Drifting paper compares: "number" ("72 year old"), "binned" (5-year bins,
                         "70-74 year old") or "words" ("seventy-two year old").
    """

    image_guidance_scale: float = 1.5
    instruct_steps: int = 400
    instruct_lr: float = 1e-4
    age_format: str = "number"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.age_format not in AGE_FORMATS:
            raise UserError(f"editor option age_format {self.age_format!r} is unknown; valid: {', '.join(AGE_FORMATS)}")
        check_numbers(self, ints=(("instruct_steps", 0),), non_negative=("image_guidance_scale", "instruct_lr"))
        if self.instruct_lr <= 0:
            raise UserError(f"editor option instruct_lr must be > 0, got {self.instruct_lr!r}")


def widen_unet(unet: torch.nn.Module) -> torch.nn.Module:
    """A copy of `unet` whose conv_in also reads C extra (image) channels, with zero weights, as
    InstructPix2Pix initialises from Stable Diffusion: at step 0 the output equals the original's."""
    wide = copy.deepcopy(unet)
    old = unet.conv_in
    c = old.in_channels
    conv = torch.nn.Conv2d(2 * c, old.out_channels, old.kernel_size, old.stride, old.padding,
                           device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :c].copy_(old.weight)
        conv.bias.copy_(old.bias)
    wide.conv_in = conv
    wide.register_to_config(in_channels=2 * c)
    return wide


def _pairs(dataset: Dataset, table: ImageTable) -> list[tuple[int, int]]:
    pairs = longitudinal_pairs(table)
    if not pairs:
        raise UserError(
            f"editor instruct needs longitudinal data (subjects with 2+ visits); dataset {dataset.name} has none")
    return pairs


class PairBatches:
    """The shared training loop's batches for instruct: (baseline -> follow-up) pairs of latents. The target
    is the follow-up; the baseline's latent mean joins as C extra input channels; InstructPix2Pix's
    conditioning dropout drops the text, the image or both."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor],
                 prompts: list[str]) -> None:
        self.mean, self.std = mean, std
        self.src, self.tgt = pairs
        self.vocab = sorted(set(prompts) | {""})
        self.prompt_index = torch.tensor([self.vocab.index(p) for p in prompts])
        self.empty = self.vocab.index("")

    def draw(self, gen: torch.Generator, batch_size: int, scheduler, drift: Drift) -> Batch:
        mean, std, tgt = self.mean, self.std, self.tgt
        k = torch.randint(len(self.src), (batch_size,), generator=gen)
        z0 = mean[tgt[k]] + std[tgt[k]] * torch.randn(mean[tgt[k]].shape, generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen)
        x_t, target = training_inputs(drift, scheduler, z0, noise, t)
        u = torch.rand(batch_size, generator=gen)
        drop_text = u < 2 * DROP  # [0, 5%): text only, [5%, 10%): both
        drop_image = (u >= DROP) & (u < 3 * DROP)  # [5%, 10%): both, [10%, 15%): image only
        cap = self.prompt_index[k].masked_fill(drop_text, self.empty)
        image = mean[self.src[k]] * (~drop_image).float().view(-1, 1, 1, 1)
        return Batch(torch.cat([x_t, image], dim=1), t, cap, target)


@dataclass(frozen=True)
class ImageTextGuidance:
    """InstructPix2Pix's two-way classifier-free guidance, one UNet pass over [full; image only; none]:
    ε = ε(∅, ∅) + s_I (ε(img, ∅) − ε(∅, ∅)) + s_T (ε(img, text) − ε(img, ∅))."""

    unet: torch.nn.Module
    text: torch.Tensor  # [cond; uncond; uncond]
    images: torch.Tensor  # [image; image; 0]
    s_text: float
    s_image: float

    def __call__(self, scheduler, latents: torch.Tensor, t) -> torch.Tensor:
        model_in = scheduler.scale_model_input(torch.cat([latents] * 3), t)
        eps = self.unet(torch.cat([model_in, self.images], dim=1), t, encoder_hidden_states=self.text).sample
        full, image_only, none = eps.chunk(3)
        return none + self.s_image * (image_only - none) + self.s_text * (full - image_only)


class Instruct:
    """InstructPix2Pix for aging: trained on (baseline -> follow-up) pairs of the train split, each
    baseline paired with every later visit of its subject (follow-up -> later follow-up pairs are
    not used: every pair starts from a real baseline, as the plan does). The prompt is the follow-up's
    caption with its age written in `age_format`.

    Sampling starts from z_T under the drift's placement (initial_latents / after_step) and combines
    the three scores as InstructPix2Pix does:
        ε = ε(∅, ∅) + s_I (ε(img, ∅) − ε(∅, ∅)) + s_T (ε(img, text) − ε(img, ∅)).
    """

    name = "instruct"
    description = "InstructPix2Pix trained on longitudinal pairs: edit a baseline scan to the follow-up age"
    needs_source = True
    options_class = InstructOptions

    def sampling_steps(self, opts: InstructOptions) -> float:
        return 1.5 * opts.steps  # two-way guidance: three UNet passes per step instead of two

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        pairs = _pairs(dataset, table)
        source = np.array([a for a, _ in pairs], dtype=np.int64)
        follow = np.array([b for _, b in pairs], dtype=np.int64)
        targets = tuple(table.row(int(b)) for b in follow)
        age_prompt(dataset, targets[0], "number")  # a dataset without ages fails here, before any work
        return EditPlan(source, targets, "split", follow, ("age",))

    def train(self, parts: Components, dataset: Dataset, train_table: ImageTable, drift: Drift, opts: InstructOptions,
              seed: int, quiet: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
        """Train the whole widened UNet (AdamW, opts.instruct_lr, opts.instruct_steps steps, batch 16) through
        the methods' loop, Latent Drifting in the forward process; installs it in parts.
        Returns (its state dict, the loss per step). Deterministic for a seed on CPU."""
        pairs = _pairs(dataset, train_table)
        prompts = [prompt_for(parts, age_prompt(dataset, train_table.row(b), opts.age_format)) for _, b in pairs]
        used = np.unique(np.array(pairs).ravel())
        position = {int(r): k for k, r in enumerate(used)}
        src = torch.tensor([position[a] for a, _ in pairs])
        tgt = torch.tensor([position[b] for _, b in pairs])
        vae = parts.vae
        pixels = torch.from_numpy(train_table.images[used])[:, None].repeat(1, 3, 1, 1) * 2 - 1
        data = TrainData.from_pixels(vae, pixels.to(vae.device, vae.dtype), [""] * len(used))
        batches = PairBatches(data.latent_mean.float().cpu(), data.latent_std.float().cpu(), (src, tgt), prompts)
        unet = widen_unet(parts.unet)
        # fp32 and no checkpointing: instruct has no options for them (its numbers predate the shared loop)
        config = TrainConfig(steps=opts.instruct_steps, batch_size=BATCH_SIZE, lr=opts.instruct_lr, seed=seed,
                             gradient_checkpointing=False, desc="instruct", quiet=quiet)
        losses = train_denoiser(dataclasses.replace(parts, unet=unet), batches, list(unet.parameters()), drift, config)
        parts.editor_unet = unet  # eval mode and frozen again after the loop
        return {k: v.detach().clone() for k, v in unet.state_dict().items()}, losses

    def apply(self, parts: Components, tensors: dict[str, torch.Tensor]) -> None:
        """Widen parts.unet the same way and load the trained state into parts.editor_unet."""
        unet = widen_unet(parts.unet)
        unet.load_state_dict(tensors, strict=True)
        parts.editor_unet = unet.eval().requires_grad_(False)

    @torch.no_grad()
    def edit(self, parts: Components, dataset: Dataset, batch: EditBatch) -> tuple[torch.Tensor, list[str]]:
        unet = parts.editor_unet
        if unet is None:
            raise RuntimeError("editor instruct: parts have no trained image-conditioned UNet "
                               "(parts.editor_unet); call its train, or apply its saved tensors, first")
        opts: InstructOptions = batch.options
        prompts = [prompt_for(parts, age_prompt(dataset, row, opts.age_format)) for row in batch.target_rows]
        scheduler = make_sampler(opts.sampler, parts.scheduler)
        scheduler.set_timesteps(opts.steps, device=unet.device)
        image = batch.source_latents.to(unet.device, unet.dtype)
        noise = diffusers_randn(image.shape, generator=batch.generator, device=unet.device, dtype=unet.dtype)
        latents = initial_latents(batch.drift, noise, scheduler.init_noise_sigma)
        uncond, cond = encode_prompts(parts, prompts, 2.0).chunk(2)  # [unconditional; conditional]
        guidance = ImageTextGuidance(unet, torch.cat([cond, uncond, uncond]),
                                     torch.cat([image, image, torch.zeros_like(image)]),
                                     opts.guidance_scale, opts.image_guidance_scale)
        return denoise(scheduler, latents, scheduler.timesteps, guidance, batch.drift, batch.generator), prompts


EDITORS.add("instruct", Instruct())
