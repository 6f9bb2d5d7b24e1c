"""What every feature extractor is (the protocol), their registry and the shared small checks.

Kept apart from metrics.extractors so that each family module (metrics.inception, metrics.domain, ...)
can register itself without importing metrics.extractors, which imports them all.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ldbench.errors import UserError
from ldbench.registry import Registry


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
    import ldbench.metrics.extractors  # noqa: F401  (registers every extractor)

    factory = EXTRACTORS.get(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise UserError(
            f"feature extractor {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(params))}"
        )
    return factory(**options)


def describe_fields(ex: Any, dtype: str) -> dict[str, Any]:
    return {
        "name": ex.name,
        "family": ex.family,
        "fingerprint": ex.fingerprint,
        "resize_policy": ex.resize_policy,
        "channel_policy": ex.channel_policy,
        "dim": ex.dim,
        "dtype": dtype,
    }


def check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")


# How far outside [0, 1] pixel values may stray (decoder overshoot) before they are refused, not clipped.
RANGE_TOLERANCE = 0.01


def check_image_shape(images: np.ndarray) -> np.ndarray:
    """Grayscale images (N, H, W), N >= 1, returned as an array without copying."""
    x = np.asarray(images)
    if x.ndim != 3:
        raise UserError(f"expected grayscale images of shape (N, H, W), got shape {x.shape}")
    if len(x) == 0:
        raise UserError("no images to extract features from")
    return x


def unit_range(images: np.ndarray) -> np.ndarray:
    """Images as float64 clipped to [0, 1]; NaN/inf or values beyond the tolerance (e.g. [-1, 1] or
    [0, 255] images) are an error, not silently clipped. Extractors call it one batch at a time."""
    x = np.asarray(images, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise UserError("images contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        raise UserError(f"images must have values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return np.clip(x, 0.0, 1.0)


def check_images(images: np.ndarray) -> np.ndarray:
    """check_image_shape + unit_range on the whole set: (N, H, W) float64 in [0, 1]."""
    return unit_range(check_image_shape(images))
