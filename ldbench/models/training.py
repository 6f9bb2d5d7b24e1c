"""The one training loop: ε-prediction denoising on cached latents, with Latent Drifting applied to the
forward process (ldbench.drift.training_inputs). Every fine-tuning method, the embedded model's
pretraining and the instruct editor's image-conditioned UNet train through `train_denoiser`.

What a micro-batch is (which latents, which captions, what the UNet reads) is the loop's one hook, a
`Batches` object: `CaptionBatches` for text-conditioned training on `TrainData` (the default), or an
editor's own (instruct adds the source latent as extra input channels). Everything else (accelerate,
mixed precision, accumulation, the optimizer, the loss) is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ldbench.drift import NO_DRIFT, Drift, training_inputs
from ldbench.errors import UserError
from ldbench.models.components import Components
from ldbench.models.text import tokenize
from ldbench.progress import progress_bar

# Fraction of captions replaced by "" so the model also learns the unconditional score that
# classifier-free guidance needs (Stable Diffusion's recipe).
CAPTION_DROPOUT = 0.1
# TrainingOptions.mixed_precision values, as accelerate names them.
MIXED_PRECISIONS = ("no", "fp16", "bf16")


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


@dataclass(frozen=True)
class TrainConfig:
    """How the loop trains: `steps` optimizer steps of `batch_size` samples per micro-batch, AdamW at `lr`,
    the random draws from `seed`.

    `train_text_encoder`: embed the captions through the text encoder every step (gradients reach its
    trainable parameters, e.g. one token-embedding row) instead of once up front.
    `prior_loss_weight`: the weight of a prior batch's MSE (DreamBooth, when the data has one).
    `mixed_precision`, `gradient_accumulation_steps`, `gradient_checkpointing`: see
    ldbench.methods.TrainingOptions.
    """

    steps: int
    batch_size: int
    lr: float
    seed: int
    train_text_encoder: bool = False
    prior_loss_weight: float = 1.0
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: str | bool = "auto"
    desc: str = "train"
    quiet: bool = False

    def __post_init__(self) -> None:
        check_training_options(self.mixed_precision, self.gradient_accumulation_steps, self.gradient_checkpointing)


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


@dataclass(frozen=True)
class Batch:
    """One micro-batch, drawn on the CPU: the UNet's input, its timesteps, each row's caption (an index
    into the Batches' vocabulary) and the regression target. `prior_target`: the target of a prior batch
    appended after the first `len(target)` rows (DreamBooth)."""

    model_input: torch.Tensor
    timesteps: torch.Tensor
    captions: torch.Tensor
    target: torch.Tensor
    prior_target: torch.Tensor | None = None


class Batches(Protocol):
    """What the loop trains on. `vocab`: every caption a batch can index (sorted, "" included)."""

    vocab: list[str]

    def draw(self, gen: torch.Generator, batch_size: int, scheduler, drift: Drift) -> Batch:
        """One micro-batch; every random draw from `gen` (a CPU generator)."""
        ...


class CaptionBatches:
    """Text-conditioned batches of TrainData: posterior samples, caption dropout, noise, timesteps, and
    DreamBooth's prior batch when the data has one."""

    def __init__(self, data: TrainData) -> None:
        self.data, self.prior = data, data.prior
        self.vocab = sorted(set(data.captions) | {""} | set(self.prior.captions if self.prior is not None else ()))
        self.caption_index = torch.tensor([self.vocab.index(c) for c in data.captions])
        if self.prior is not None:
            self.prior_index = torch.tensor([self.vocab.index(c) for c in self.prior.captions])
        self.empty = self.vocab.index("")

    def draw(self, gen: torch.Generator, batch_size: int, scheduler, drift: Drift) -> Batch:
        data, n_train = self.data, scheduler.config.num_train_timesteps
        idx = torch.randint(len(data.captions), (batch_size,), generator=gen)
        z0 = data.latent_mean[idx] + data.latent_std[idx] * torch.randn(data.latent_mean[idx].shape, generator=gen)
        cap = self.caption_index[idx].clone()
        cap[torch.rand(batch_size, generator=gen) < CAPTION_DROPOUT] = self.empty
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, n_train, (batch_size,), generator=gen)
        x_t, target = training_inputs(drift, scheduler, z0, noise, t)
        if self.prior is None:
            return Batch(x_t, t, cap, target)
        # one forward pass over [instance; prior], as diffusers' DreamBooth script
        prior = self.prior
        pidx = torch.randint(len(prior.captions), (batch_size,), generator=gen)
        pz0 = prior.latent_mean[pidx] + prior.latent_std[pidx] * torch.randn(prior.latent_mean[pidx].shape,
                                                                             generator=gen)
        pt = torch.randint(0, n_train, (batch_size,), generator=gen)
        px_t, ptarget = training_inputs(drift, scheduler, pz0, torch.randn(pz0.shape, generator=gen), pt)
        return Batch(torch.cat([x_t, px_t]), torch.cat([t, pt]), torch.cat([cap, self.prior_index[pidx]]), target,
                     ptarget)


def use_checkpointing(gradient_checkpointing: str | bool, device: torch.device) -> bool:
    """TrainingOptions.gradient_checkpointing resolved: "auto" is on for a UNet on CUDA, off on CPU."""
    return device.type == "cuda" if gradient_checkpointing == "auto" else bool(gradient_checkpointing)


# Where training logs go besides each stage's stored losses: accelerate's experiment trackers ("tensorboard",
# "wandb", "mlflow", ... or GeneralTracker instances), set once per process by `ldbench run --log-with`
# (use_trackers). None by default. Logging changes no number, so it is not part of any cache key; a stage
# found in the cache trains nothing and logs nothing.
_TRACKERS: dict = {"log_with": (), "logging_dir": None}
# tracker -> the packages that provide it (any one will do: accelerate writes TensorBoard files through
# torch.utils.tensorboard or, without the tensorboard package, tensorboardX)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
                    "comet_ml": ("comet_ml",), "aim": ("aim",), "clearml": ("clearml",), "dvclive": ("dvclive",)}


def use_trackers(log_with: tuple = (), logging_dir: str | None = None) -> None:
    """Send every training loop's loss per optimizer step to these trackers (names are checked: a tracker
    accelerate does not know, or whose package is not installed, is a one-line error)."""
    import importlib.util

    for name in log_with:
        if not isinstance(name, str):
            continue  # a GeneralTracker instance
        if name not in TRACKER_PACKAGES:
            raise UserError(f"--log-with {name}: not a tracker accelerate knows; valid: {', '.join(TRACKER_PACKAGES)}")
        if all(importlib.util.find_spec(package) is None for package in TRACKER_PACKAGES[name]):
            raise UserError(f"--log-with {name}: the {TRACKER_PACKAGES[name][0]} package is not installed; "
                            f"pip install {TRACKER_PACKAGES[name][0]}")
    _TRACKERS.update(log_with=tuple(log_with), logging_dir=logging_dir)


def _accelerator(mixed_precision: str, gradient_accumulation_steps: int, cpu: bool):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps its settings in process-wide singletons and refuses a second Accelerator with a
    # different mixed_precision or device; every training run here is self-contained (one process trains
    # many cells, with different options), so each starts from a clean state.
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                       cpu=cpu, log_with=list(_TRACKERS["log_with"]) or None, project_dir=_TRACKERS["logging_dir"])


def _tracked(accelerator, config: TrainConfig) -> Callable[[int, float], None] | None:
    """A (step, loss) logger on the process's trackers, started for this training run; None without any."""
    if not _TRACKERS["log_with"]:
        return None
    accelerator.init_trackers((config.desc or "train").replace(" ", "-"),
                              config={"steps": config.steps, "batch_size": config.batch_size, "lr": config.lr,
                                      "seed": config.seed, "mixed_precision": config.mixed_precision})
    return lambda step, loss: accelerator.log({"loss": loss}, step=step)


def _caption_embedder(parts: Components, vocab: list[str], train_text_encoder: bool, device) -> Callable:
    """caption rows -> text embeddings: through the text encoder every step when it trains, else from a
    table computed once here."""
    text_encoder = parts.text_encoder
    ids = tokenize(parts.tokenizer, vocab).to(device)
    if train_text_encoder:
        return lambda cap: text_encoder(ids[cap])[0]
    with torch.no_grad():
        cached = text_encoder(ids)[0]
    return lambda cap: cached[cap]


def _freeze_all_but(parts: Components, trainable: list[torch.nn.Parameter]) -> None:
    for p in parts.unet.parameters():
        p.requires_grad_(False)
    for p in parts.text_encoder.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
        p.grad = None


def _loss(pred: torch.Tensor, batch: Batch, device, prior_loss_weight: float) -> torch.Tensor:
    pred = pred.float()  # the loss in fp32, as diffusers' scripts (the same tensor when fp32)
    target = batch.target.to(device)
    if batch.prior_target is None:
        return F.mse_loss(pred, target)
    n = len(batch.target)
    return F.mse_loss(pred[:n], target) + prior_loss_weight * F.mse_loss(pred[n:], batch.prior_target.to(device))


@dataclass
class _Run:
    """One training run's moving parts, so a micro-batch is one short function."""

    unet: torch.nn.Module
    embed: Callable
    batches: Batches
    accelerator: object
    opt: object
    gen: torch.Generator
    drift: Drift
    config: TrainConfig
    after_step: Callable[[], None] | None

    def micro_step(self, scheduler, device) -> float:
        with self.accelerator.accumulate(self.unet):
            # The draws, on the CPU generator whatever the device (same sequence on CPU and GPU).
            batch = self.batches.draw(self.gen, self.config.batch_size, scheduler, self.drift)
            x, t, cap = batch.model_input.to(device, self.unet.dtype), batch.timesteps.to(device), batch.captions.to(device)
            with self.accelerator.autocast():  # a no-op for "no"
                pred = self.unet(x, t, encoder_hidden_states=self.embed(cap)).sample
            loss = _loss(pred, batch, device, self.config.prior_loss_weight)
            self.accelerator.backward(loss)  # loss / gradient_accumulation_steps (fp16: scaled)
            self.opt.step()  # only on an optimizer step's last micro-batch (accelerator.sync_gradients)
            if self.accelerator.sync_gradients and self.after_step is not None:
                self.after_step()
            self.opt.zero_grad(set_to_none=True)  # likewise only then
        return loss.item()


def _probe_hook(parts: Components, batches: Batches, embed: Callable, drift: Drift, config: TrainConfig
                ) -> Callable[[int], None]:
    """step -> None: records the active latent probe's checkpoint at that step (ldbench.models.probe); a no-op
    without one, or for batches that are not text-conditioned captions (the instruct editor's)."""
    from ldbench.models.probe import active_probe

    probe = active_probe()
    if probe is None or not isinstance(batches, CaptionBatches):
        return lambda step: None
    at = set(probe.settings.at(config.steps))
    n_captions = len(batches.caption_index)
    captions = batches.caption_index[torch.arange(probe.settings.samples) % n_captions]
    shape = tuple(batches.data.latent_mean.shape[1:])

    def hook(step: int) -> None:
        if step in at:
            probe.record(step, parts, embed, captions, shape, drift)

    return hook


def train_denoiser(parts: Components, data: TrainData | Batches, trainable: list[torch.nn.Parameter],
                   drift: Drift | None, config: TrainConfig,
                   after_step: Callable[[], None] | None = None) -> list[float]:
    """Train `trainable` (a subset of parts.unet / parts.text_encoder parameters) for config.steps
    optimizer steps on `data` (TrainData, or any Batches). `after_step`: called after each optimizer step
    (e.g. to restore embedding rows that must not change), before the gradients are cleared.

    Training runs through Hugging Face accelerate (autocast, loss scaling for fp16, accumulation); each
    of an optimizer step's micro-batches makes the random draws one step without accumulation would,
    from one CPU generator, so the draws depend only on the seed. With mixed_precision "no" and one
    micro-batch per step the arithmetic is exactly the plain PyTorch loop's (accelerate divides the loss
    by 1 and adds no autocast). Returns the loss per optimizer step (the mean over its micro-batches).
    Deterministic for a seed on CPU.
    """
    unet, text_encoder, scheduler = parts.unet, parts.text_encoder, parts.scheduler
    device = next(unet.parameters()).device
    if config.mixed_precision == "fp16" and device.type != "cuda":
        raise UserError("mixed_precision fp16 needs a CUDA GPU; use bf16 on CPU")
    gen = torch.Generator().manual_seed(config.seed)
    batches = CaptionBatches(data) if isinstance(data, TrainData) else data
    embed = _caption_embedder(parts, batches.vocab, config.train_text_encoder, device)
    _freeze_all_but(parts, trainable)
    unet.train()
    checkpointing = use_checkpointing(config.gradient_checkpointing, device)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    text_encoder.train(config.train_text_encoder)
    accelerator = _accelerator(config.mixed_precision, config.gradient_accumulation_steps, cpu=device.type == "cpu")
    # Only the optimizer is prepared: preparing a module for mixed precision patches its forward with
    # autocast in place, which would outlive training (sampling after it would run in bf16/fp16); the
    # forward passes run under accelerator.autocast() instead. The modules stay where they are.
    opt = accelerator.prepare(torch.optim.AdamW(trainable, lr=config.lr, weight_decay=1e-2))
    run = _Run(unet, embed, batches, accelerator, opt, gen, drift or NO_DRIFT, config, after_step)
    losses, log = [], _tracked(accelerator, config)
    probe = _probe_hook(parts, batches, embed, run.drift, config)
    probe(0)
    for _ in progress_bar(range(config.steps), config.desc, quiet=config.quiet):
        micro = [run.micro_step(scheduler, device) for _ in range(config.gradient_accumulation_steps)]
        losses.append(sum(micro) / len(micro))
        if log is not None:
            log(len(losses), losses[-1])
        probe(len(losses))
    if log is not None:
        accelerator.end_training()
    if checkpointing:
        unet.disable_gradient_checkpointing()
    unet.eval()
    text_encoder.eval()
    for p in trainable:
        p.requires_grad_(False)
    return losses
