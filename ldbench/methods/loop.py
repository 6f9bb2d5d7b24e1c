"""The one training loop every method shares: ε-prediction denoising on cached latents, with Latent
Drifting applied to the forward process (ldbench.drift.training_inputs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ldbench.drift import NO_DRIFT, Drift, training_inputs
from ldbench.errors import UserError
from ldbench.progress import progress_bar

# Fraction of captions replaced by "" so the model also learns the unconditional score that
# classifier-free guidance needs (Stable Diffusion's recipe).
CAPTION_DROPOUT = 0.1
# MethodOptions.mixed_precision values, as accelerate names them.
MIXED_PRECISIONS = ("no", "fp16", "bf16")


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


def check_training_options(mixed_precision, gradient_accumulation_steps, gradient_checkpointing="auto") -> None:
    """Reject bad mixed_precision / gradient_accumulation_steps with one line naming the value and the fix."""
    if not isinstance(mixed_precision, str) or mixed_precision not in MIXED_PRECISIONS:
        raise UserError(f"method option mixed_precision {mixed_precision!r} is unknown; "
                        f"valid: {', '.join(MIXED_PRECISIONS)}")
    value = gradient_accumulation_steps
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"method option gradient_accumulation_steps must be an integer >= 1, got {value!r}")
    if gradient_checkpointing not in ("auto", True, False):
        raise UserError(f"method option gradient_checkpointing must be auto, true or false, got {gradient_checkpointing!r}")


def training_options(options) -> dict:
    """What every method passes from MethodOptions to train_denoiser unchanged (one place, so none forgets)."""
    return {"mixed_precision": options.mixed_precision,
            "gradient_accumulation_steps": options.gradient_accumulation_steps,
            "gradient_checkpointing": options.gradient_checkpointing}


def use_checkpointing(gradient_checkpointing: str | bool, device: torch.device) -> bool:
    """MethodOptions.gradient_checkpointing resolved: "auto" is on for a UNet on CUDA, off on CPU."""
    return device.type == "cuda" if gradient_checkpointing == "auto" else bool(gradient_checkpointing)


def _accelerator(mixed_precision: str, gradient_accumulation_steps: int, cpu: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps its settings in process-wide singletons and refuses a second Accelerator with a
    # different mixed_precision or device; every training run here is self-contained (one process trains
    # many cells, with different options), so each starts from a clean state.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                       cpu=cpu)


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
    mixed_precision: str = "no",
    gradient_accumulation_steps: int = 1,
    gradient_checkpointing: str | bool = "auto",
    desc: str = "train",
    quiet: bool = False,
) -> list[float]:
    """Train `trainable` (a subset of the UNet / text encoder parameters) for `steps` optimizer steps.

    `train_text_encoder`: embed the captions through the text encoder every step (gradients reach its
    trainable parameters, e.g. one token-embedding row) instead of once up front.
    `data.prior` (DreamBooth): a prior batch joins every step, weighted by `prior_loss_weight`.
    `after_step`: called after each optimizer step (e.g. to restore embedding rows that must not change),
    before the gradients are cleared.
    `mixed_precision` / `gradient_accumulation_steps`: see MethodOptions. Training runs through Hugging
    Face accelerate (autocast, loss scaling for fp16, accumulation); each of an optimizer step's
    micro-batches makes the random draws (samples, posterior noise, caption dropout, noise, timesteps)
    one step without accumulation would, from one CPU generator, so the draws depend only on the seed.
    With "no" and 1 the arithmetic is exactly the plain PyTorch loop's (accelerate divides the loss by 1
    and adds no autocast), so results are bit-identical to ldbench before accelerate.
    Returns the loss per optimizer step (the mean over its micro-batches). Deterministic for a seed on CPU.
    """
    unet, text_encoder, tokenizer, scheduler = parts["unet"], parts["text_encoder"], parts["tokenizer"], parts["scheduler"]
    check_training_options(mixed_precision, gradient_accumulation_steps, gradient_checkpointing)
    device = next(unet.parameters()).device
    if mixed_precision == "fp16" and device.type != "cuda":
        raise UserError("mixed_precision fp16 needs a CUDA GPU; use bf16 on CPU")
    drift = drift or NO_DRIFT
    gen = torch.Generator().manual_seed(seed)
    prior = data.prior
    vocab = sorted(set(data.captions) | {""} | set(prior.captions if prior is not None else ()))
    caption_index = torch.tensor([vocab.index(c) for c in data.captions])
    if prior is not None:
        prior_index = torch.tensor([vocab.index(c) for c in prior.captions])
    empty = vocab.index("")
    ids = tokenize(tokenizer, vocab).to(device)
    if not train_text_encoder:
        with torch.no_grad():
            cached_embeddings = text_encoder(ids)[0]

    for p in unet.parameters():
        p.requires_grad_(False)
    for p in text_encoder.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
        p.grad = None
    unet.train()
    checkpointing = use_checkpointing(gradient_checkpointing, device)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    text_encoder.train(train_text_encoder)
    accelerator = _accelerator(mixed_precision, gradient_accumulation_steps, cpu=device.type == "cpu")
    # Only the optimizer is prepared: preparing a module for mixed precision patches its forward with
    # autocast in place, which would outlive training (sampling after it would run in bf16/fp16); the
    # forward passes below run under accelerator.autocast() instead. The modules stay where they are.
    opt = accelerator.prepare(torch.optim.AdamW(trainable, lr=lr, weight_decay=1e-2))
    n_train = scheduler.config.num_train_timesteps
    losses = []
    for _ in progress_bar(range(steps), desc, quiet=quiet):
        micro = []
        for _ in range(gradient_accumulation_steps):
            with accelerator.accumulate(unet):
                # The draws, on the CPU generator whatever the device (same sequence on CPU and GPU).
                idx = torch.randint(len(data.captions), (batch_size,), generator=gen)
                z0 = data.latent_mean[idx] + data.latent_std[idx] * torch.randn(data.latent_mean[idx].shape,
                                                                                generator=gen)
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
                    ptarget = ptarget.to(device)
                x_t, t, cap, target = x_t.to(device), t.to(device), cap.to(device), target.to(device)
                with accelerator.autocast():  # a no-op for "no"
                    emb = text_encoder(ids[cap])[0] if train_text_encoder else cached_embeddings[cap]
                    pred = unet(x_t, t, encoder_hidden_states=emb).sample
                pred = pred.float()  # the loss in fp32, as diffusers' scripts (the same tensor when fp32)
                if prior is None:
                    loss = F.mse_loss(pred, target)
                else:
                    loss = (F.mse_loss(pred[:batch_size], target)
                            + prior_loss_weight * F.mse_loss(pred[batch_size:], ptarget))
                accelerator.backward(loss)  # loss / gradient_accumulation_steps (fp16: scaled)
                opt.step()  # only on an optimizer step's last micro-batch (accelerator.sync_gradients)
                if accelerator.sync_gradients and after_step is not None:
                    after_step()
                opt.zero_grad(set_to_none=True)  # likewise only then
            micro.append(loss.item())
        losses.append(sum(micro) / len(micro))
    if checkpointing:
        unet.disable_gradient_checkpointing()
    unet.eval()
    text_encoder.eval()
    for p in trainable:
        p.requires_grad_(False)
    return losses
