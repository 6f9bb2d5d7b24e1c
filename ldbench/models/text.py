"""Text on a model's parts: tokenizing prompts, the prompt a (fine-tuned) model expects for a caption, and
adding a new token with its own embedding row (textual-inversion, custom-diffusion)."""

from __future__ import annotations

import torch

from ldbench.errors import UserError
from ldbench.models.components import Components


def tokenize(tokenizer, captions) -> torch.Tensor:
    return tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids


def prompt_for(parts: Components, caption: str) -> str:
    """The prompt a (possibly fine-tuned) model expects for a caption: the caption itself unless the
    method that trained it installed a prompt hook (e.g. "<ld-med> brain mri, ...")."""
    hook = parts.prompt
    return hook(caption) if hook is not None and caption else caption


def prefix_prompt(prefix: str):
    """caption -> "prefix caption" (captions dropped to "" for classifier-free guidance stay "")."""
    return lambda caption: f"{prefix} {caption}" if caption else caption


def add_token(parts: Components, token: str, init: str | torch.Tensor) -> int:
    """Add `token` to the tokenizer and a row to the text encoder's embedding, set to `init` (a trained
    (1, dim) embedding) or, for text, the mean embedding of its tokens. Returns the new row's id; every
    other row keeps its exact value."""
    tokenizer, text_encoder = parts.tokenizer, parts.text_encoder
    if not token or token in tokenizer.get_vocab():
        raise UserError(f"placeholder token {token!r} is empty or already in the tokenizer; choose a new one")
    if isinstance(init, str):
        init_ids = tokenizer(init, add_special_tokens=False).input_ids
        if not init_ids:
            raise UserError(f"initializer token {init!r} has no tokens")
    tokenizer.add_tokens([token])
    token_id = tokenizer.convert_tokens_to_ids(token)
    old = text_encoder.get_input_embeddings().weight.detach().clone()
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[: len(old)] = old  # exactly the old rows, whatever the resize did
        weight[token_id] = old[init_ids].mean(0) if isinstance(init, str) else init.reshape(-1)
    return token_id


class KeepOtherRows:
    """After each optimizer step, put back every embedding row but `token_id` (AdamW's weight decay
    would otherwise shrink them), so only the new row ever changes, bit for bit."""

    def __init__(self, weight: torch.nn.Parameter, token_id: int) -> None:
        self.weight = weight
        self.original = weight.detach().clone()
        self.keep = torch.ones(len(weight), dtype=torch.bool)
        self.keep[token_id] = False

    def __call__(self) -> None:
        with torch.no_grad():
            self.weight[self.keep] = self.original[self.keep]
