"""What the token methods (textual-inversion, custom-diffusion) share: their options and the setup of
their new token."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ldbench.methods import TrainingOptions, check_token
from ldbench.models import Components
from ldbench.models.text import KeepOtherRows, add_token, prefix_prompt


@dataclass(frozen=True)
class TokenOptions(TrainingOptions):
    """TrainingOptions and:

    placeholder_token  the new token (textual-inversion's learned word, custom-diffusion's modifier
                       token); added to the tokenizer and put in front of every training and sampling prompt.
    initializer_token  text whose token embeddings (mean over its tokens) initialise that new row.
    """

    placeholder_token: str = "<ld-med>"
    initializer_token: str = "mri"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_token(self, "placeholder_token", "initializer_token")


def with_placeholder(parts: Components, data, options: TokenOptions):
    """The shared setup of the token methods: add options.placeholder_token (initialised from
    options.initializer_token), prefix every prompt with it, and return (captioned data, the embedding
    weight, the token's row id, a KeepOtherRows hook for it)."""
    token = options.placeholder_token
    token_id = add_token(parts, token, options.initializer_token)
    parts.prompt = prefix_prompt(token)
    data = dataclasses.replace(data, captions=tuple(parts.prompt(c) for c in data.captions))
    weight = parts.text_encoder.get_input_embeddings().weight
    return data, weight, token_id, KeepOtherRows(weight, token_id)
