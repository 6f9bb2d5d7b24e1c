"""`textual-inversion` (Gal et al. 2023): a new token whose embedding row is the only thing that trains.

The placeholder token (MethodOptions.placeholder_token, "<ld-med>") is added to the tokenizer, its row
initialised from `initializer_token`, and put in front of every prompt. Every other row of the embedding
is put back after each step, so UNet, autoencoder and text encoder stay bit-identical. Saved as
{token: (1, dim)}, the format diffusers' `pipe.load_textual_inversion` reads.
"""

from __future__ import annotations

import torch

from ldbench.methods import METHODS, MethodOptions
from ldbench.methods.loop import TrainData, train_denoiser, training_options
from ldbench.methods.tokens import add_token, prefix_prompt, with_placeholder


class TextualInversion:
    name = "textual-inversion"
    trains = "one new token's embedding row (placeholder_token, in every prompt); everything else frozen"

    def train(self, parts, data: TrainData, drift, options: MethodOptions, seed: int, quiet: bool):
        token = options.placeholder_token
        data, weight, token_id, keep_other_rows = with_placeholder(parts, data, options)
        losses = train_denoiser(
            parts, data, [weight], drift=drift, steps=options.steps, batch_size=options.batch_size,
            lr=options.lr, seed=seed, train_text_encoder=True, after_step=keep_other_rows,
            desc="textual-inversion", quiet=quiet,
            **training_options(options),
        )
        return {token: weight[token_id : token_id + 1].detach().clone()}, losses

    def apply(self, parts, trained: dict[str, torch.Tensor]) -> None:
        (token, embedding), = trained.items()
        add_token(parts, token, embedding)
        parts["prompt"] = prefix_prompt(token)


METHODS.add("textual-inversion", TextualInversion())
