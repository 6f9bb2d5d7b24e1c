"""The sampler registry: how an editor's `sampler` option becomes a diffusers scheduler built from the
base model's training-noise schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ldbench.registry import Registry


@dataclass(frozen=True)
class Sampler:
    description: str
    build: Callable  # base scheduler -> a fresh sampling scheduler with the same noise schedule


SAMPLERS: Registry[Sampler] = Registry("sampler")


def _ddim(scheduler):
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(scheduler.config)


def _ddpm(scheduler):
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config)


SAMPLERS.add("ddim", Sampler("DDIM (Song et al. 2021), deterministic (η = 0)", _ddim))
SAMPLERS.add("ddpm", Sampler("DDPM ancestral sampling (Ho et al. 2020), a fresh noise draw every step", _ddpm))


def make_sampler(name: str, scheduler):
    """A sampling scheduler built from the base model's training-noise schedule (unknown names: UserError)."""
    return SAMPLERS.get(name).build(scheduler)
