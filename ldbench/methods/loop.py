"""The one training loop every method shares: ε-prediction denoising on cached latents, with Latent
Drifting applied to the forward process (ldbench.drift.training_inputs)."""

from __future__ import annotations

from collections.abc import Callable
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
    # DreamBooth's class-prior images (same layout); when set, every step adds an equally sized prior
    # batch and the loss is instance MSE + prior_loss_weight · prior MSE.
    prior: TrainData | None = None

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
    prior_loss_weight: float = 1.0,
    after_step: Callable[[], None] | None = None,
    desc: str = "train",
    quiet: bool = False,
) -> list[float]:
    """Train `trainable` (a subset of the UNet / text encoder parameters) for `steps` steps.

    `train_text_encoder`: embed the captions through the text encoder every step (gradients reach its
    trainable parameters, e.g. one token-embedding row) instead of once up front.
    `data.prior` (DreamBooth): a prior batch joins every step, weighted by `prior_loss_weight`.
    `after_step`: called after each optimizer step (e.g. to restore embedding rows that must not change).
    Returns the loss per step. Deterministic for a seed on CPU.
    """
    unet, text_encoder, tokenizer, scheduler = parts["unet"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"]
    drift = drift or NO_DRIFT
    gen = torch.Generator().manual_seed(seed)
    prior = data.prior
    vocab = sorted(set(data.captions) | {""} | set(prior.captions if prior is not None else ()))
    caption_index = torch.tensor([vocab.index(c) for c in data.captions])
    if prior is not None:
        prior_index = torch.tensor([vocab.index(c) for c in prior.captions])
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
        if prior is not None:  # one forward pass over [instance; prior], as diffusers' DreamBooth script
            pidx = torch.randint(len(prior.captions), (batch_size,), generator=gen)
            pz0 = prior.latent_mean[pidx] + prior.latent_std[pidx] * torch.randn(
                prior.latent_mean[pidx].shape, generator=gen)
            pt = torch.randint(0, n_train, (batch_size,), generator=gen)
            px_t, ptarget = training_inputs(drift, scheduler, pz0, torch.randn(pz0.shape, generator=gen), pt)
            x_t, t, cap = torch.cat([x_t, px_t]), torch.cat([t, pt]), torch.cat([cap, prior_index[pidx]])
        emb = text_encoder(ids[cap])[0] if train_text_encoder else cached_embeddings[cap]
        pred = unet(x_t, t, encoder_hidden_states=emb).sample
        if prior is None:
            loss = F.mse_loss(pred, target)
        else:
            loss = F.mse_loss(pred[:batch_size], target) + prior_loss_weight * F.mse_loss(pred[batch_size:], ptarget)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
    unet.eval()
    text_encoder.eval()
    for p in trainable:
        p.requires_grad_(False)
    return losses
