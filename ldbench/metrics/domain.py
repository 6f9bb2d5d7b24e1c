"""The offline `domain` feature extractor: a small CNN trained on the benchmark's own images.

It is NOT Inception: distances on its features are FD / KD, never FID / KID. It exists so that the
benchmark runs fully offline and has a feature space that knows the medical attributes (it is trained
to predict them). Weights are a safetensors file (no pickle) whose metadata says how they were made.

Input: one-channel 64 x 64 images in [0, 1]; other sizes are resized with torch bilinear antialias.
Features: the 64-d layer before the heads. Inference runs in float64, so the batch size does not
change the features beyond rounding at the 1e-12 level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ldbench.errors import UserError
from ldbench.fsutil import atomic_write
from ldbench.hashing import sha256_file
from ldbench.metrics.extractor_base import (  # noqa: F401  (check_images and RANGE_TOLERANCE re-exported)
    EXTRACTORS,
    RANGE_TOLERANCE,
    check_batch_size,
    check_image_shape,
    check_images,
    describe_fields,
    unit_range,
)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "domain-embedded.safetensors"
INPUT_SIZE = 64
FEATURE_DIM = 64
FORMAT = "ldbench-domain-net/1"
TRAIN_COMMAND = "ldbench extractors train-domain"
def to_input(images: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, H, W) in [0, 1] -> (N, 1, 64, 64) tensor; other sizes resized (bilinear, antialias)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(dtype)[:, None]
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(
            x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
    return x


@dataclass(frozen=True)
class HeadSpec:
    """One prediction head: `categorical` (cross-entropy over `classes`) or `regression` (MSE on
    (y - mean) / std)."""

    name: str
    kind: str
    classes: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def out_dim(self) -> int:
        return len(self.classes) if self.kind == "categorical" else 1


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, c_out), c_out),
        nn.ReLU(inplace=True),
    )


class DomainNet(nn.Module):
    """1 x 64 x 64 -> conv/GroupNorm/ReLU blocks down to 4 x 4 -> global average pool -> 64-d features
    (Linear + SiLU) -> one linear head per label."""

    def __init__(
        self,
        heads: Sequence[HeadSpec] = (),
        widths: Sequence[int] = (16, 32, 64, 128),
        feature_dim: int = FEATURE_DIM,
    ) -> None:
        super().__init__()
        self.head_specs = tuple(heads)
        self.widths = tuple(int(w) for w in widths)
        self.feature_dim = int(feature_dim)
        # a stride-2 stem, then per stage a widening conv and a stride-2 conv: 64 -> 32 -> 16 -> 8 -> 4
        layers: list[nn.Module] = [_block(1, self.widths[0], 2)]
        c_in = self.widths[0]
        for w in self.widths[1:]:
            layers.append(_block(c_in, w, 1))
            layers.append(_block(w, w, 2))
            c_in = w
        self.trunk = nn.Sequential(*layers)
        self.embed = nn.Sequential(nn.Linear(c_in, self.feature_dim), nn.SiLU())
        self.heads = nn.ModuleDict({h.name: nn.Linear(self.feature_dim, h.out_dim) for h in self.head_specs})
        self.meta: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {
            "widths": list(self.widths),
            "feature_dim": self.feature_dim,
            "heads": [asdict(h) for h in self.head_specs],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DomainNet:
        heads = [HeadSpec(**{**h, "classes": tuple(h.get("classes", ()))}) for h in config.get("heads", [])]
        return cls(heads, config["widths"], config["feature_dim"])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return self.embed(h.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.features(x)
        return {name: head(z) for name, head in self.heads.items()}


# --- training (ldbench.metrics.domain_training) ----------------------------------------------------


def train_domain_net(*args: Any, **kwargs: Any) -> DomainNet:
    """ldbench.metrics.domain_training.train_domain_net: attribute, dataset and realism heads."""
    from ldbench.metrics.domain_training import train_domain_net as train

    return train(*args, **kwargs)


# --- persistence (safetensors only) -------------------------------------------------------------


def save_domain_net(net: DomainNet, path: Path, meta: dict) -> None:
    """Write the weights and their description (config + `meta`, JSON in the safetensors metadata),
    atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(net.config(), sort_keys=True),
        "meta": json.dumps({**net.meta, **meta}, sort_keys=True, default=str),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_domain_net(path: Path) -> DomainNet:
    """Read weights written by save_domain_net; `net.meta` holds their description."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"domain extractor weights {path} not found; make them with `{TRAIN_COMMAND}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}, expected {FORMAT!r}")
        net = DomainNet.from_config(json.loads(metadata["config"]))
        net.load_state_dict(tensors, strict=True)
        net.meta = json.loads(metadata.get("meta", "{}"))
    except UserError:
        raise
    except Exception as exc:  # safetensors, JSON and state-dict errors all mean: not our weights file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: not a readable domain extractor weights file ({msg}); remake it with `{TRAIN_COMMAND}`"
        ) from None
    net.eval()
    return net


# --- the `domain` feature extractor ------------------------------------------------------------


@EXTRACTORS.register("domain")
class DomainExtractor:
    """Offline DomainNet (64-d), trained on the benchmark's images: FD/KD, not FID/KID (`ldbench extractors train-domain`)."""

    name = "domain"
    family = "domain"
    resize_policy = f"bilinear-antialias-{INPUT_SIZE}"
    channel_policy = "gray"
    dim = FEATURE_DIM
    compute_dtype = "float64"

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | None = None) -> None:
        path = Path(weights_path).expanduser() if weights_path else DEFAULT_WEIGHTS
        net = load_domain_net(path)  # UserError naming `ldbench extractors train-domain` when missing
        if net.feature_dim != self.dim:
            raise UserError(f"{path}: {net.feature_dim}-d domain features, expected {self.dim}")
        self.fingerprint = sha256_file(path)
        self.weights_path = path
        self.weights_meta = dict(net.meta)
        self.device = torch.device(device or "cpu")
        # float64 inference: features do not depend on the batch size beyond 1e-12-level rounding
        self._net = net.to(self.device, torch.float64).eval()

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                batch = to_input(unit_range(x[s : s + batch_size]), torch.float64).to(self.device)
                out[s : s + len(batch)] = self._net.features(batch).to("cpu").numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return describe_fields(self, self.compute_dtype)
