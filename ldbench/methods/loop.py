"""The one training loop every method shares: ε-prediction denoising on cached latents, with Latent
Drifting applied to the forward process (ldbench.drift.training_inputs)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ldbench.drift import NO_DRIFT, Drift, training_inputs
from ldbench.progress import progress_bar

# Fraction of captions replaced by "" so the model also learns the unconditional score that
# classifier-free guidance needs (Stable Diffusion's recipe).
CAPTION_DROPOUT = 0.1


@dataclass(frozen=True)
class TrainData:
    """Scaled latent posteriors (mean, std) of the training images and their captions.

    The autoencoder is frozen in every method, so images are encoded once and each step draws
    z_0 = mean + std · n from the posterior, as training on pixels would.
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor
    captions: tuple[str, ...]

    @classmethod
    @torch.no_grad()
    def from_pixels(cls, vae, pixels: torch.Tensor, captions, chunk: int = 128) -> TrainData:
        """`pixels`: (N, 3, H, W) in [-1, 1]."""
        means, stds = [], []
        for i in range(0, len(pixels), chunk):
            dist = vae.encode(pixels[i : i + chunk]).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        s = vae.config.scaling_factor
        return cls(torch.cat(means) * s, torch.cat(stds) * s, tuple(captions))


def tokenize(tokenizer, captions) -> torch.Tensor:
    return tokenizer(
        list(captions), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids


def train_denoiser(
    parts: dict,
    data: TrainData,
    trainable: list[torch.nn.Parameter],
    *,
    drift: Drift | None,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    train_text_encoder: bool = False,
    desc: str = "train",
    quiet: bool = False,
) -> list[float]:
    """Train `trainable` (a subset of the UNet / text encoder parameters) for `steps` steps.

    Returns the loss per step. Deterministic for a seed on CPU.
    """
    unet, text_encoder, tokenizer, scheduler = parts["unet"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"]
    drift = drift or NO_DRIFT
    gen = torch.Generator().manual_seed(seed)
    vocab = sorted(set(data.captions) | {""})
    caption_index = torch.tensor([vocab.index(c) for c in data.captions])
    empty = vocab.index("")
    ids = tokenize(tokenizer, vocab)
    if not train_text_encoder:
        with torch.no_grad():
            cached_embeddings = text_encoder(ids)[0]

    for p in unet.parameters():
        p.requires_grad_(False)
    for p in text_encoder.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    unet.train()
    text_encoder.train(train_text_encoder)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-2)
    n_train = scheduler.config.num_train_timesteps
    losses = []
    for _ in progress_bar(range(steps), desc, quiet=quiet):
        idx = torch.randint(len(data.captions), (batch_size,), generator=gen)
        z0 = data.latent_mean[idx] + data.latent_std[idx] * torch.randn(data.latent_mean[idx].shape, generator=gen)
        cap = caption_index[idx].clone()
        cap[torch.rand(batch_size, generator=gen) < CAPTION_DROPOUT] = empty
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, n_train, (batch_size,), generator=gen)
        x_t, target = training_inputs(drift, scheduler, z0, noise, t)
        emb = text_encoder(ids[cap])[0] if train_text_encoder else cached_embeddings[cap]
        pred = unet(x_t, t, encoder_hidden_states=emb).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    unet.eval()
    text_encoder.eval()
    for p in trainable:
        p.requires_grad_(False)
    return losses
