"""What the transformers-based extractors (`dinov2`, `clip`) share: local weights only (a directory saved
with save_pretrained, named by an option or an environment variable; nothing is downloaded), their
fingerprint, and the resize / normalise / embed loop. Each family module (metrics.dinov2, metrics.clip)
says how its model is read and embedded."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.metrics.extractor_base import check_batch_size, check_image_shape, describe_fields, unit_range

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_dir_fingerprint(directory: Path) -> str:
    """SHA-256 over (name, SHA-256) of config.json and every weight file in a transformers directory."""
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json"))
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise UserError(f"{directory}: no weight files (*.safetensors / *.bin) in this directory")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


class TransformersExtractor:
    family = ""
    env = ""
    example = ""
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_policy = "gray-repeat-rgb"
    compute_dtype = "float32"

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | None = None) -> None:
        raw = weights_path or os.environ.get(self.env)
        if not raw:
            raise UserError(
                f"the {self.name} extractor needs local weights: a transformers directory (e.g. {self.example} "
                f"saved with save_pretrained) given as option weights_path (--weights DIR) or ${self.env}"
            )
        path = Path(raw).expanduser()
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"{self.name} weights {path}: not a transformers model directory with config.json "
                            f"(set option weights_path / --weights or ${self.env})")
        from transformers import AutoModel

        self.fingerprint = weights_dir_fingerprint(path)
        try:
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{self.name} weights {path}: cannot load with transformers ({first})") from None
        self.weights_path = path
        self.device = torch.device(device or "cpu")
        self._model = model.to(self.device).eval()
        self._setup(model.config)
        self.resize_policy = f"torch-bicubic-antialias-{self.size}-{self.norm_name}"

    def _setup(self, config: Any) -> None:
        raise NotImplementedError

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                t = torch.from_numpy(unit_range(x[s : s + batch_size])).to(torch.float32)[:, None]
                if t.shape[-2:] != (self.size, self.size):
                    t = torch.nn.functional.interpolate(t, size=(self.size, self.size), mode="bicubic",
                                                        antialias=True, align_corners=False).clamp(0, 1)
                t = ((t.expand(-1, 3, -1, -1) - mean) / std).to(self.device)
                out[s : s + len(t)] = self._embed(t).to("cpu", torch.float64).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return describe_fields(self, self.compute_dtype)
