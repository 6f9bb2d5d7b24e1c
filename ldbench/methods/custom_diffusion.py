"""`custom-diffusion` (Kumari et al. 2023): the UNet's cross-attention key/value projections
(attn2.to_k, attn2.to_v) and a new modifier token's embedding row train; everything else is frozen.

The modifier token is TokenOptions.placeholder_token, added and initialised as in textual-inversion
and put in front of every prompt. Saved: the K/V weights under "unet.<name>" and {token: (1, dim)}.
"""

from __future__ import annotations

import torch

from ldbench.methods import METHODS
from ldbench.methods.tokens import TokenOptions, with_placeholder
from ldbench.models import Components
from ldbench.models.text import add_token, prefix_prompt
from ldbench.models.training import TrainData, train_denoiser

UNET_PREFIX = "unet."


def cross_attention_kv(unet) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in unet.named_parameters() if ".attn2.to_k." in n or ".attn2.to_v." in n}


class CustomDiffusion:
    name = "custom-diffusion"
    description = "custom diffusion: cross-attention K/V and a modifier token"
    options_class = TokenOptions
    trains = "UNet cross-attention K/V projections (attn2.to_k/to_v) + a modifier token's embedding row"

    def train(self, parts: Components, data: TrainData, drift, options: TokenOptions, seed: int, quiet: bool):
        token = options.placeholder_token
        data, weight, token_id, keep_other_rows = with_placeholder(parts, data, options)
        kv = cross_attention_kv(parts.unet)
        config = options.train_config(seed, quiet, "custom-diffusion", train_text_encoder=True)
        losses = train_denoiser(parts, data, [*kv.values(), weight], drift, config, after_step=keep_other_rows)
        trained = {UNET_PREFIX + n: p.detach().clone() for n, p in kv.items()}
        trained[token] = weight[token_id : token_id + 1].detach().clone()
        return trained, losses

    def apply(self, parts: Components, trained: dict[str, torch.Tensor]) -> None:
        unet_part = {k[len(UNET_PREFIX):]: v for k, v in trained.items() if k.startswith(UNET_PREFIX)}
        tokens = {k: v for k, v in trained.items() if not k.startswith(UNET_PREFIX)}
        kv = cross_attention_kv(parts.unet)
        if set(unet_part) != set(kv) or len(tokens) != 1:
            raise ValueError("custom-diffusion weights do not match this UNet's cross-attention K/V layers")
        with torch.no_grad():
            for n, p in kv.items():
                p.copy_(unet_part[n])
        (token, embedding), = tokens.items()
        add_token(parts, token, embedding)
        parts.prompt = prefix_prompt(token)


METHODS.add("custom-diffusion", CustomDiffusion())
