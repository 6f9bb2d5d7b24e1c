"""Latent Drifting in a stock diffusers Stable Diffusion pipeline, through the pipeline's own arguments.

For a researcher who already samples with diffusers: `drift_kwargs` returns the keyword arguments that
make `StableDiffusionPipeline`, `StableDiffusionImg2ImgPipeline` or `StableDiffusionInstructPix2PixPipeline`
sample under a `Drift`, without copying any pipeline code:

    from ldbench.drift import Drift
    from ldbench.drift.pipelines import drift_kwargs
    drift = Drift(0.1, train="noise", sample="every-step")
    g = torch.Generator().manual_seed(0)
    images = pipe(prompts, generator=g, **drift_kwargs(pipe, drift, len(prompts), generator=g)).images

- z_T ~ N(δ, I) (placements `init` and `every-step`): text-to-image and InstructPix2Pix take the initial
  latents as `latents=`; the helper draws the standard normal noise exactly as the pipeline would
  (same shape, generator, order) and adds δ, and the pipeline scales it by `init_noise_sigma` as usual.
- img2img (SDEdit) starts from x_t = √ᾱ_t z_0 + √(1-ᾱ_t) (ε + δ) (ldbench.drift.forward_noised). Its
  pipeline draws ε itself, so the helper (given `img2img=Img2ImgStart(source_latents, steps, strength)`)
  passes the source as latents (`image=`, 4 channels) moved by
  δ √(1-ᾱ_t) / √ᾱ_t: the pipeline's own add_noise then yields exactly that start point.
- Eq. 4's every-step shift, x_{t-1} ~ N(μ_θ(x_t, t) + δ, Σ_θ): `callback_on_step_end`, which diffusers
  calls right after each scheduler step, adds δ to the latents (ldbench.drift.after_step).

With δ = 0 or sample placement `none` the result is {} (img2img: the source latents unchanged), so the
call is the stock pipeline's.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from ldbench.drift import Drift, after_step
from ldbench.errors import UserError


@dataclass(frozen=True)
class Img2ImgStart:
    """What an img2img call starts from: the scaled VAE latents of the source images and the call's own
    `num_inference_steps` and `strength`."""

    source_latents: torch.Tensor
    num_inference_steps: int = 50
    strength: float = 0.8


def _every_step_callback(drift: Drift):
    def callback(pipe, step: int, timestep, tensors: dict) -> dict:
        return {"latents": after_step(drift, tensors["latents"])}

    return callback


def _initial_noise(pipe, n: int, height: int | None, width: int | None, generator) -> torch.Tensor:
    """The standard normal draw the pipeline's prepare_latents would make for `n` images."""
    scale = pipe.vae_scale_factor
    height = height or pipe.unet.config.sample_size * scale
    width = width or pipe.unet.config.sample_size * scale
    shape = (n, pipe.vae.config.latent_channels, height // scale, width // scale)
    return randn_tensor(shape, generator=generator, device=pipe._execution_device, dtype=pipe.unet.dtype)


def _img2img_start(pipe, drift: Drift, start: Img2ImgStart) -> torch.Tensor:
    """Source latents z_0' with add_noise(z_0', ε, t) = √ᾱ_t z_0 + √(1-ᾱ_t)(ε + δ) at the pipeline's first
    timestep for the call's steps and strength."""
    source_latents, steps, strength = start.source_latents, start.num_inference_steps, start.strength
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps, device=source_latents.device)
    timesteps, _ = pipe.get_timesteps(steps, strength, source_latents.device)
    t = timesteps[:1]
    alpha_bar = scheduler.alphas_cumprod.to(source_latents.device, torch.float64)[t]
    move = torch.sqrt(1 - alpha_bar) / torch.sqrt(alpha_bar)
    return (source_latents.double() + move * drift.delta_like(source_latents).double()).to(source_latents.dtype)


def drift_kwargs(pipe, drift: Drift, batch_size: int, *, generator: torch.Generator | None = None,
                 height: int | None = None, width: int | None = None, img2img: Img2ImgStart | None = None) -> dict:
    """Keyword arguments for `pipe(...)` that sample under `drift` (see the module docstring).

    `batch_size`: images the call makes (prompts × num_images_per_prompt). Pass the same `generator` to the
    pipeline call. img2img needs `img2img`: the source latents and the call's `num_inference_steps` and
    `strength`; the returned `image=` replaces the call's image.
    """
    params = inspect.signature(pipe.__call__).parameters
    source_latents = img2img.source_latents if img2img is not None else None
    if drift.is_zero or drift.sample == "none":
        return {"image": source_latents} if source_latents is not None else {}
    kwargs: dict = {}
    if "latents" in params:
        noise = _initial_noise(pipe, batch_size, height, width, generator)
        kwargs["latents"] = noise + drift.delta_like(noise)  # z_T ~ N(δ, I); the pipeline scales it by σ_init
    elif "strength" in params:
        if img2img is None:
            raise UserError("drift_kwargs: an img2img pipeline needs img2img=Img2ImgStart(source_latents, ...) (the "
                            "scaled VAE latents of the source images) to start from the drifted forward process")
        kwargs["image"] = _img2img_start(pipe, drift, img2img)
    else:
        raise UserError(f"drift_kwargs: {type(pipe).__name__} takes neither latents nor strength; supported: "
                        "StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInstructPix2PixPipeline")
    if drift.sample == "every-step":
        kwargs["callback_on_step_end"] = _every_step_callback(drift)
        kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
    return kwargs
