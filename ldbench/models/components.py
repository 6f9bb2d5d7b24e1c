"""The loaded model components that methods, editors and stages share.

A base model loads into one Components value: its five pipeline components, plus what a method or editor
adds to them (a caption -> prompt hook, the latent size of the dataset being edited, an editor's own
trained network). Methods and editors change it in place (a method installs its prompt hook, an editor
its network); a view for one call is `dataclasses.replace(parts, latent_size=n)`, a shallow copy that
shares the modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer


@dataclasses.dataclass
class Components:
    """A Stable Diffusion pipeline's components and what methods and editors add to them."""

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    unet: UNet2DConditionModel
    scheduler: SchedulerMixin  # the base model's schedule; samplers are made from its config
    prompt: Callable[[str], str] | None = None  # caption -> prompt, installed by methods that add a token
    latent_size: int | None = None  # the edited dataset's latent size; None: the UNet's sample_size
    editor_unet: torch.nn.Module | None = None  # an editor's own trained network (instruct's widened UNet)

    def modules(self) -> dict[str, Any]:
        """The five pipeline components by name, as StableDiffusionPipeline takes them."""
        return {"vae": self.vae, "text_encoder": self.text_encoder, "tokenizer": self.tokenizer, "unet": self.unet,
                "scheduler": self.scheduler}

    def networks(self) -> dict[str, torch.nn.Module]:
        """The three networks with weights (vae, text_encoder, unet), by name."""
        return {"vae": self.vae, "text_encoder": self.text_encoder, "unet": self.unet}
