"""Bootstrap confidence intervals for set statistics: pure numpy, float64, no I/O.

Two interval methods over resamples (rows drawn with replacement) of the generated set:

- `percentile_interval` / `bootstrap_ci`: the plain percentile interval [q_lo, q_hi] (Efron &
  Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13). Right for statistics that resampling
  leaves unbiased, such as a mean.
- `recentred_interval` / `containing_bootstrap_ci`: the percentile interval shifted so that the
  bootstrap median sits on the estimate, [θ̂ − (m* − q_lo), θ̂ + (q_hi − m*)]. This is the one for
  the Fréchet and kernel distances (FD/FID, KD/KID, FRD, FD∞), see below.

Why re-centre. A resample drawn with replacement repeats about 37 % of the rows; a Fréchet distance
computed from it sees a narrower, duplicated cloud and is biased upwards by more than the estimate
itself is (the duplicates add spurious off-diagonal kernel terms to a KID subset the same way). The
whole bootstrap distribution then sits above θ̂, and a percentile interval can miss its own estimate
("0.008 [0.009, 0.147]"). The shift m* − θ̂ is the bootstrap estimate of that resampling bias
(Efron & Tibshirani 1993, ch. 10, with the median instead of the mean so that it is robust to the
skew of a distance near 0); subtracting it from every resample gives the bias-corrected bootstrap
distribution, whose percentile interval is returned. Because q_lo <= m* <= q_hi, the interval
always contains θ̂, whatever the resamples are. It keeps the percentile interval's width and shape
(transformation-respecting spread), so its coverage of the true value is close to nominal whenever
the estimator's own bias (of θ̂, not of the resamples) is small relative to its spread; a strongly
biased estimate (FD with n not much larger than d) is centred on a biased value and covers the true
value less often: FD∞ (ldbench.metrics.extrapolation) is the remedy for that bias.

All resampling uses `np.random.default_rng(seed)`: equal seeds give equal intervals.

Every resampling loop runs with one BLAS thread (`one_blas_thread`). A resample's statistic is a few small
products and decompositions (an n x r SVD, n x n kernels, n around 100), for which OpenBLAS's threads cost
more in hand-offs than they save. Whenever anything else holds a core (torch's OpenMP threads after a
training step, a second worker, another job), its threads wait for each other, and a 120 x 119 SVD
took 0.2 s instead of 0.8 ms. On idle cores one thread is 10-20% slower here. Measured in
benchmarks/perf/bench_bootstrap.py, which also checks that these statistics give the same bits on one
thread as on two (tests/unit/test_intervals.py checks it too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from ldbench.errors import UserError

__all__ = [
    "CI_PERCENTILE",
    "CI_RECENTRED",
    "bootstrap_ci",
    "bootstrap_values",
    "containing_bootstrap_ci",
    "one_blas_thread",
    "percentile_interval",
    "recentred_interval",
]

CI_PERCENTILE = "percentile"  # the plain percentile interval
CI_RECENTRED = "recentred_percentile"  # the percentile interval shifted so the bootstrap median is the estimate


def _alpha(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return (1.0 - level) / 2.0


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS and LAPACK (numpy's, scipy's) on one thread inside the block; the previous limits after it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def bootstrap_values(
    statistic: Callable[[np.ndarray], float], features: np.ndarray, n_boot: int, seed: int
) -> np.ndarray:
    """`statistic` of `n_boot` resamples (rows, with replacement) of `features`, seeded with
    np.random.default_rng(seed); a ValueError when any value is NaN or infinite."""
    f = np.asarray(features)
    if f.ndim < 1 or len(f) < 2:
        raise ValueError(f"bootstrap needs at least 2 rows, got shape {f.shape}")
    if n_boot < 1:
        raise UserError(f"bootstrap needs at least 1 resample, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = len(f)
    values = np.empty(n_boot)
    with one_blas_thread():
        for i in range(n_boot):
            values[i] = float(statistic(f[rng.integers(0, n, size=n)]))
    if not np.all(np.isfinite(values)):
        raise ValueError("bootstrap statistic returned NaN or infinite values")
    return values


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) quantiles of bootstrap `values`."""
    alpha = _alpha(level)
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [alpha, 1.0 - alpha])
    return float(low), float(high)


def recentred_interval(
    estimate: float, values: np.ndarray, level: float = 0.95, lower_bound: float | None = None,
    upper_bound: float | None = None,
) -> tuple[float, float]:
    """[θ̂ − (m* − q_lo), θ̂ + (q_hi − m*)]: the percentile interval of `values` shifted so that their
    median m* sits on `estimate` (see the module docstring). Always contains `estimate`.

    `lower_bound` / `upper_bound` clip the ends at the statistic's range (0 for a Fréchet distance, 1 for
    an AUC) when that bound does not exclude the estimate, so the interval never claims impossible values.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"bootstrap values must be a non-empty 1-D array, got shape {v.shape}")
    if not (np.isfinite(estimate) and np.all(np.isfinite(v))):
        raise ValueError("estimate and bootstrap values must be finite")
    alpha = _alpha(level)
    q_lo, med, q_hi = np.quantile(v, [alpha, 0.5, 1.0 - alpha])
    # max/min guard the containment against quantile rounding (q_lo <= med <= q_hi holds exactly in
    # exact arithmetic; the subtraction can lose an ulp)
    low = min(float(estimate) - (med - q_lo), float(estimate))
    high = max(float(estimate) + (q_hi - med), float(estimate))
    if lower_bound is not None and lower_bound <= estimate:
        low = max(low, float(lower_bound))
    if upper_bound is not None and upper_bound >= estimate:
        high = min(high, float(upper_bound))
    return low, high


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    features: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over `n_boot` resamples (rows, with replacement) of `features`.

    `features` is the generated set; the reference stays fixed inside `statistic`. Seeded with
    np.random.default_rng(seed), so equal seeds give equal intervals. For statistics that resampling
    biases (distances between distributions), use `containing_bootstrap_ci`.
    """
    _alpha(level)
    return percentile_interval(bootstrap_values(statistic, features, n_boot, seed), level)


def containing_bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    features: np.ndarray,
    n_boot: int,
    seed: int,
    *,
    level: float = 0.95,
    estimate: float | None = None,
    lower_bound: float | None = None,
) -> tuple[float, float]:
    """The re-centred percentile interval (`recentred_interval`) of `statistic` over `n_boot` seeded
    resamples of `features`: always contains the estimate, statistic(features) unless `estimate` is given."""
    _alpha(level)
    values = bootstrap_values(statistic, features, n_boot, seed)
    theta = float(statistic(np.asarray(features))) if estimate is None else float(estimate)
    return recentred_interval(theta, values, level, lower_bound)
