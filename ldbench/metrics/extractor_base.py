"""What every feature extractor is (the protocol), their registry and the shared small checks.

Kept apart from metrics.extractors so that modules holding extractors (metrics.inception) can register
themselves without importing metrics.extractors, which imports them.
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
