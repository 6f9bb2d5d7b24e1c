"""Fine-tuning methods: one registry, one file per method, all over the shared loop in loop.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ldbench.drift import Drift
from ldbench.methods.loop import TrainData
from ldbench.registry import Registry


@dataclass(frozen=True)
class MethodOptions:
    """Training hyperparameters; every value is recorded in each result's provenance."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-4


class Method(Protocol):
    name: str
    trains: str  # one line: what this method changes in the base model

    def train(self, parts: dict, data: TrainData, drift: Drift, options: MethodOptions, seed: int,
              quiet: bool) -> tuple[dict[str, torch.Tensor], list[float]]:
        """Train in place; return (the trained tensors only, the loss per step)."""
        ...

    def apply(self, parts: dict, trained: dict[str, torch.Tensor]) -> None:
        """Load trained tensors back into freshly loaded base components."""
        ...


METHODS: Registry[Method] = Registry("method")


def _register_builtin() -> None:
    from ldbench.methods import finetune  # noqa: F401


_register_builtin()
