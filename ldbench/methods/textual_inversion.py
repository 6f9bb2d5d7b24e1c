"""`textual-inversion` (Gal et al. 2023): a new token whose embedding row is the only thing that trains.

The placeholder token (TokenOptions.placeholder_token, "<ld-med>") is added to the tokenizer, its row
initialised from `initializer_token`, and put in front of every prompt. Every other row of the embedding
is put back after each step, so UNet, autoencoder and text encoder stay bit-identical. Saved as
{token: (1, dim)}, the format diffusers' `pipe.load_textual_inversion` reads.
"""

from __future__ import annotations

import torch

from ldbench.methods import METHODS
from ldbench.methods.tokens import TokenOptions, with_placeholder
from ldbench.models import Components
from ldbench.models.text import add_token, prefix_prompt
from ldbench.models.training import TrainData, train_denoiser


class TextualInversion:
    name = "textual-inversion"
    description = "textual inversion: learn one new word for the domain"
    options_class = TokenOptions
    trains = "one new token's embedding row (placeholder_token, in every prompt); everything else frozen"

    def train(self, parts: Components, data: TrainData, drift, options: TokenOptions, seed: int, quiet: bool):
        token = options.placeholder_token
        data, weight, token_id, keep_other_rows = with_placeholder(parts, data, options)
        config = options.train_config(seed, quiet, "textual-inversion", train_text_encoder=True)
        losses = train_denoiser(parts, data, [weight], drift, config, after_step=keep_other_rows)
        return {token: weight[token_id : token_id + 1].detach().clone()}, losses

    def apply(self, parts: Components, trained: dict[str, torch.Tensor]) -> None:
        (token, embedding), = trained.items()
        add_token(parts, token, embedding)
        parts.prompt = prefix_prompt(token)


METHODS.add("textual-inversion", TextualInversion())
