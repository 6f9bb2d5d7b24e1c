"""Latent Drifting (Yeganeh et al., CVPR 2025, arXiv 2412.20651): a signed shift δ of the latent prior mean.

The paper moves the mean of the latent Gaussian from μ to μ' = μ + δ, i.e. z_T ~ N(δ, I) instead of
N(0, I), "added to the target z_T of the forward process, as well as the reverse processes" (Eq. 4):

    p_θ(x_{t-1} | x_t) = N(x_{t-1}; μ_θ(x_t, t) + δ, Σ_θ(x_t, t)).

Where exactly δ enters training is not fully specified, so each reading is a named placement and a
benchmark axis rather than a guess:

training placements (`Drift.train`)
  noise                   ε' = ε + δ; x_t = √ᾱ_t z_0 + √(1-ᾱ_t) ε'; the model learns to predict ε'.
                          This is z_T ~ N(δ, I) read literally: at t = T, x_T ≈ ε'.
  noise-unshifted-target  x_t built with ε' as above, but the loss targets ε.
  latent                  x_t built with ε, then δ added to x_t; the model predicts ε.
  none                    plain fine-tuning (inference-only LD).

sampling placements (`Drift.sample`)
  init        z_T ~ N(δ, I) only (the figure's inference panels).
  every-step  z_T ~ N(δ, I) and δ added to the mean of every reverse step (Eq. 4 read literally).
  none        z_T ~ N(0, I).

δ is a signed scalar (the paper's choice: one value for every channel) or a per-channel vector. With
δ = 0 every placement reduces exactly to the undrifted model: every function here then returns its
input tensor unchanged (the same object), so δ = 0 is bit-identical to plain diffusers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ldbench.errors import UserError

TRAIN_PLACEMENTS = ("noise", "noise-unshifted-target", "latent", "none")
SAMPLE_PLACEMENTS = ("init", "every-step", "none")


@dataclass(frozen=True)
class Drift:
    """One Latent Drifting setting: δ and where it is applied in training and in sampling."""

    delta: float | tuple[float, ...] = 0.0
    train: str = "noise"
    sample: str = "init"
    # Free-text origin of δ (e.g. "tune-delta l1 on val"), carried into provenance.
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.train, str) or self.train not in TRAIN_PLACEMENTS:
            raise UserError(f"unknown drift train placement {self.train!r}; valid: {', '.join(TRAIN_PLACEMENTS)}")
        if not isinstance(self.sample, str) or self.sample not in SAMPLE_PLACEMENTS:
            raise UserError(
                f"unknown drift sample placement {self.sample!r}; valid: {', '.join(SAMPLE_PLACEMENTS)}"
            )
        if not isinstance(self.note, str):
            raise UserError(f"drift note must be text, got {self.note!r}")
        values = self.delta if isinstance(self.delta, Sequence) and not isinstance(self.delta, str) else [self.delta]
        if not values or not all(_finite_number(d) for d in values):
            raise UserError(f"drift delta must be a finite number or a non-empty list of finite numbers, got "
                            f"{self.delta!r}; e.g. delta: 0.1 or delta: [0.1, 0, 0, 0]")
        if isinstance(self.delta, Sequence) and not isinstance(self.delta, str):
            object.__setattr__(self, "delta", tuple(float(d) for d in self.delta))
        else:
            object.__setattr__(self, "delta", float(self.delta))

    @classmethod
    def from_dict(cls, d: dict) -> Drift:
        unknown = set(d) - {"delta", "train", "sample", "note"}
        if unknown:
            raise UserError(f"unknown drift keys {sorted(map(str, unknown))}; valid: delta, train, sample, note")
        return cls(**d)

    def to_dict(self, with_note: bool = False) -> dict:
        """The drift as a suite writes it. The note is left out of cache keys and record keys (it does not
        change a number); `with_note` adds it, when there is one, for provenance and resolved configs."""
        delta = list(self.delta) if isinstance(self.delta, tuple) else self.delta
        out = {"delta": delta, "train": self.train, "sample": self.sample}
        if with_note and self.note:
            out["note"] = self.note
        return out

    @property
    def is_zero(self) -> bool:
        values = self.delta if isinstance(self.delta, tuple) else (self.delta,)
        return all(v == 0.0 for v in values)

    @property
    def uses_ld(self) -> bool:
        return not self.is_zero and (self.train != "none" or self.sample != "none")

    @property
    def label(self) -> str:
        """Short text for tables: 'no LD' or 'LD δ=0.1 (noise/init)'."""
        if not self.uses_ld:
            return "no LD"
        values = self.delta if isinstance(self.delta, tuple) else (self.delta,)
        return f"LD δ={','.join(f'{v:g}' for v in values)} ({self.train}/{self.sample})"

    def for_training(self) -> Drift:
        """The part of this drift that changes training: NO_DRIFT when δ = 0 or the train placement is
        "none", else the same δ and train placement with sampling "none" (cells that differ only in
        sampling share a model). The note is dropped: it changes no number."""
        if self.is_zero or self.train == "none":
            return NO_DRIFT
        return Drift(self.delta, train=self.train, sample="none")

    def for_sampling(self) -> Drift:
        """The part of this drift that changes sampling: NO_DRIFT when δ = 0 or the sample placement is
        "none", else the same δ and sample placement with training "none"."""
        if self.is_zero or self.sample == "none":
            return NO_DRIFT
        return Drift(self.delta, train="none", sample=self.sample)

    def delta_like(self, latents: torch.Tensor) -> torch.Tensor:
        """δ broadcast over a (B, C, H, W) latent tensor (per-channel vectors along C)."""
        if isinstance(self.delta, tuple):
            if len(self.delta) != latents.shape[1]:
                raise UserError(
                    f"drift delta has {len(self.delta)} values but the latents have {latents.shape[1]} channels"
                )
            return torch.tensor(self.delta, dtype=latents.dtype, device=latents.device).view(1, -1, 1, 1)
        return torch.tensor(self.delta, dtype=latents.dtype, device=latents.device)


def _finite_number(value) -> bool:
    import math
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


NO_DRIFT = Drift(0.0, train="none", sample="none")


# --- training (forward process) --------------------------------------------------------------------


def training_inputs(
    drift: Drift, scheduler, z0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The noisy input x_t and the regression target for one ε-prediction training step.

    Uses the scheduler's own `add_noise` (x_t = √ᾱ_t z_0 + √(1-ᾱ_t) ε), so any diffusers scheduler with
    the usual forward process works. Returns (x_t, target).
    """
    if drift.is_zero or drift.train == "none":
        return scheduler.add_noise(z0, noise, timesteps), noise
    delta = drift.delta_like(z0)
    if drift.train == "noise":  # ε' = ε + δ everywhere: z_T ~ N(δ, I), target ε'
        shifted = noise + delta
        return scheduler.add_noise(z0, shifted, timesteps), shifted
    if drift.train == "noise-unshifted-target":
        return scheduler.add_noise(z0, noise + delta, timesteps), noise
    if drift.train == "latent":
        return scheduler.add_noise(z0, noise, timesteps) + delta, noise
    raise AssertionError(drift.train)  # unreachable: validated in Drift


# --- sampling (reverse process) --------------------------------------------------------------------


def initial_latents(drift: Drift, noise: torch.Tensor, init_noise_sigma: float = 1.0) -> torch.Tensor:
    """z_T ~ N(δ, I): the LD prior mean shift, for placements `init` and `every-step`.

    `noise` is a standard normal draw of the final shape; the result is (noise + δ) · σ_init, the
    same scaling diffusers' pipelines apply to their initial latents.
    """
    if drift.is_zero or drift.sample == "none":
        return noise * init_noise_sigma if init_noise_sigma != 1.0 else noise
    return (noise + drift.delta_like(noise)) * init_noise_sigma


def after_step(drift: Drift, prev_sample: torch.Tensor) -> torch.Tensor:
    """Eq. 4: x_{t-1} ~ N(μ_θ(x_t, t) + δ, Σ_θ). A scheduler's step returns μ_θ + σ_t z (z = 0 for
    DDIM); adding δ afterwards shifts the mean of that Gaussian by δ without touching the step code."""
    if drift.is_zero or drift.sample != "every-step":
        return prev_sample
    return prev_sample + drift.delta_like(prev_sample)


def forward_noised(
    drift: Drift, scheduler, z0: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor
) -> torch.Tensor:
    """SDEdit's start point x_t for an image edit under the same drift as sampling: the forward
    process with ε' = ε + δ (z_T ~ N(δ, I) at t = T); unchanged for sample placement `none`."""
    if drift.is_zero or drift.sample == "none":
        return scheduler.add_noise(z0, noise, timestep)
    return scheduler.add_noise(z0, noise + drift.delta_like(noise), timestep)
