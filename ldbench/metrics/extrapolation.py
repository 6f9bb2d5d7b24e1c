"""FD∞ / FID∞: the Fréchet distance extrapolated to an infinite generated set (pure numpy, no I/O).

Chong & Forsyth (2020), "Effectively Unbiased FID and Inception Score and where to find them", CVPR:
the FID of N generated samples against fixed reference statistics has a bias that is, to first order,
linear in 1/N (FID_N ≈ FID∞ + k / N), and k depends on the generator, so two models compared at one N
can swap ranks. Computing the distance on subsets of several sizes N (drawn without replacement,
seeded), fitting a line of FD against 1/N and taking its intercept gives FD∞, an estimate free of that
first-order bias. Their code spaces 15 sizes evenly in N; here they are evenly spaced in 1/N (the
regressor), which spreads the fit's leverage evenly. The reference's own finite-sample bias is not
removed (the reference statistics are fixed), and the linear law needs N well above the feature
dimension: with fewer samples than dimensions the covariance is rank-deficient and FD∞ is a rough
extrapolation (the record's rank_warning says so). FD∞ is not clipped at 0: an intercept slightly
below 0 means a distance indistinguishable from 0.

Uncertainty: a bootstrap of the generated set (FD∞ recomputed on each resample, with the same subset
seeds) and the re-centred percentile interval of ldbench.metrics.intervals, which always contains the
estimate. (The regression's standard error would only describe the scatter of the subset draws, not
the sampling of the generated set, so it is reported as a fit detail, not as the CI.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ldbench.errors import UserError
from ldbench.metrics.intervals import CI_RECENTRED, bootstrap_values, recentred_interval
from ldbench.metrics.math import _psd_sqrt_factor, finite_array, rank_warning
from ldbench.metrics.metric_registry import FRECHET_INF, METRICS

__all__ = ["ExtrapolationOptions", "ReferenceFD", "fd_inf_record", "fd_inf_statistic", "fd_infinity",
           "options_from_details", "subset_sizes"]


class ReferenceFD:
    """Fréchet distance of feature sets to fixed reference statistics, without d x d matrices per set.

    With the reference covariance factored once as B B^T (B: d x r, ldbench.metrics.math's memoised
    factor) and a set's centred features C (N x d), tr sqrt(S S_ref) = sum of the singular values of
    C B / sqrt(N - 1): an N x r SVD per set, equal to frechet_distance(*gaussian_stats(f), mu, sigma)
    up to rounding. Clipped at 0 like frechet_distance.
    """

    def __init__(self, ref_mu: np.ndarray, ref_sigma: np.ndarray) -> None:
        self.mu = finite_array(ref_mu, "reference mean", 1, "1-D (d,)")
        sigma = finite_array(ref_sigma, "reference covariance", 2, "2-D (d, d)")
        if sigma.shape != (len(self.mu), len(self.mu)):
            raise ValueError(f"reference mean {self.mu.shape} and covariance {sigma.shape} do not match")
        sigma = (sigma + sigma.T) / 2
        self.factor = _psd_sqrt_factor(sigma)
        self.trace = float(np.trace(sigma))

    def __call__(self, features: np.ndarray) -> float:
        f = np.asarray(features, dtype=np.float64)
        n = len(f)
        if f.ndim != 2 or f.shape[1] != len(self.mu) or n < 2:
            raise ValueError(f"expected at least 2 rows of {len(self.mu)}-d features, got shape {f.shape}")
        mu = f.mean(axis=0)
        c = f - mu
        diff = mu - self.mu
        s = np.linalg.svd(c @ self.factor, compute_uv=False) / np.sqrt(n - 1) if self.factor.shape[1] else 0.0
        value = float(diff @ diff + np.sum(c * c) / (n - 1) + self.trace - 2.0 * np.sum(s))
        return max(value, 0.0)


@dataclass(frozen=True)
class ExtrapolationOptions:
    """How FD∞ is computed: `n_sizes` subset sizes evenly spaced in 1/N from `min_size` (default: a quarter
    of the set, at least 2) to the whole set; `repeats` subsets per size (their FDs averaged); `n_boot`
    bootstrap resamples for the CI (0: no CI); `seed` for the subsets and the bootstrap."""

    n_sizes: int = 15
    min_size: int | None = None
    repeats: int = 1
    n_boot: int = 200
    seed: int = 0
    level: float = 0.95


def subset_sizes(n: int, n_sizes: int = 15, min_size: int | None = None) -> np.ndarray:
    """Up to `n_sizes` distinct subset sizes, evenly spaced in 1/N between `min_size` and `n` (both included)."""
    low = max(2, n // 4) if min_size is None else int(min_size)
    if not 2 <= low < n:
        raise UserError(f"FD∞ needs a minimum subset size in [2, {n - 1}] for a set of {n}, got {low}")
    if n_sizes < 2:
        raise UserError(f"FD∞ needs at least 2 subset sizes for its line, got {n_sizes}")
    inv = np.linspace(1.0 / n, 1.0 / low, n_sizes)
    sizes = np.unique(np.clip(np.rint(1.0 / inv).astype(int), low, n))
    if len(sizes) < 2:
        raise UserError(f"FD∞: a set of {n} gives fewer than 2 distinct subset sizes; use more samples")
    return sizes


def fd_infinity(features: np.ndarray, fd, sizes: np.ndarray, seed: int, repeats: int = 1) -> dict:
    """Intercept of the least-squares line FD(N) = FD∞ + slope / N over subsets of `features` of the given
    `sizes` (without replacement, `repeats` per size, np.random.default_rng(seed)); `fd` maps a feature
    set to its distance (e.g. ReferenceFD). Returns value, slope, sizes, fds (mean per size) and the
    intercept's regression standard error (None with 2 sizes)."""
    f = np.asarray(features)
    if int(np.max(sizes)) > len(f):
        raise UserError(f"FD∞ subset size {int(np.max(sizes))} is larger than the set ({len(f)} samples)")
    rng = np.random.default_rng(seed)
    fds = np.array([np.mean([fd(f[rng.choice(len(f), int(m), replace=False)]) for _ in range(repeats)])
                    for m in sizes])
    x = 1.0 / np.asarray(sizes, dtype=np.float64)
    design = np.stack([np.ones_like(x), x], axis=1)
    (intercept, slope), *_ = np.linalg.lstsq(design, fds, rcond=None)
    se = None
    if len(x) > 2:
        resid = fds - design @ np.array([intercept, slope])
        cov = np.linalg.inv(design.T @ design) * float(resid @ resid) / (len(x) - 2)
        se = float(np.sqrt(max(cov[0, 0], 0.0)))
    return {"value": float(intercept), "slope": float(slope), "sizes": [int(m) for m in sizes],
            "fds": [float(v) for v in fds], "intercept_se": se}


def fd_inf_statistic(ref_mu: np.ndarray, ref_sigma: np.ndarray, options: ExtrapolationOptions):
    """FD∞ as a function of a feature set (sizes from its length and `options`, subsets seeded with
    options.seed): for bootstraps and the LD-effect tests."""
    fd = ReferenceFD(ref_mu, ref_sigma)

    def statistic(f: np.ndarray) -> float:
        sizes = subset_sizes(len(f), options.n_sizes, options.min_size)
        return fd_infinity(f, fd, sizes, options.seed, options.repeats)["value"]

    return statistic


def options_from_details(details: dict, seed: int) -> ExtrapolationOptions:
    """The options an FD∞ record was computed with (its details), for recomputing it."""
    return ExtrapolationOptions(n_sizes=int(details.get("n_sizes", 15)), min_size=details.get("min_size"),
                                repeats=int(details.get("repeats", 1)), seed=int(details.get("subset_seed", seed)))


def fd_inf_record(
    feats: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    *,
    extractor: str,
    family: str,
    options: ExtrapolationOptions = ExtrapolationOptions(),
) -> dict:
    """The FD∞ record of generated `feats` against reference statistics: metric `fid_inf` for Inception
    features, `fd_inf` otherwise; value, ci95 (bootstrap of the generated set, re-centred percentile,
    None when options.n_boot == 0), n, extractor, and the fit (slope, sizes, fds, intercept_se)."""
    f = finite_array(feats, "generated features", 2, "2-D (n, d)")
    n, d = f.shape
    note = rank_warning(min(n, int(options.min_size or max(2, n // 4))), d)
    if note:
        warnings.warn(note, stacklevel=2)
    sizes = subset_sizes(n, options.n_sizes, options.min_size)
    fd = ReferenceFD(ref_mu, ref_sigma)
    fit = fd_infinity(f, fd, sizes, options.seed, options.repeats)
    ci = None
    if options.n_boot > 0:
        stat = fd_inf_statistic(ref_mu, ref_sigma, options)
        values = bootstrap_values(stat, f, options.n_boot, options.seed)
        ci = list(recentred_interval(fit["value"], values, options.level))
    return {"metric": METRICS.distance_name(FRECHET_INF, family), "value": fit["value"], "ci95": ci,
            "n": int(n), "extractor": extractor, "fd_at_n": fit["fds"][-1], "slope": fit["slope"],
            "sizes": fit["sizes"], "fds": fit["fds"], "intercept_se": fit["intercept_se"],
            "n_sizes": options.n_sizes, "min_size": options.min_size, "repeats": options.repeats,
            "subset_seed": options.seed, "rank_warning": note,
            "bootstrap": {"B": options.n_boot, "seed": options.seed, "resampled": "generated set"},
            "ci_method": CI_RECENTRED if ci else None}
