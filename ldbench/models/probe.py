"""Generated-latent statistics at checkpoints through a fine-tune (the paper's third mechanism).

The paper claims that without Latent Drifting the latent distribution keeps a high variance while the
model fine-tunes, and that with LD it settles. To measure that, the training loop samples a few latents
with the model as it stands at evenly spaced optimizer steps (step 0 = the base model included) and keeps
each sample's per-channel spatial mean and mean of squares (ldbench.metrics.latent_stability reads them).

Every checkpoint starts from the same noise (its own generator) and the same captions, so what changes
between checkpoints is the weights only. The probe draws nothing from the training generator or the
global RNG and puts the modules back in their training mode: training with a probe gives bit-identical
weights and losses (tests/unit/test_latent_probe.py). A model trained with LD is sampled the way an LD
model is, from z_T ~ N(δ, I) (placement `init`); one trained without LD from N(0, I).

The fine-tune stage switches a probe on around a method's training (`probing`); every text-conditioned
training run inside records through it, so a new method needs nothing of its own. Pretraining and the
instruct editor's image-conditioned UNet run without one.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch

from ldbench import validate as v
from ldbench.drift import NO_DRIFT, Drift, initial_latents

PROBE_SEED_OFFSET = 7_919  # the probe's noise: its own seed, never the training generator's
GPU_CHUNK = 4  # samples per reverse chain on a GPU


@dataclass(frozen=True)
class ProbeSettings:
    """How a fine-tune is probed: `checkpoints` evenly spaced steps after step 0, `samples` latents per
    checkpoint, `steps` DDIM steps each (no guidance: the conditional model on the training captions)."""

    checkpoints: int = 8
    samples: int = 16
    steps: int = 10

    def __post_init__(self) -> None:
        # the stability metric needs 2 checkpoints in the second half of training and 2 samples for its CI
        where = "evaluation.latent_probe."
        v.int_in(self.checkpoints, where + "checkpoints", 2, example=8)
        v.int_in(self.samples, where + "samples", 2, example=16)
        v.int_in(self.steps, where + "steps", 1, example=10)

    def at(self, total_steps: int) -> list[int]:
        """The optimizer steps probed (after that many updates): 0, ..., total_steps."""
        k = max(1, min(self.checkpoints, total_steps))
        return sorted({round(i * total_steps / k) for i in range(k + 1)})


def probe_drift(train_drift: Drift) -> Drift:
    """The sampling drift of a probe: z_T ~ N(δ, I) for a model trained with LD, N(0, I) otherwise."""
    if not train_drift.uses_ld:
        return NO_DRIFT
    return Drift(train_drift.delta, train="none", sample="init")


@dataclass
class LatentProbe:
    """Records per-sample, per-channel latent statistics at the steps `settings.at(total)` of a training run."""

    settings: ProbeSettings
    seed: int
    steps: list[int] = field(default_factory=list)
    means: list[np.ndarray] = field(default_factory=list)  # per checkpoint: (samples, channels)
    squares: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """steps (K,), channel_mean and channel_mean_square (K, samples, channels), float64."""
        return {"steps": np.asarray(self.steps, dtype=np.int64),
                "channel_mean": np.stack(self.means).astype(np.float64),
                "channel_mean_square": np.stack(self.squares).astype(np.float64)}

    @torch.no_grad()
    def record(self, step: int, parts, embed, captions: torch.Tensor, latent_shape: tuple, drift: Drift) -> None:
        """Sample `settings.samples` latents with the model as it is now (caption rows `captions` through
        the loop's `embed`) and keep their channel statistics for `step`."""
        from diffusers import DDIMScheduler

        from ldbench.models.sampling import TextGuidance, denoise

        unet, text_encoder = parts.unet, parts.text_encoder
        modes = (unet.training, text_encoder.training)
        unet.eval()
        text_encoder.eval()
        try:
            scheduler = DDIMScheduler.from_config(parts.scheduler.config)  # its own: training's stays untouched
            scheduler.set_timesteps(self.settings.steps, device=unet.device)
            gen = torch.Generator().manual_seed(self.seed + PROBE_SEED_OFFSET)
            noise = torch.randn((len(captions), *latent_shape), generator=gen).to(unet.device, unet.dtype)
            sampling = probe_drift(drift)
            latents = initial_latents(sampling, noise, scheduler.init_noise_sigma)
            embeddings = embed(captions.to(unet.device))
            # all at once on the CPU; on a GPU a few at a time, next to the training run's memory
            chunk = len(captions) if unet.device.type == "cpu" else GPU_CHUNK
            z = torch.cat([denoise(scheduler, latents[i : i + chunk], scheduler.timesteps,
                                   TextGuidance(unet, embeddings[i : i + chunk], 1.0), sampling, None).float().cpu()
                           for i in range(0, len(captions), chunk)])
        finally:
            unet.train(modes[0])
            text_encoder.train(modes[1])
        self.steps.append(int(step))
        self.means.append(z.mean(dim=(2, 3)).numpy())
        self.squares.append((z * z).mean(dim=(2, 3)).numpy())


_ACTIVE: ContextVar[LatentProbe | None] = ContextVar("ldbench_latent_probe", default=None)


@contextlib.contextmanager
def probing(probe: LatentProbe):
    """Every text-conditioned training run inside records into `probe`."""
    token = _ACTIVE.set(probe)
    try:
        yield probe
    finally:
        _ACTIVE.reset(token)


def active_probe() -> LatentProbe | None:
    return _ACTIVE.get()
