"""The reverse process under a Drift, driving diffusers' schedulers without copying their step code.

The loop mirrors diffusers' StableDiffusionPipeline (same random draws in the same order, same
classifier-free guidance), so with δ = 0 it returns exactly what the pipeline returns; the only
additions are ldbench.drift's two hooks: the initial latents and the per-step mean shift (Eq. 4).
Every editor samples through `denoise`; what one step's noise prediction is (text guidance, or
InstructPix2Pix's two-way guidance) is its one hook, a `Guidance`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ldbench.drift import Drift, after_step, forward_noised, initial_latents
from ldbench.errors import UserError
from ldbench.models.components import Components
from ldbench.models.text import tokenize


@torch.no_grad()
def encode_prompts(parts: Components, prompts: list[str], guidance_scale: float) -> torch.Tensor:
    """Text embeddings, [unconditional; conditional] when guidance is on (the pipeline's order)."""
    device = parts.unet.device
    cond = parts.text_encoder(tokenize(parts.tokenizer, prompts).to(device))[0]
    if guidance_scale <= 1.0:
        return cond
    uncond = parts.text_encoder(tokenize(parts.tokenizer, [""] * len(prompts)).to(device))[0]
    return torch.cat([uncond, cond])


class Guidance(Protocol):
    def __call__(self, scheduler, latents: torch.Tensor, t) -> torch.Tensor:
        """The noise prediction ε for `latents` at timestep `t`, guidance applied."""
        ...


@dataclass(frozen=True)
class TextGuidance:
    """Classifier-free guidance on the text (Ho & Salimans 2022), as the pipeline: one UNet pass over
    [unconditional; conditional] when `scale` > 1, ε = ε(∅) + scale (ε(text) − ε(∅)); a plain pass
    otherwise. `embeddings`: encode_prompts(parts, prompts, scale)."""

    unet: torch.nn.Module
    embeddings: torch.Tensor
    scale: float

    def __call__(self, scheduler, latents: torch.Tensor, t) -> torch.Tensor:
        model_in = torch.cat([latents] * 2) if self.scale > 1.0 else latents
        model_in = scheduler.scale_model_input(model_in, t)
        eps = self.unet(model_in, t, encoder_hidden_states=self.embeddings).sample
        if self.scale > 1.0:
            uncond, cond = eps.chunk(2)
            eps = uncond + self.scale * (cond - uncond)
        return eps


@torch.no_grad()
def denoise(scheduler, latents: torch.Tensor, timesteps, guidance: Guidance, drift: Drift,
            generator: torch.Generator | None) -> torch.Tensor:
    """The reverse chain over `timesteps` (the scheduler's timesteps already set), with the drift's
    per-step shift."""
    extra = {"generator": generator} if "generator" in _step_params(scheduler) else {}
    for t in timesteps:
        eps = guidance(scheduler, latents, t)
        latents = scheduler.step(eps, t, latents, **extra).prev_sample
        latents = after_step(drift, latents)  # Eq. 4: x_{t-1} ~ N(μ_θ(x_t, t) + δ, Σ_θ)
    return latents


def _step_params(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)


def diffusers_randn(shape, **kwargs) -> torch.Tensor:
    """diffusers' noise draw (the same numbers as its pipelines), imported here rather than with this
    module: a run whose stages all come from the cache loads this module but needs no diffusers."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, **kwargs)


@torch.no_grad()
def text_to_latents(parts: Components, scheduler, prompts: list[str], drift: Drift, steps: int,
                    guidance_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Sample z_0 for each prompt, starting from z_T ~ N(δ, I) under the drift's sampling placement."""
    unet = parts.unet
    scheduler.set_timesteps(steps, device=unet.device)
    size = parts.latent_size or unet.config.sample_size  # run_edits sets the dataset's size
    shape = (len(prompts), unet.config.in_channels, size, size)
    noise = diffusers_randn(shape, generator=generator, device=unet.device, dtype=unet.dtype)
    latents = initial_latents(drift, noise, scheduler.init_noise_sigma)
    guidance = TextGuidance(unet, encode_prompts(parts, prompts, guidance_scale), guidance_scale)
    return denoise(scheduler, latents, scheduler.timesteps, guidance, drift, generator)


@dataclass(frozen=True)
class Chain:
    """An edit's reverse chain: `steps` of the full schedule, the last `strength` fraction of them run
    (1.0 = from pure noise), text guidance `guidance_scale`."""

    steps: int
    strength: float
    guidance_scale: float

    @property
    def n_run(self) -> int:
        """How many of the steps run (diffusers' img2img truncation)."""
        return min(int(self.steps * self.strength), self.steps)


@torch.no_grad()
def edit_latents(parts: Components, scheduler, source_latents: torch.Tensor, prompts: list[str], drift: Drift,
                 chain: Chain, generator: torch.Generator) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): noise the source to `chain.strength`, denoise with the target prompt.

    The same timestep truncation as diffusers' img2img pipeline; the forward noise is drifted like
    z_T (ε' = ε + δ) so an edit starts on the same shifted prior as a text-to-image sample.
    """
    steps, n_run = chain.steps, chain.n_run
    scheduler.set_timesteps(steps, device=source_latents.device)
    timesteps = scheduler.timesteps[steps - n_run:]
    if n_run == 0:
        return source_latents
    noise = diffusers_randn(source_latents.shape, generator=generator, device=source_latents.device,
                            dtype=source_latents.dtype)
    start = forward_noised(drift, scheduler, source_latents, noise, timesteps[:1].repeat(len(source_latents)))
    guidance = TextGuidance(parts.unet, encode_prompts(parts, prompts, chain.guidance_scale), chain.guidance_scale)
    return denoise(scheduler, start, timesteps, guidance, drift, generator)


@torch.no_grad()
def invert_latents(parts: Components, source_latents: torch.Tensor, prompts: list[str], drift: Drift,
                   chain: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic DDIM inversion (Song et al. 2021; as used by Pix2Pix-Zero, Parmar et al. 2023).

    Runs diffusers' DDIMInverseScheduler from z_0 up to the noise level where an SDEdit of the same
    chain would start, conditioned on `prompts` without guidance (the source caption,
    as Pix2Pix-Zero inverts). Returns (x_t, the DDIM timesteps that denoise it back to z_0).

    Under the `every-step` placement each reverse step is x_{t-1} = DDIM(x_t) + δ, so the exact inverse
    of that step is x_t = DDIM⁻¹(x_{t-1} - δ): δ is removed before every inversion step. For `init`
    nothing is added: δ only moves the start of sampling from noise, and an inverted latent already is
    the source's own x_t.
    """
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    unet, steps, n_run = parts.unet, chain.steps, chain.n_run  # the same truncation as edit_latents
    sampler = DDIMScheduler.from_config(parts.scheduler.config)
    inverse = DDIMInverseScheduler.from_config(parts.scheduler.config)
    sampler.set_timesteps(steps, device=source_latents.device)
    inverse.set_timesteps(steps, device=source_latents.device)
    embeddings = encode_prompts(parts, prompts, 1.0)
    latents = source_latents
    shift = None if drift.is_zero or drift.sample != "every-step" else drift.delta_like(source_latents)
    for t in inverse.timesteps[:n_run]:
        if shift is not None:
            latents = latents - shift
        eps = unet(inverse.scale_model_input(latents, t), t, encoder_hidden_states=embeddings).sample
        latents = inverse.step(eps, t, latents).prev_sample
    return latents, sampler.timesteps[steps - n_run:]


CPU_CHUNK = 128  # images per autoencoder pass on the CPU (as before: the CPU numbers depend on it)
VAE_CHUNK_ENV = "LDBENCH_VAE_CHUNK"  # on a GPU: images per pass (default 8, a Stable Diffusion VAE's memory)


def vae_chunk(vae, chunk: int | None = None) -> int:
    """Images per autoencoder pass: `chunk`, else 128 on the CPU, else $LDBENCH_VAE_CHUNK or 8 on a GPU."""
    import os

    if chunk is not None:
        return chunk
    if vae.device.type == "cpu":
        return CPU_CHUNK
    value = os.environ.get(VAE_CHUNK_ENV, "8")
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"${VAE_CHUNK_ENV}={value!r}: expected a positive number of images per autoencoder pass")
    return int(value)


@torch.no_grad()
def encode_images(parts: Components, images: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Gray images (N, H, W) in [0, 1] -> scaled latent means (N, C, h, w), in chunks (`vae_chunk`)."""
    vae = parts.vae
    chunk = vae_chunk(vae, chunk)
    out = []
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk, None].repeat(1, 3, 1, 1).to(vae.device, vae.dtype) * 2 - 1
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


@torch.no_grad()
def decode_latents(parts: Components, latents: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Scaled latents -> gray images (N, H, W) in [0, 1] (mean of the decoded RGB channels), in chunks."""
    vae = parts.vae
    chunk = vae_chunk(vae, chunk)
    out = []
    for i in range(0, len(latents), chunk):
        rgb = vae.decode(latents[i : i + chunk] / vae.config.scaling_factor).sample
        out.append(((rgb.float().clamp(-1, 1) + 1) / 2).mean(dim=1).cpu())
    return torch.cat(out)
