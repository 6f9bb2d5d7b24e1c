"""Fine-tuning methods: one registry, one file per method, all over the shared loop
(ldbench.models.training). Each method declares its own options dataclass (`options_class`), a
TrainingOptions with that method's fields added; `method_options` builds and checks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ldbench import validate as v
from ldbench.errors import UserError
from ldbench.models import Components
from ldbench.models.training import TrainConfig, TrainData, check_training_options
from ldbench.registry import Registry

if TYPE_CHECKING:
    import torch

    from ldbench.config import Component
    from ldbench.drift import Drift


@dataclass(frozen=True)
class TrainingOptions:
    """Training hyperparameters every method has; every value is recorded in each result's provenance.

    steps              optimizer steps (not micro-batches), whatever gradient_accumulation_steps is.
    batch_size         samples per forward pass (micro-batch).
    lr                 AdamW learning rate.
    checkpoint         load instead of train: the method's trained weights made elsewhere, either one
                       path for every cell or a mapping from δ (as written in the suite's drifts, e.g.
                       "0.0", "0.1") to a path. A path is a .safetensors file of what the method trains
                       (as ldbench saves it) or, for `finetune`, a diffusers pipeline / UNet directory.
                       Its SHA-256 goes into the cache key and provenance; nothing is trained.
    mixed_precision    "no" (fp32, the default: bit-identical to ldbench's results before accelerate),
                       "bf16" or "fp16": the forward passes run under accelerate's autocast in that
                       dtype while the trained weights and optimizer state stay fp32 (master weights),
                       to save memory and time on GPUs. fp16 (with loss scaling) needs a CUDA GPU; on
                       CPU use bf16. Results differ slightly from fp32, so it is part of the cache key.
    gradient_accumulation_steps
                       micro-batches whose gradients are summed (each loss divided by this number)
                       before one optimizer step, so the effective batch is batch_size x
                       gradient_accumulation_steps without the memory of one large batch. The i-th
                       micro-batch of a run makes the random draws the i-th step of a run without
                       accumulation would (same seed); the loss recorded per optimizer step is the
                       mean over its micro-batches.
    gradient_checkpointing
                       "auto" (default: on when the UNet is on a CUDA GPU, off on CPU), true or false:
                       recompute the UNet's activations in the backward pass instead of keeping them
                       (unet.enable_gradient_checkpointing()), for Stable Diffusion scale on a GPU. The
                       numbers are the same with and without it (a test checks the losses on the tiny
                       model), so it is not in the cache key at "auto". Attention needs no option: diffusers'
                       default processor (AttnProcessor2_0) calls torch's scaled_dot_product_attention,
                       which picks its memory-efficient / flash kernels on CUDA (xformers is not used).
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-4
    checkpoint: str | dict = ""
    mixed_precision: str = "no"
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: str | bool = "auto"

    def __post_init__(self) -> None:
        check_training_options(self.mixed_precision, self.gradient_accumulation_steps, self.gradient_checkpointing)
        v.positive_int(self.steps, "method option steps", example=300)
        v.positive_int(self.batch_size, "method option batch_size", example=16)
        v.positive_float(self.lr, "method option lr", example=2e-4)
        _check_checkpoint(self.checkpoint)

    def train_config(self, seed: int, quiet: bool, desc: str, **extra) -> TrainConfig:
        """The loop's TrainConfig from these options (one place, so no method forgets a field)."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, seed=seed,
                           mixed_precision=self.mixed_precision,
                           gradient_accumulation_steps=self.gradient_accumulation_steps,
                           gradient_checkpointing=self.gradient_checkpointing, desc=desc, quiet=quiet, **extra)


def _check_checkpoint(checkpoint) -> None:
    if isinstance(checkpoint, str):
        return
    if not isinstance(checkpoint, dict) or not all(isinstance(p, str) and p for p in checkpoint.values()):
        raise UserError(f"method option checkpoint must be a path or a mapping from δ to a path, got {checkpoint!r}")


def check_token(options, *names: str) -> None:
    """Text options that must be non-empty (a token, an identifier)."""
    for name in names:
        v.string(getattr(options, name), f"method option {name}")
        if not getattr(options, name).strip():
            raise UserError(f"method option {name} must not be empty")


class Method(Protocol):
    name: str
    description: str  # one line, shown by the CLI
    trains: str  # one line: what this method changes in the base model
    options_class: type[TrainingOptions]  # its options (TrainingOptions and its own fields)

    def train(self, parts: Components, data: TrainData, drift: Drift, options: TrainingOptions, seed: int,
              quiet: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
        """Train in place; return (the trained tensors only, the loss per step)."""
        ...

    def apply(self, parts: Components, trained: dict[str, torch.Tensor]) -> None:
        """Load trained tensors back into freshly loaded base components.

        A method whose prompts need a special token (textual-inversion, dreambooth, custom-diffusion)
        also sets parts.prompt, a caption -> prompt function, in train and in apply; editors build
        every prompt through `ldbench.models.text.prompt_for(parts, caption)`.
        """
        ...

    # Optional: prepare(parts, data, options, seed, quiet) -> TrainData, data made from the base model
    # before training (dreambooth's class-prior images); the finetune stage calls it and caches the result.


METHODS: Registry[Method] = Registry("method")


def method_options(spec: Component) -> TrainingOptions:
    """A suite's `{name, options}` for a method as that method's options, checked (UserError otherwise)."""
    return METHODS.options(spec.name, spec.options)


def _register_builtin() -> None:
    from ldbench.methods import custom_diffusion, dreambooth, finetune, lora, textual_inversion  # noqa: F401


_register_builtin()
