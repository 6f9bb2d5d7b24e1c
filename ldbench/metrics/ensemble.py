"""Readings of an ensemble of independently trained classifiers, with intervals that count both sources of
chance: which images were scored, and which classifier scored them. Pure numpy, float64, no I/O.

Why. An oracle is a classifier trained on real scans; generated images lie off that distribution, where a
classifier's output depends on its training run far more than on real data. Measured on the smoke suite's
SDEdit edits (synth-brain, resnet18 oracles differing only in their seed, every one at 0.98-1.00 AUC on the
real test scans): the diagnosis AUC read off the same edits ranged 0.91-0.95, off text-to-image samples
0.71-0.75, and the age error of the samples 7.9-14.5 years, three times the width of one oracle's bootstrap
interval over images (8.7-10.8). So an oracle here is an ensemble of K members, each from its own seed:
the reading is the statistic of the members' mean prediction, and its interval is a two-level bootstrap
(members drawn with replacement, then images with replacement, within `strata` when given, e.g. AUC's
two classes).

The interval is re-centred on the estimate (ldbench.metrics.intervals.recentred_interval): a resample that
repeats members averages fewer distinct classifiers than the estimate does, which biases the resampled
statistic (an ensemble is usually better than its members), and re-centring removes that resampling bias
so the interval always contains its estimate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ldbench.metrics.intervals import recentred_interval

Statistic = Callable[[np.ndarray, np.ndarray], float]  # (mean prediction of some items, their indices) -> value


def member_seed(seed: int, member: int) -> int:
    """The training seed of ensemble member `member` of an oracle seeded `seed` (distinct for every pair)."""
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(1)[0])


def _resample_items(rng: np.random.Generator, strata: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([s[rng.integers(0, len(s), size=len(s))] for s in strata])


def ensemble_reading(statistic: Statistic, predictions: np.ndarray, n_boot: int, seed: int,
                     strata: np.ndarray | None = None, level: float = 0.95,
                     bounds: tuple[float | None, float | None] = (None, None),
                     ) -> tuple[float, tuple[float, float] | None, list[float]]:
    """(statistic of the members' mean prediction, its two-level bootstrap CI, each member's own value).

    `predictions`: (K members, n items). `statistic(mean_prediction, item_indices)` reads the targets it
    needs through `item_indices`. `strata`: a label per item; items are resampled within each label.
    `bounds`: the statistic's range (e.g. (0, 1) for an AUC), which the CI is clipped to.
    The CI is None when `n_boot` is 0 or there are fewer than 2 items.
    """
    p = np.asarray(predictions, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"predictions must be (members, items) with both >= 1, got shape {p.shape}")
    k, n = p.shape
    every = np.arange(n)
    value = float(statistic(p.mean(axis=0), every))
    members = [float(statistic(p[i], every)) for i in range(k)]
    if n_boot == 0 or n < 2:
        return value, None, members
    labels = np.zeros(n) if strata is None else np.asarray(strata)
    groups = [np.flatnonzero(labels == u) for u in np.unique(labels)]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        drawn = p[rng.integers(0, k, size=k)]
        items = _resample_items(rng, groups)
        values[b] = statistic(drawn[:, items].mean(axis=0), items)
    return value, recentred_interval(value, values, level, *bounds), members
