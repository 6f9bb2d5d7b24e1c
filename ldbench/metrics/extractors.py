"""Feature extractors: images (N, H, W) in [0, 1] -> float64 features (N, dim).

Every extractor says what it is (`describe()`): name, family, SHA-256 of its weights, resize and
channel policies, dimension, compute dtype. Those fields go into every record and cache key, and
reference statistics are only used with an extractor whose fields match (see metrics.stats).

- `inception`: torch-fidelity's TF-compatible Inception-v3 pool3 features (2048-d), with the weights
  file's SHA-256 pinned; the only family whose distances are called FID / KID.
- `domain`: the offline DomainNet (metrics.domain), trained on the benchmark's own images; FD / KD.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.metrics.domain import (
    DEFAULT_WEIGHTS,
    FEATURE_DIM,
    INPUT_SIZE,
    check_image_shape,
    load_domain_net,
    to_input,
    unit_range,
)
from ldbench.registry import Registry

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
INCEPTION_ENV = "LDBENCH_INCEPTION_WEIGHTS"


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str  # as shown in records: "inception", "inception-unverified", "domain"
    family: str  # "inception" or "domain": distances are called FID / KID only for "inception"
    fingerprint: str  # SHA-256 of the weights file
    resize_policy: str
    channel_policy: str
    dim: int

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W) float in [0, 1] -> (N, dim) float64; the batch size does not change the result."""
        ...

    def describe(self) -> dict[str, Any]: ...


EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")


def create_extractor(name: str, **options: Any) -> FeatureExtractor:
    """The registered extractor `name`, built with `options` (unknown options are a UserError)."""
    factory = EXTRACTORS.get(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise UserError(
            f"feature extractor {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(params))}"
        )
    return factory(**options)


def _describe(ex: Any, dtype: str) -> dict[str, Any]:
    return {
        "name": ex.name,
        "family": ex.family,
        "fingerprint": ex.fingerprint,
        "resize_policy": ex.resize_policy,
        "channel_policy": ex.channel_policy,
        "dim": ex.dim,
        "dtype": dtype,
    }


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")


# --- Inception (torch-fidelity) ---------------------------------------------------------------------


def default_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def resolve_inception_path(weights_path: str | os.PathLike | None = None) -> Path:
    """Option `weights_path`, else $LDBENCH_INCEPTION_WEIGHTS, else torch hub's checkpoint directory."""
    if weights_path:
        return Path(weights_path).expanduser()
    env = os.environ.get(INCEPTION_ENV)
    if env:
        return Path(env).expanduser()
    return default_inception_path()


def _safe_inception_state(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """Unpickle with weights_only=True: only tensors and containers, never arbitrary code."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a plain Inception state dict, refusing to load it ({first})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError(f"{path}: not a plain Inception state dict (expected a mapping of names to tensors)")
    return state


@EXTRACTORS.register("inception")
class InceptionExtractor:
    """Inception-v3 pool3 (2048-d) via torch-fidelity, SHA-256-pinned weights: FID/KID comparable with papers."""

    family = "inception"
    resize_policy = "torch-fidelity-tf1-bilinear-299"
    channel_policy = "gray-repeat-rgb"
    dim = 2048
    compute_dtype = "float32"

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        allow_unverified: bool = False,
        device: str | None = None,
    ) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve_inception_path(weights_path)
        if not path.is_file():
            raise UserError(
                f"Inception weights not found at {path}; download {INCEPTION_URL} (SHA-256 "
                f"{INCEPTION_SHA256[:12]}…) and put it there, or pass --inception-weights PATH "
                f"(or set {INCEPTION_ENV})"
            )
        data = path.read_bytes()  # hashed and loaded from the same bytes: no swap between check and use
        fingerprint = hashlib.sha256(data).hexdigest()
        if fingerprint != INCEPTION_SHA256 and not allow_unverified:
            raise UserError(
                f"Inception weights {path} have SHA-256 {fingerprint[:12]}…, expected {INCEPTION_SHA256[:12]}… "
                f"({INCEPTION_FILENAME}); use that file, or pass --allow-unverified-weights to go on with "
                f"these (results are then named inception-unverified and are not comparable with published FIDs)"
            )
        self.name = "inception" if fingerprint == INCEPTION_SHA256 else "inception-unverified"
        self.fingerprint = fingerprint
        self.weights_path = path
        self.device = torch.device(device or "cpu")
        # torch-fidelity 0.4.0 reads the path it is given with torch.load(weights_only=False), which can
        # run code from a crafted pickle. So the file is unpickled here with weights_only=True and
        # torch-fidelity only gets an in-memory re-serialisation of the resulting plain tensors.
        state = _safe_inception_state(data, path)
        del data
        buf = io.BytesIO()
        torch.save(state, buf)
        del state
        buf.seek(0)
        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=buf
            )
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"{path}: not torch-fidelity Inception-v3 weights ({first})") from None
        self._model = model.to(self.device).eval()

    def _to_uint8_rgb(self, images: np.ndarray) -> torch.Tensor:
        """Gray [0, 1] -> uint8 round(x * 255) -> (N, 3, H, W), as an RGB PNG of the image would load."""
        u8 = np.rint(images * 255.0).astype(np.uint8)
        return torch.from_numpy(u8)[:, None].expand(-1, 3, -1, -1).contiguous()

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        _check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                batch = self._to_uint8_rgb(unit_range(x[s : s + batch_size])).to(self.device)
                (f,) = self._model(batch)
                out[s : s + len(batch)] = f.to("cpu", torch.float64).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return _describe(self, self.compute_dtype)


# --- domain (offline DomainNet) ----------------------------------------------------------------------


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
        _check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                batch = to_input(unit_range(x[s : s + batch_size]), torch.float64).to(self.device)
                out[s : s + len(batch)] = self._net.features(batch).to("cpu").numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return _describe(self, self.compute_dtype)
