"""Training of the offline DomainNet (ldbench.metrics.domain): attributes, datasets and realism.

One network learns, from the 64-d feature layer:
- every label column (regression for floats, cross-entropy otherwise); a missing value (NaN / None)
  leaves that row out of that head, so several datasets with different labels train one net
  (the command prefixes each column with its dataset and adds a `dataset` column);
- realism: each batch is doubled with a corrupted copy, and two heads tell clean images from a broad
  random family of corruptions (`realism_kind`) and regress their severity in [0, 1]
  (`realism_severity`, 0 = clean), so that features move further from real images the stronger the
  damage. The training family (TRAIN_CORRUPTIONS) is deliberately broader than, and parameterised
  differently from, the disturbances the extractor is validated on (ldbench.metrics.disturbances):
  Gaussian or uniform noise, white or spatially correlated; blur by a Gaussian of random sigma or by
  down- and up-sampling; 1-6 occluding boxes of random size, position and fill value; smooth random
  elastic warps (a 3 x 3 to 8 x 8 displacement grid, upsampled); local twists (1-3 rotations per image
  about random centres anywhere in the image, random radii and sign, the angle falling off as a Gaussian
  of the distance, log-uniform in the severity); impulse noise with random or saturated values.
  No swirl (skimage's exponential fall-off about a near-central point, at the validated strengths),
  no other-dataset images, and severities are drawn continuously, not at the test's levels. The
  training data are the train splits only; the validation scores the val split (topped up with new
  subjects) against the test split.

The shipped weights (ldbench/metrics/weights/domain-embedded.safetensors) are reproduced by

    OMP_NUM_THREADS=1 ldbench extractors train-domain --seed 2 --epochs 20

(both embedded datasets, the default; 263 s of training on one CPU thread, with a second training
running beside it on a 2-core machine; bit-identical only at the same thread count).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ldbench.errors import UserError
from ldbench.metrics.domain import DomainNet, HeadSpec, check_images, to_input

TRAIN_CORRUPTIONS = ("noise", "blur", "occlude", "warp", "twist", "impulse")
KIND_HEAD, SEVERITY_HEAD = "realism_kind", "realism_severity"


def _missing(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        return np.isnan(col)
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in col.tolist()], dtype=bool)


def make_targets(labels: dict[str, np.ndarray], n: int) -> tuple[list[HeadSpec], dict, dict]:
    """Head specs, target tensors and present-masks of the label columns (missing rows masked out)."""
    specs, tensors, masks = [], {}, {}
    for name in sorted(labels):
        col = np.asarray(labels[name])
        if len(col) != n:
            raise UserError(f"label column {name!r} has {len(col)} rows for {n} images")
        present = ~_missing(col)
        if col.dtype.kind == "f":
            if not np.all(np.isfinite(col[present])) or not present.any():
                raise UserError(f"label column {name!r} contains infinite values or no values")
            vals = col[present].astype(np.float64)
            mean, std = float(vals.mean()), float(vals.std())
            std = std if std > 0 else 1.0
            specs.append(HeadSpec(name, "regression", (), mean, std))
            tensors[name] = torch.from_numpy(np.where(present, (col - mean) / std, 0.0).astype(np.float32))
        else:
            values = np.array([str(v) for v in col.tolist()])
            classes = tuple(sorted(set(values[present].tolist())))
            if len(classes) < 2:
                raise UserError(f"label column {name!r} has a single value {classes[:1]}: nothing to learn")
            index = {c: i for i, c in enumerate(classes)}
            specs.append(HeadSpec(name, "categorical", classes))
            tensors[name] = torch.tensor([index.get(v, 0) for v in values.tolist()], dtype=torch.long)
        masks[name] = torch.from_numpy(present)
    if not specs:
        raise UserError("training the domain extractor needs at least one label column")
    return specs, tensors, masks


# --- the training corruption family (torch, per-sample severity s in (0, 1]) ---------------------


def _u(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def _noise(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = len(x)
    gauss = torch.randn(x.shape, generator=gen)
    unif = (_u(gen, *x.shape) - 0.5) * 12**0.5
    n = torch.where(_u(gen, b, 1, 1, 1) < 0.5, gauss, unif)
    smooth = F.avg_pool2d(n, 3, 1, 1, count_include_pad=False) * 3.0  # about unit std again
    n = torch.where(_u(gen, b, 1, 1, 1) < 0.5, n, smooth)
    return x + 0.3 * s.view(-1, 1, 1, 1) * n


def _gauss_kernel(sigma: torch.Tensor, radius: int = 9) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def _blur(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    k = _gauss_kernel(0.3 + 3.7 * s)
    r = k.shape[1] // 2
    y = x.reshape(1, b, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=b)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=b).reshape(b, 1, h, w)
    out = []
    for i in range(b):  # the other half of the family: down- and up-sampling by 1 + 4 s
        size = max(4, int(round(h / (1.0 + 4.0 * float(s[i])))))
        small = F.interpolate(x[i : i + 1], size=(size, size), mode="area")
        out.append(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))
    return torch.where(_u(gen, b, 1, 1, 1) < 0.5, y, torch.cat(out))


def _occlude(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    out = x.clone()
    for i in range(b):
        count = 1 + int(float(s[i]) * 5.999)
        for _ in range(count):
            bh, bw = (0.08 + 0.27 * _u(gen, 2) * (0.5 + 0.5 * float(s[i]))).tolist()
            th, tw = max(1, int(bh * h)), max(1, int(bw * w))
            top = int(_u(gen, 1) * (h - th + 1))
            left = int(_u(gen, 1) * (w - tw + 1))
            value = 0.0 if float(_u(gen, 1)) < 0.5 else float(_u(gen, 1))
            out[i, :, top : top + th, left : left + tw] = value
    return out


def _warp(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    cells = int(3 + _u(gen, 1) * 6)  # a 3 x 3 to 8 x 8 displacement grid, upsampled
    field = torch.randn(b, 2, cells, cells, generator=gen)
    scale = 0.2 * s.view(-1, 1, 1, 1) * 4.0 / cells
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True) * scale
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    grid = torch.stack([xs, ys], dim=-1)[None] + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _twist(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """1-3 local rotations per image: random centres anywhere in the image, random radii (a tenth to
    two thirds of the side), random sign, and a rotation angle that falls off as a Gaussian of the
    distance to the centre, peaking at 0.25 * 16**s radians (0.29 to 4, log-uniform in the severity)."""
    b, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    gx, gy = xs[None].expand(b, h, w).clone(), ys[None].expand(b, h, w).clone()
    count = 1 + (_u(gen, b) * 2.999).long()
    for j in range(3):
        on = (count > j).float().view(-1, 1, 1)
        cx, cy = (_u(gen, b) * 1.6 - 0.8).view(-1, 1, 1), (_u(gen, b) * 1.6 - 0.8).view(-1, 1, 1)
        radius = (0.2 + 1.13 * _u(gen, b)).view(-1, 1, 1)
        sign = torch.where(_u(gen, b) < 0.5, -1.0, 1.0).view(-1, 1, 1)
        peak = sign * 0.25 * 16.0 ** s.view(-1, 1, 1) * on
        dx, dy = gx - cx, gy - cy
        theta = peak * torch.exp(-(dx**2 + dy**2) / radius**2)
        c, si = torch.cos(theta), torch.sin(theta)
        gx, gy = cx + c * dx - si * dy, cy + si * dx + c * dy
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _impulse(x: torch.Tensor, s: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = len(x)
    hit = _u(gen, *x.shape) < 0.3 * s.view(-1, 1, 1, 1)
    saturated = (_u(gen, *x.shape) < 0.5).to(x.dtype)
    random = _u(gen, *x.shape)
    values = torch.where(_u(gen, b, 1, 1, 1) < 0.5, saturated, random)
    return torch.where(hit, values, x)


_CORRUPT = {"noise": _noise, "blur": _blur, "occlude": _occlude, "warp": _warp, "twist": _twist,
            "impulse": _impulse}


def corrupt(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A corrupted copy of the batch `x` (B, 1, H, W): per image a random kind (1..5, 0 is clean) and a
    severity s ~ U(0.05, 1). Returns (images clipped to [0, 1], kind, severity)."""
    b = len(x)
    kind = torch.randint(0, len(TRAIN_CORRUPTIONS), (b,), generator=gen)
    sev = 0.05 + 0.95 * _u(gen, b)
    out = x.clone()
    for k, name in enumerate(TRAIN_CORRUPTIONS):
        sel = (kind == k).nonzero()[:, 0]
        if len(sel):
            out[sel] = _CORRUPT[name](x[sel], sev[sel], gen)
    return out.clamp(0.0, 1.0), kind + 1, sev


def _realism_specs() -> list[HeadSpec]:
    return [HeadSpec(KIND_HEAD, "categorical", ("clean", *TRAIN_CORRUPTIONS)),
            HeadSpec(SEVERITY_HEAD, "regression", (), 0.0, 1.0)]


def _augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips and a small gain jitter: the features should not hinge on orientation or gain."""
    flip = torch.rand(len(xb), generator=gen) < 0.5
    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
    return xb * (1.0 + 0.1 * (torch.rand(len(xb), 1, 1, 1, generator=gen) - 0.5))


def _label_loss(out: dict, specs: list[HeadSpec], tensors: dict, masks: dict, idx: torch.Tensor) -> torch.Tensor:
    loss = torch.zeros(())
    for spec in specs:
        m = masks[spec.name][idx]
        if not bool(m.any()):
            continue
        pred, y = out[spec.name][: len(idx)][m], tensors[spec.name][idx][m]
        loss = loss + (F.cross_entropy(pred, y) if spec.kind == "categorical" else F.mse_loss(pred[:, 0], y))
    return loss


def _realism_loss(out: dict, n_clean: int, kind: torch.Tensor, sev: torch.Tensor, weight: float) -> torch.Tensor:
    kinds = torch.cat([torch.zeros(n_clean, dtype=torch.long), kind])
    sevs = torch.cat([torch.zeros(n_clean), sev])
    return weight * (F.cross_entropy(out[KIND_HEAD], kinds) + 4.0 * F.mse_loss(out[SEVERITY_HEAD][:, 0], sevs))


@dataclass(frozen=True)
class DomainTrainingOptions:
    """How train_domain_net trains: epochs of shuffled batches, AdamW (lr, weight_decay) under a one-cycle
    schedule; with `realism`, a corrupted copy of each batch and the kind/severity heads, weighted by
    `realism_weight`."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    realism: bool = True
    realism_weight: float = 1.0


@dataclass
class _Training:
    """One run's state: the net, its optimiser and schedule, the shared random stream and the targets."""

    net: DomainNet
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    specs: list[HeadSpec]
    tensors: dict
    masks: dict


def train_domain_net(images: np.ndarray, labels: dict[str, np.ndarray], seed: int,
                     options: DomainTrainingOptions = DomainTrainingOptions(),
                     log: Callable[[str], None] | None = None) -> DomainNet:
    """Train a DomainNet on `images` (N, H, W) in [0, 1] to predict every label column and, with
    `options.realism`, the kind and severity of random corruptions (module docstring).

    Deterministic for a given seed on CPU (same thread count); the global torch RNG is left untouched.
    """
    epochs, batch_size, lr = options.epochs, options.batch_size, options.lr
    if epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    x_np = check_images(images)
    n = len(x_np)
    if n < 2:
        raise UserError(f"training the domain extractor needs at least 2 images, got {n}")
    specs, tensors, masks = make_targets(labels, n)
    x = to_input(x_np, torch.float32)
    start, history = time.perf_counter(), []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainNet(specs + (_realism_specs() if options.realism else []))
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=options.weight_decay)
        steps = epochs * ((n + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
        run = _Training(net, opt, sched, gen, specs, tensors, masks)
        net.train()
        for epoch in range(epochs):
            history.append(_epoch(run, x, options))
            if log is not None:
                log(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
    net.eval()
    net.meta = {"seed": seed, "epochs": epochs, "n_images": n, "final_loss": history[-1], "realism": options.realism,
                "train_corruptions": ",".join(TRAIN_CORRUPTIONS) if options.realism else "",
                "train_seconds": round(time.perf_counter() - start, 1)}
    return net


def _epoch(run: _Training, x: torch.Tensor, options: DomainTrainingOptions) -> float:
    """One pass over `x` in shuffled batches; the mean loss per image."""
    n, batch_size = len(x), options.batch_size
    perm, total = torch.randperm(n, generator=run.gen), 0.0
    for s in range(0, n, batch_size):
        idx = perm[s : s + batch_size]
        xb = _augment(x[idx], run.gen)
        if options.realism:  # a corrupted copy of the batch
            bad, kind, sev = corrupt(xb, run.gen)
            out = run.net(torch.cat([xb, bad]))
            loss = _label_loss(out, run.specs, run.tensors, run.masks, idx)
            loss = loss + _realism_loss(out, len(idx), kind, sev, options.realism_weight)
        else:
            loss = _label_loss(run.net(xb), run.specs, run.tensors, run.masks, idx)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        total += float(loss.detach()) * len(idx)
    return total / n
