"""Oracles: read an attribute (diagnosis, age, ...) off any image, to check that an edit did what it was
asked. An oracle is an ensemble of timm classifiers trained on the real train split, each member from its
own seed (ldbench.metrics.ensemble.member_seed), because off the real distribution (blurred, generated
images) one classifier's reading depends on its training run more than on the images (measurements in
ldbench.metrics.ensemble). Readings are statistics of the members' mean prediction, with two-level
bootstrap CIs, and each member's own value on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench.classify.models import ClassifierOptions
from ldbench.classify.train import TrainedClassifier, train_classifier
from ldbench.errors import UserError
from ldbench.metrics.ensemble import ensemble_reading, member_seed
from ldbench.metrics.significance import binary_auc

MEMBER_FILE = "member-{:02d}.safetensors"


@dataclass
class Oracle:
    """K trained members of one task ("binary": probabilities of the positive class; "regression": values
    in the attribute's units)."""

    task: str
    members: list[TrainedClassifier]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(members, images) predictions."""
        return np.stack([m.predict(images) for m in self.members])

    def save(self, directory: Path) -> None:
        for i, member in enumerate(self.members):
            member.save(directory / MEMBER_FILE.format(i))

    @classmethod
    def load(cls, directory: Path, n_members: int) -> Oracle:
        paths = [directory / MEMBER_FILE.format(i) for i in range(n_members)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]}: oracle member missing; clear the cache entry and rerun")
        members = [TrainedClassifier.load(p) for p in paths]
        return cls(members[0].task, members)


def train_oracle(train: tuple[np.ndarray, np.ndarray], task: str, options: ClassifierOptions, seed: int,
                 n_members: int, val: tuple[np.ndarray, np.ndarray] | None = None, quiet: bool = False) -> Oracle:
    """`n_members` classifiers on the same (images, targets), member i trained with member_seed(seed, i)."""
    images, targets = train
    members = [train_classifier(images, targets, task, options, member_seed(seed, i), quiet=quiet, val=val)
               for i in range(n_members)]
    return Oracle(task, members)


@dataclass(frozen=True)
class Reading:
    """One statistic of an oracle's predictions against intended targets."""

    metric: str  # "auc", "acc" or "mae"
    value: float
    ci95: tuple[float, float] | None
    member_values: list[float]
    per_item: np.ndarray  # the per-item evidence for paired tests: the ensemble's score (auc), correctness or error


def read(predictions: np.ndarray, targets: np.ndarray, task: str, n_boot: int, seed: int) -> list[Reading]:
    """What an oracle's (members, items) `predictions` say about `targets` (0/1 for a binary task, values for
    a regression): AUC (when both classes occur) and accuracy at 0.5, or the mean absolute error."""
    y = np.asarray(targets, dtype=np.float64)
    mean_prediction = np.asarray(predictions, dtype=np.float64).mean(axis=0)
    if task != "binary":
        def mae(pred, idx):
            return float(np.mean(np.abs(pred - y[idx])))

        value, ci, members = ensemble_reading(mae, predictions, n_boot, seed, bounds=(0.0, None))
        return [Reading("mae", value, ci, members, np.abs(mean_prediction - y))]
    readings = []
    if len(np.unique(y)) == 2:
        def auc(pred, idx):
            return binary_auc(y[idx], pred)

        value, ci, members = ensemble_reading(auc, predictions, n_boot, seed, strata=y, bounds=(0.0, 1.0))
        readings.append(Reading("auc", value, ci, members, mean_prediction))

    def accuracy(pred, idx):
        return float(np.mean((pred >= 0.5) == (y[idx] == 1)))

    value, ci, members = ensemble_reading(accuracy, predictions, n_boot, seed, bounds=(0.0, 1.0))
    readings.append(Reading("acc", value, ci, members, ((mean_prediction >= 0.5) == (y == 1)).astype(np.float64)))
    return readings
