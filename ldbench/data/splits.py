"""Subject-level train/val/test splits shared by every dataset (embedded and real-data adapters)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from ldbench.data.base import SPLITS
from ldbench.errors import UserError


def check_fractions(fractions: Sequence[float], what: str = "split_fractions") -> tuple[float, float, float]:
    """Three positive finite numbers summing to 1 (to 1e-6), as a tuple of floats; else UserError."""
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be three numbers (train, val, test), got {fractions!r}") from None
    if len(values) != 3:
        raise UserError(f"{what} must be three numbers (train, val, test), got {fractions!r}")
    if not all(math.isfinite(v) and v > 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise UserError(f"{what} must be positive and sum to 1, got {fractions!r}")
    return values  # type: ignore[return-value]


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of n subjects go to train, val, test: largest-remainder rounding, each >= 1 if n >= 3."""
    fr = check_fractions(fractions)
    exact = [f * n for f in fr]
    counts = [math.floor(e) for e in exact]
    # hand out the remainder by largest fractional part (ties: earlier split first)
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 3:
        for i in range(3):
            while counts[i] == 0:
                donor = max(range(3), key=lambda j: (counts[j], -j))
                counts[donor] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def _subject_key(subject: str, seed: int) -> bytes:
    return hashlib.sha256(f"ldbench-split:{seed}:{subject}".encode()).digest()


def subject_splits(subjects: np.ndarray, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """The split name ("train"/"val"/"test") of every row, assigned per subject.

    Subjects (compared as strings) are ranked by a SHA-256 key of (seed, subject); the first
    `round(f_train * n)` go to train, the next to val, the rest to test (largest-remainder rounding,
    every split non-empty when there are >= 3 distinct subjects). So the result is deterministic,
    independent of row order and of how many rows each subject has, all rows of a subject share one
    split, and adding a subject moves few others.
    """
    subjects = np.asarray(subjects)
    if subjects.ndim != 1:
        raise ValueError(f"subjects must be one-dimensional, got shape {subjects.shape}")
    names = subjects.astype(str)
    unique, inverse = np.unique(names, return_inverse=True)
    n_train, n_val, _ = split_counts(len(unique), fractions)
    ranked = sorted(range(len(unique)), key=lambda i: (_subject_key(unique[i], seed), unique[i]))
    per_subject = np.empty(len(unique), dtype=f"<U{max(len(s) for s in SPLITS)}")
    for rank, i in enumerate(ranked):
        per_subject[i] = SPLITS[0] if rank < n_train else SPLITS[1] if rank < n_train + n_val else SPLITS[2]
    return per_subject[inverse.reshape(-1)]
