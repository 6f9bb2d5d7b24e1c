"""Options and construction of the timm classifiers behind the oracles and the AUC utility protocol.

timm is the registry of architectures here (no ldbench Registry): any `timm.list_models()` name works.
Every model reads one grayscale channel (`in_chans=1`) normalised with mean 0.5 and std 0.5, and has
one output (the logit for a binary task, the standardised value for a regression).

Pretrained weights are loaded from a local file only (the benchmark runs offline). timm's own route
(`pretrained=True, pretrained_cfg_overlay=dict(file=...)`) decides what to adapt from the *declared*
pretrained config (3 input channels, 1000 classes), so it would drop a matching 1-output head and warn
about 1-channel checkpoints; `load_pretrained_weights` adapts by the tensors' actual shapes instead:
a multi-channel first conv is summed to one channel (timm's `adapt_input_conv`), a head of another
shape is left at its random init, and anything else that does not fit is a UserError.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ldbench.errors import UserError

MEAN, STD = 0.5, 0.5  # input normalisation of every classifier: [0, 1] -> [-1, 1]
TASKS = ("binary", "regression")


def _timm():
    """timm, imported on first use: it imports torchvision, which imports torch._dynamo (about 3 s on 2 cores),
    and a run whose every stage is cached never builds a classifier."""
    import timm

    return timm


def _close_timm_names(name: str, n: int = 5) -> list[str]:
    """A few timm names close to `name`, for the error message of a typo."""
    names = _timm().list_models()
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    if not close:
        close = _timm().list_models(f"*{name}*")[:n]
    return close


def check_model_name(name: str) -> str:
    """`name` if timm knows it, else a UserError suggesting close timm names."""
    if not isinstance(name, str) or not name or not _timm().is_model(name):
        close = _close_timm_names(name) if isinstance(name, str) and name else []
        hint = f" close timm names: {', '.join(close)}" if close else " see timm.list_models()"
        raise UserError(f"unknown classifier model {name!r}; give a timm model name;{hint}")
    return name


def _check_int(value: object, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"classifier {what} must be an integer >= {minimum}, got {value!r}")


def _check_real(value: object, what: str, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and (value > 0 if positive else value >= 0)  # type: ignore[operator]
    if not ok:
        raise UserError(f"classifier {what} must be a number {'> 0' if positive else '>= 0'}, got {value!r}")


@dataclass(frozen=True)
class ClassifierOptions:
    """How a classifier is built and trained. The values are checked on creation, so bad config fails before
    work starts; whether timm knows the model's name is checked by `check_model_name`, which a run calls
    before it builds its first stage (ldbench.runner.run) and `create_model` calls again.

    `epochs=0` is allowed: it evaluates the initial (e.g. pretrained) weights. `batch_size` is at
    least 2 because BatchNorm cannot train on a single sample.
    `pretrained_weights`: a local timm checkpoint (.safetensors, or a torch file read with
    weights_only=True); empty means random init.
    """

    model: str = "resnet18"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pretrained_weights: str = ""
    augment: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise UserError(f"classifier model must be a timm model name, got {self.model!r}")
        _check_int(self.epochs, "epochs", 0)
        _check_int(self.batch_size, "batch_size", 2)  # BatchNorm needs 2 samples per batch
        _check_real(self.lr, "lr", positive=True)
        _check_real(self.weight_decay, "weight_decay", positive=False)
        if not isinstance(self.pretrained_weights, str):
            raise UserError(
                f"classifier pretrained_weights must be a file path string (or empty), got {self.pretrained_weights!r}"
            )
        if not isinstance(self.augment, bool):
            raise UserError(f"classifier augment must be true or false, got {self.augment!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierOptions:
        return cls(**data)


def _first_conv_and_head(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    first, head = cfg.get("first_conv"), cfg.get("classifier")
    as_tuple = lambda x: (x,) if isinstance(x, str) else tuple(x or ())  # noqa: E731
    return as_tuple(first), as_tuple(head)


def load_pretrained_weights(model: nn.Module, path: str) -> None:
    """Load a local timm checkpoint into `model`, adapting the first conv and the head by shape."""
    file = Path(path)
    if not file.is_file():
        raise UserError(
            f"classifier pretrained_weights {path!r}: no such file; give a local timm checkpoint "
            "(.safetensors or torch file) or leave it empty for random init"
        )
    try:
        # handles .safetensors by suffix, torch files with weights_only=True, and wrapped checkpoints
        state = dict(_timm().models.load_state_dict(str(file), weights_only=True))
    except Exception as exc:  # noqa: BLE001  (any failure to read means: not a usable checkpoint)
        raise UserError(
            f"classifier pretrained_weights {path!r}: not a readable checkpoint ({type(exc).__name__}: {exc}); "
            "give a .safetensors or torch state-dict file"
        ) from None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"classifier pretrained_weights {path!r}: not a state dict of tensors")

    own = model.state_dict()
    first_convs, heads = _first_conv_and_head(model)
    for name in first_convs:
        key = f"{name}.weight"
        if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] != own[key].shape[1]:
            state[key] = _timm().models.adapt_input_conv(own[key].shape[1], state[key])
    dropped = set()
    for name in heads:
        for key in (f"{name}.weight", f"{name}.bias"):
            if key in state and key in own and state[key].shape != own[key].shape:
                del state[key]  # another number of classes: keep the random head
                dropped.add(key)
    bad_shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in dropped]
    if bad_shape or unexpected or missing:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("wrong shape", bad_shape), ("unexpected", unexpected), ("missing", missing))
            if keys
        )
        raise UserError(
            f"classifier pretrained_weights {path!r} do not fit model {type(model).__name__} ({detail}); "
            "give a checkpoint of the same timm architecture as the classifier model"
        )
    model.load_state_dict(state, strict=False)


def has_fixed_input_size(name: str) -> bool:
    """Whether timm builds `name` for one input size only (e.g. ViTs): it then gets `img_size`."""
    return bool(_timm().get_pretrained_cfg_value(name, "fixed_input_size"))


def create_model(
    options: ClassifierOptions, image_shape: tuple[int, int], load_weights: bool = True
) -> nn.Module:
    """A 1-channel, 1-output timm model for images of `image_shape` (H, W).

    Models with a fixed input size (e.g. ViTs) are built for `image_shape`; convolutional models
    accept any size. Seed the torch RNG before calling: the random init comes from it.
    """
    name = check_model_name(options.model)
    kwargs: dict[str, Any] = {"in_chans": 1, "num_classes": 1}
    if has_fixed_input_size(name):
        kwargs["img_size"] = tuple(int(s) for s in image_shape)
    try:
        model = _timm().create_model(name, pretrained=False, **kwargs)
    except Exception as exc:  # noqa: BLE001  (timm raises many types for unsupported combinations)
        raise UserError(
            f"classifier model {name!r} cannot be built for 1-channel {image_shape[0]}x{image_shape[1]} images "
            f"({type(exc).__name__}: {exc}); choose another timm model"
        ) from None
    if load_weights and options.pretrained_weights:
        load_pretrained_weights(model, options.pretrained_weights)
    return model
