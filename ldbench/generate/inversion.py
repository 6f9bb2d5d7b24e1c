"""inversion-edit: DDIM inversion of the source, then denoising with the counterfactual caption."""

from __future__ import annotations

import torch

from ldbench.data.base import Dataset, ImageTable
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditBatch, EditPlan
from ldbench.generate.sdedit import StrengthOptions, counterfactual_plan
from ldbench.models import Components
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import TextGuidance, denoise, encode_prompts, invert_latents
from ldbench.models.text import prompt_for


class InversionEdit:
    """Pix2Pix-Zero-style editing (Parmar et al., SIGGRAPH 2023) without its cross-attention guidance
    and edit-direction embeddings: the source latent is inverted with deterministic DDIM (Song et al.
    2021) under its own caption, guidance 1, up to the noise level `strength` (1.0 = all the way to z_T;
    the same truncation as sdedit), then denoised with the target caption and classifier-free guidance.

    Unlike SDEdit's random forward noise, the inverted latent keeps the source's details, so an edit
    that changes nothing reconstructs the source. Latent Drifting: the denoising applies the drift's
    per-step shift as sdedit does; the inversion removes it step by step so the two are consistent
    (see `invert_latents`); the `init` placement adds nothing to an inverted latent.
    """

    name = "inversion-edit"
    description = "DDIM inversion under the source caption, then denoising with the counterfactual caption"
    needs_source = True
    options_class = StrengthOptions

    def sampling_steps(self, opts: StrengthOptions) -> float:
        # unguided inversion (about half a guided step each), then the guided edit
        return 1.5 * max(1, round(opts.steps * opts.strength))

    def plan(self, dataset: Dataset, table: ImageTable, has_counterfactuals: bool) -> EditPlan:
        return counterfactual_plan(dataset, table, has_counterfactuals)

    def edit(self, parts: Components, dataset: Dataset, batch: EditBatch) -> tuple[torch.Tensor, list[str]]:
        opts: StrengthOptions = batch.options
        if opts.sampler != "ddim":  # DDIM inversion inverts DDIM's deterministic step only
            raise UserError(f"editor inversion-edit: sampler {opts.sampler!r} cannot be inverted; use sampler: ddim")
        sources = [prompt_for(parts, dataset.caption(row)) for row in batch.source_rows]
        prompts = [prompt_for(parts, dataset.caption(row)) for row in batch.target_rows]
        inverted, timesteps = invert_latents(parts, batch.source_latents, sources, batch.drift, opts.chain)
        if len(timesteps) == 0:
            return inverted, prompts
        scheduler = make_sampler("ddim", parts.scheduler)
        scheduler.set_timesteps(opts.steps, device=inverted.device)
        guidance = TextGuidance(parts.unet, encode_prompts(parts, prompts, opts.guidance_scale), opts.guidance_scale)
        return denoise(scheduler, inverted, timesteps, guidance, batch.drift, batch.generator), prompts


EDITORS.add("inversion-edit", InversionEdit())
