"""`finetune`: basic fine-tuning. The whole UNet trains; the autoencoder and text encoder stay frozen
(the paper's "basic fine-tuning")."""

from __future__ import annotations

import torch

from ldbench.methods import METHODS, TrainingOptions
from ldbench.models import Components
from ldbench.models.training import TrainData, train_denoiser


class FineTune:
    name = "finetune"
    description = "basic fine-tuning of the whole UNet"
    trains = "every UNet weight (autoencoder and text encoder frozen)"
    options_class = TrainingOptions

    def train(self, parts: Components, data: TrainData, drift, options: TrainingOptions, seed: int, quiet: bool):
        losses = train_denoiser(parts, data, list(parts.unet.parameters()), drift,
                                options.train_config(seed, quiet, "finetune"))
        return {k: v.detach().clone() for k, v in parts.unet.state_dict().items()}, losses

    def apply(self, parts: Components, trained: dict[str, torch.Tensor]) -> None:
        parts.unet.load_state_dict(trained, strict=True)


METHODS.add("finetune", FineTune())
