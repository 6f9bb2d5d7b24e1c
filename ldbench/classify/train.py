"""Training a timm classifier on grayscale images, and the trained classifier (predict / save / load).

Training is deterministic on CPU for a seed: the model init comes from `torch.manual_seed(seed)`
inside a forked RNG (the caller's global torch RNG is left untouched), and shuffling and augmentation
draw from their own `torch.Generator` seeded with the same seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score
from torch import nn

from ldbench.classify.models import MEAN, STD, TASKS, ClassifierOptions, create_model, has_fixed_input_size
from ldbench.device import current as current_device
from ldbench.errors import UserError
from ldbench.fsutil import atomic_write
from ldbench.progress import progress_bar

FORMAT = "ldbench-classifier/1"
_META_KEY = "ldbench"


def check_images(images: np.ndarray, what: str = "images", minimum: int = 1) -> np.ndarray:
    """`images` as float32 (N, H, W) in [0, 1], or a UserError saying what is wrong."""
    arr = np.asarray(images)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise UserError(
            f"classifier {what} must be a numeric (N, H, W) grayscale array, got shape {arr.shape} "
            f"dtype {arr.dtype}"
        )
    if len(arr) < minimum:
        raise UserError(f"classifier {what}: need at least {minimum} images, got {len(arr)}")
    arr = arr.astype(np.float32, copy=False)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3):
        raise UserError(
            f"classifier {what} must be finite values in [0, 1], got range "
            f"[{np.nanmin(arr):.4g}, {np.nanmax(arr):.4g}]; rescale them to [0, 1]"
        )
    return arr


def check_targets(targets: np.ndarray, n: int, task: str, what: str = "targets") -> np.ndarray:
    """Targets as float64 (N,): 0/1 with both classes for "binary", finite and not constant for "regression"."""
    if task not in TASKS:
        raise UserError(f"classifier task must be one of {', '.join(TASKS)}, got {task!r}")
    y = np.asarray(targets)
    if y.ndim != 1 or len(y) != n:
        raise UserError(
            f"classifier {what} must be a 1-D array of {n} values (one per image), got shape {y.shape}"
        )
    try:
        y = y.astype(np.float64)
    except (TypeError, ValueError):
        raise UserError(f"classifier {what} must be numbers, got dtype {np.asarray(targets).dtype}") from None
    if not np.all(np.isfinite(y)):
        raise UserError(f"classifier {what} contain NaN or infinite values; drop or fill those rows")
    if task == "binary":
        values = np.unique(y)
        if not np.all(np.isin(values, [0.0, 1.0])):
            raise UserError(f"binary classifier {what} must be 0/1, got values {values[:5].tolist()}")
        if len(values) < 2:
            raise UserError(
                f"binary classifier {what} hold a single class ({int(values[0])}) in {n} images; "
                "a classifier needs both classes"
            )
    elif np.std(y) == 0:
        raise UserError(f"regression {what} are all equal ({y[0]:.4g}); nothing to learn")
    return y


def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, 1, H, W) float32 tensor in [0, 1] (normalisation is applied after augmentation)."""
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).unsqueeze(1)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and integer shifts up to 1/16 of the image side (zero padded).

    Kept cheap and mild on purpose: the attributes (atrophy, opacities) are subtle, so strong
    geometric or intensity changes would destroy the signal the oracle must read.
    """
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    s = max(1, round(min(h, w) / 16))
    padded = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (b,), generator=gen).tolist()
    dx = torch.randint(0, 2 * s + 1, (b,), generator=gen).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches; a trailing single sample joins the previous batch (BatchNorm needs two)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat(batches[-2:])
        batches.pop()
    return batches


def _recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Set BatchNorm running statistics to the exact average over the training images (no augment).

    A short training run (a few dozen steps, typical here) leaves the exponential running averages
    dominated by their initial values and by the early, since-changed weights, so eval mode can
    disagree badly with train mode (we saw a separable task scored at AUC 0.07). Recomputing the
    statistics once with the final weights ("precise BN") removes that mismatch for a forward pass.
    """
    norms = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    with torch.no_grad():
        for idx in _batches(torch.arange(len(x)), batch_size):
            model(_normalise(x[idx]).to(next(model.parameters()).device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


def _val_metric(task: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    if task == "binary":
        return float(roc_auc_score(y_true.astype(bool), pred))
    return float(np.mean(np.abs(pred - y_true)))


@dataclass
class TrainedClassifier:
    """A trained classifier: everything needed to predict, save and reload it.

    `history`: "train_loss" (mean loss per epoch), "val_metric" (per epoch, empty without val data),
    "val_metric_name" ("auc" for binary, "mae" for regression, None without val data) and
    "best_epoch" (how many epochs the kept weights had trained: the best-val epoch, else the last).
    Regression models output standardised values; `target_mean`/`target_std` undo that.
    """

    task: str
    options: ClassifierOptions
    seed: int
    target_mean: float
    target_std: float
    image_shape: tuple[int, int]
    state_dict: dict[str, torch.Tensor]
    history: dict[str, Any]
    _module: nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def model_name(self) -> str:
        return self.options.model

    def module(self) -> nn.Module:
        """The torch model with these weights, in eval mode (built once, then cached)."""
        if self._module is None:
            # the throwaway random init must not move the caller's RNG
            with torch.random.fork_rng(devices=[]):
                model = create_model(self.options, self.image_shape, load_weights=False)
            try:
                model.load_state_dict(self.state_dict, strict=True)
            except RuntimeError as exc:
                raise UserError(
                    f"classifier weights do not fit timm model {self.model_name!r} ({str(exc).splitlines()[0]})"
                ) from None
            self._module = model.eval()
        return self._module.to(current_device())

    def predict(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
        """Probabilities of class 1 (binary) or values in target units (regression), float64 (N,)."""
        x = check_images(images, "images to predict", minimum=0)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        model = self.module()
        device = next(model.parameters()).device
        if tuple(x.shape[1:]) != tuple(self.image_shape) and has_fixed_input_size(self.model_name):
            raise UserError(
                f"classifier {self.model_name!r} was trained on {self.image_shape} images and needs that size, "
                f"got {tuple(x.shape[1:])}; resize the images"
            )
        outputs = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                batch = _normalise(_tensor(x[start : start + batch_size])).to(device)
                outputs.append(model(batch).reshape(-1).double().cpu())
        out = torch.cat(outputs)
        if self.task == "binary":
            return torch.sigmoid(out).numpy()
        return (out * self.target_std + self.target_mean).numpy()

    def metadata(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.model_name,
            "task": self.task,
            "options": self.options.to_dict(),
            "seed": self.seed,
            "target_mean": self.target_mean,
            "target_std": self.target_std,
            "image_shape": list(self.image_shape),
            "history": self.history,
        }

    def save(self, path: Path | str) -> None:
        """Write the weights as safetensors with every other field as JSON metadata (atomic)."""
        tensors = {k: v.detach().contiguous().clone() for k, v in self.state_dict.items()}
        meta = {_META_KEY: json.dumps(self.metadata())}
        atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: Path | str) -> TrainedClassifier:
        """Read a file written by `save`; a UserError naming the file if it is not one."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})[_META_KEY])
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118  (safe_open has no __iter__)
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            trained = cls(
                task=meta["task"],
                options=ClassifierOptions.from_dict(meta["options"]),
                seed=int(meta["seed"]),
                target_mean=float(meta["target_mean"]),
                target_std=float(meta["target_std"]),
                image_shape=(int(meta["image_shape"][0]), int(meta["image_shape"][1])),
                state_dict=state,
                history=meta["history"],
            )
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        except (OSError, SafetensorError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise UserError(
                f"{path}: not a readable ldbench classifier ({type(exc).__name__}: {exc}); retrain it"
            ) from None
        try:
            trained.module()  # fail here, naming the file, rather than at the first predict
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None
        return trained


def train_classifier(
    images: np.ndarray,
    targets: np.ndarray,
    task: str,
    options: ClassifierOptions,
    seed: int,
    quiet: bool = False,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> TrainedClassifier:
    """Train a 1-channel timm model on (N, H, W) images in [0, 1].

    task "binary": targets 0/1, BCE with logits on one output; predictions are probabilities.
    task "regression": float targets standardised by their train mean/std (so lr and loss scale do
    not depend on the unit), MSE; predictions are de-standardised.
    With `val` = (images, targets), the weights of the epoch with the best val metric (AUC up, MAE
    down) are kept, and the per-epoch curve is in `history`; without it the last epoch's are kept.
    """
    x, y, val_xy, seed = _checked_inputs(images, targets, task, options, seed, val)
    if task == "regression":
        target_mean, target_std = float(y.mean()), float(y.std())
    else:
        target_mean, target_std = 0.0, 1.0
    history: dict[str, Any] = {
        "train_loss": [],
        "val_metric": [],
        "val_metric_name": None if val_xy is None else ("auc" if task == "binary" else "mae"),
        "best_epoch": options.epochs,
    }
    trained = TrainedClassifier(
        task=task,
        options=options,
        seed=seed,
        target_mean=target_mean,
        target_std=target_std,
        image_shape=(int(x.shape[1]), int(x.shape[2])),
        state_dict={},
        history=history,
    )
    y_t = torch.from_numpy((y - target_mean) / target_std).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(options, trained.image_shape)  # initialised on the CPU (same weights on every device)
        model = model.to(torch.device(current_device()))
        best_state = _fit(trained, model, _tensor(x), y_t, val_xy, quiet)
    state = best_state if best_state is not None else model.state_dict()
    trained.state_dict = {k: v.detach().cpu().clone() for k, v in state.items()}
    trained._module = None  # rebuilt from the kept weights on first use
    return trained


def _checked_inputs(images: np.ndarray, targets: np.ndarray, task: str, options: ClassifierOptions, seed: int,
                    val: tuple[np.ndarray, np.ndarray] | None) -> tuple:
    """train_classifier's inputs checked: (images, targets, (val images, val targets) or None, seed)."""
    if not isinstance(options, ClassifierOptions):
        raise UserError(f"classifier options must be a ClassifierOptions, got {type(options).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise UserError(f"classifier seed must be an integer, got {seed!r}")
    x = check_images(images, "training images", minimum=2)
    y = check_targets(targets, len(x), task, "training targets")
    val_xy = None
    if val is not None:
        if not isinstance(val, tuple | list) or len(val) != 2:
            raise UserError("classifier val must be a pair (images, targets)")
        vx = check_images(val[0], "validation images", minimum=1)
        if vx.shape[1:] != x.shape[1:]:
            raise UserError(
                f"validation images are {vx.shape[1:]}, training images {x.shape[1:]}; use one size"
            )
        val_xy = (vx, check_targets(val[1], len(vx), task, "validation targets"))
    return x, y, val_xy, int(seed)


def _fit(trained: TrainedClassifier, model: nn.Module, x_t: torch.Tensor, y_t: torch.Tensor,
         val_xy: tuple[np.ndarray, np.ndarray] | None, quiet: bool) -> dict[str, torch.Tensor] | None:
    """Train `model` for trained.options.epochs epochs, appending to trained.history; the state of the best
    validation epoch (None without val data: the caller keeps the last). Runs inside the caller's forked
    RNG: batches and augmentations draw from their own CPU generator, whatever the device."""
    options, task, history = trained.options, trained.task, trained.history
    device = torch.device(current_device())
    loss_fn = nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss()
    gen = torch.Generator().manual_seed(trained.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    best_state, best_score = None, -math.inf
    for epoch in progress_bar(
        range(1, options.epochs + 1), f"train {options.model} ({task}, seed {trained.seed})", quiet=quiet
    ):
        model.train()
        total = 0.0
        for idx in _batches(torch.randperm(len(x_t), generator=gen), options.batch_size):
            xb = x_t[idx]
            if options.augment:
                xb = _augment(xb, gen)
            loss = loss_fn(model(_normalise(xb).to(device)).reshape(-1), y_t[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        history["train_loss"].append(total / len(x_t))
        if val_xy is not None or epoch == options.epochs:  # only evaluated weights need it
            _recalibrate_batchnorm(model, x_t, options.batch_size)
        if val_xy is not None:
            trained.state_dict, trained._module = model.state_dict(), model.eval()
            metric = _val_metric(task, val_xy[1], trained.predict(val_xy[0]))
            history["val_metric"].append(metric)
            score = metric if task == "binary" else -metric
            if score > best_score:
                best_score, history["best_epoch"] = score, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return best_state
