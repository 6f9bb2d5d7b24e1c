"""Datasets: one registry; embedded synthetic datasets in synthetic/, real-data adapters in adapters/."""

from __future__ import annotations

from collections.abc import Callable

from ldbench.data.base import SPLITS, Dataset, ImageTable, PreparedDataset
from ldbench.registry import Registry

# name -> factory(**options) -> Dataset
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")


def create_dataset(name: str, **options) -> Dataset:
    return DATASETS.get(name)(**options)


def _register_builtin() -> None:
    from ldbench.data import adapters  # noqa: F401  (registers the real-data adapters)
    from ldbench.data.synthetic import brain, cxr  # noqa: F401  (register synth-brain, synth-cxr)


_register_builtin()

__all__ = ["DATASETS", "SPLITS", "Dataset", "ImageTable", "PreparedDataset", "create_dataset"]
