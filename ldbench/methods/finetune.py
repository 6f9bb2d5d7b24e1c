"""`finetune`: basic fine-tuning. The whole UNet trains; the autoencoder and text encoder stay frozen
(the paper's "basic fine-tuning")."""

from __future__ import annotations

import torch

from ldbench.methods import METHODS, MethodOptions
from ldbench.methods.loop import TrainData, train_denoiser, training_options


class FineTune:
    name = "finetune"
    trains = "every UNet weight (autoencoder and text encoder frozen)"

    def train(self, parts, data: TrainData, drift, options: MethodOptions, seed: int, quiet: bool):
        losses = train_denoiser(
            parts, data, list(parts["unet"].parameters()), drift=drift, steps=options.steps,
            batch_size=options.batch_size, lr=options.lr, seed=seed, desc="finetune", quiet=quiet,
            **training_options(options),
        )
        return {k: v.detach().clone() for k, v in parts["unet"].state_dict().items()}, losses

    def apply(self, parts, trained: dict[str, torch.Tensor]) -> None:
        parts["unet"].load_state_dict(trained, strict=True)


METHODS.add("finetune", FineTune())
