"""Distribution metrics on feature arrays: pure numpy, float64, no I/O.

- `RunningMoments`: mean and covariance in O(d^2) memory, one batch at a time.
- `frechet_distance`: FID/FD that is never complex, NaN or negative, also for rank-deficient covariances.
- `kernel_inception_distance`: KID/KD, the unbiased polynomial-kernel MMD^2 of torch-fidelity 0.4.0 with
  the same seeded subset sampling, so equal seeds give equal numbers.
- `bootstrap_ci`: percentile interval over resamples of the generated set (ldbench.metrics.intervals).
- `prdc`: precision, recall, density, coverage (Naeem et al. 2020).
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict

import numpy as np

from ldbench.errors import UserError
from ldbench.metrics.intervals import bootstrap_ci

__all__ = [
    "RunningMoments",
    "bootstrap_ci",
    "finite_array",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_stats",
    "kernel_inception_distance",
    "prdc",
    "rank_warning",
    "trace_sqrt_product",
]


def finite_array(x: np.ndarray, what: str, ndim: int, shape_text: str) -> np.ndarray:
    """`x` as float64, checked to have `ndim` dimensions and only finite values (a ValueError naming `what`)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{what} must be {shape_text}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return a


def _as_features(features: np.ndarray, what: str = "features") -> np.ndarray:
    return finite_array(features, what, 2, "2-D (n, d)")


class RunningMoments:
    """Count, sum and sum of outer products of feature rows: mean and covariance in O(d^2) memory.

    Sums are taken around a shift (the mean of the first batch), which avoids the cancellation of the
    textbook formula sum(x x^T) - n mu mu^T when the mean is large compared with the spread.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim
        self.count = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        f = _as_features(features)
        if len(f) == 0:
            return
        if self._shift is None:
            if self.dim is not None and f.shape[1] != self.dim:
                raise ValueError(f"expected {self.dim}-d features, got {f.shape[1]}")
            self.dim = f.shape[1]
            self._shift = f.mean(axis=0)
            self._sum = np.zeros(self.dim)
            self._outer = np.zeros((self.dim, self.dim))
        elif f.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d features, got {f.shape[1]}")
        c = f - self._shift
        self._sum += c.sum(axis=0)
        self._outer += c.T @ c
        self.count += len(f)

    def mean(self) -> np.ndarray:
        if self.count == 0 or self._shift is None or self._sum is None:
            raise ValueError("no features accumulated")
        return self._shift + self._sum / self.count

    def covariance(self) -> np.ndarray:
        """Unbiased (ddof=1) covariance, as np.cov(features, rowvar=False)."""
        if self.count < 2 or self._sum is None or self._outer is None:
            raise ValueError(f"a covariance needs at least 2 feature rows, got {self.count}")
        m = self._sum / self.count
        cov = (self._outer - self.count * np.outer(m, m)) / (self.count - 1)
        return (cov + cov.T) / 2


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (ddof=1) covariance of feature rows, float64."""
    f = _as_features(features)
    n = len(f)
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 feature rows, got {n}")
    mu = f.mean(axis=0)
    c = f - mu
    sigma = c.T @ c / (n - 1)
    return mu, (sigma + sigma.T) / 2


def rank_warning(n: int, d: int) -> str | None:
    """A warning text when n samples cannot give a full-rank d x d covariance (rank <= n - 1 < d)."""
    if n - 1 >= d:
        return None
    return (
        f"only {n} samples for {d}-dimensional features: the covariance has rank <= {max(n - 1, 0)} < {d}; "
        f"the Frechet distance is finite but biased upwards and comparable only with values from sets of "
        f"the same size (use n > {d} for a full-rank estimate)"
    )


# --- Frechet distance -------------------------------------------------------------------------------

_SQRT_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SQRT_CACHE_SIZE = 2


def _psd_sqrt_factor(sigma: np.ndarray) -> np.ndarray:
    """B (d x r) with B B^T = sigma for a PSD matrix: eigenvectors times sqrt of the eigenvalues above
    the rounding level (r = numerical rank; the rest count as zero).

    The last few results are memoised by content hash: a bootstrap compares many generated sets with
    the same reference covariance, whose factor then costs one eigendecomposition, not B.
    """
    key = (sigma.shape, hashlib.sha1(np.ascontiguousarray(sigma).view(np.uint8)).hexdigest())
    hit = _SQRT_CACHE.get(key)
    if hit is not None:
        _SQRT_CACHE.move_to_end(key)
        return hit
    w, v = np.linalg.eigh(sigma)
    w = _clip_rounding(w, len(sigma))
    keep = w > 0
    factor = v[:, keep] * np.sqrt(w[keep])
    factor.flags.writeable = False
    _SQRT_CACHE[key] = factor
    if len(_SQRT_CACHE) > _SQRT_CACHE_SIZE:
        _SQRT_CACHE.popitem(last=False)
    return factor


def _clip_rounding(w: np.ndarray, d: int) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding noise removed: below d * eps * max -> 0."""
    top = float(np.max(w, initial=0.0))
    tol = max(top, 0.0) * d * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 sigma2) for PSD matrices, always real and >= 0.

    With sigma2 = B B^T (B: d x r, r its numerical rank), the nonzero eigenvalues of sigma1 sigma2 are
    those of the symmetric PSD r x r matrix B^T sigma1 B (equivalently of sqrt(S2) S1 sqrt(S2)), so
    the trace is the sum of square roots of its eigvalsh; rounding-level and negative eigenvalues
    (rank-deficient covariances, n < d) count as zero instead of becoming imaginary parts.
    """
    b = _psd_sqrt_factor(sigma2)
    if b.shape[1] == 0:
        return 0.0
    m = b.T @ sigma1 @ b
    m = (m + m.T) / 2
    w = _clip_rounding(np.linalg.eigvalsh(m), len(sigma1))
    return float(np.sum(np.sqrt(w)))


def _check_gaussian(mu: np.ndarray, sigma: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise ValueError(f"{which}: mean shape {mu.shape} and covariance shape {sigma.shape} do not match")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"{which}: mean or covariance contains NaN or infinite values")
    return mu, (sigma + sigma.T) / 2


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)) between two Gaussians.

    Stable: never complex, NaN or negative (the result is clipped at 0), also for rank-deficient
    covariances and identical inputs. Agrees with torch-fidelity's FID on well-conditioned inputs; pass
    the reference statistics second (the factorisation of sigma2 is memoised).
    """
    mu1, sigma1 = _check_gaussian(mu1, sigma1, "first")
    mu2, sigma2 = _check_gaussian(mu2, sigma2, "second")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {len(mu1)} vs {len(mu2)}")
    diff = mu1 - mu2
    value = float(
        diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )
    return max(value, 0.0)


def features_route_is_cheaper(n1: int, n2: int, d: int) -> bool:
    """Whether frechet_distance_from_features (an n1 x n2 SVD) costs less than a d x d eigendecomposition."""
    return n1 * n2 * min(n1, n2) < d**3


def frechet_distance_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """The Frechet distance of the Gaussians fitted to two feature sets (ddof=1), without d x d matrices.

    With centred features C1 (n1 x d), C2 (n2 x d): S_i = C_i^T C_i / (n_i - 1), and the eigenvalues of
    S1 S2 are the squared singular values of C1 C2^T / sqrt((n1 - 1)(n2 - 1)), so tr sqrt(S1 S2) is the
    sum of those singular values (an n1 x n2 SVD: real and >= 0 by construction). Equal to
    frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2)) up to rounding, and far cheaper when the
    sets are small compared with d (e.g. 200 images, 2048-d Inception features).
    """
    a = _as_features(feats1, "first feature set")
    b = _as_features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        raise ValueError(f"a covariance needs at least 2 feature rows, got {n1} and {n2}")
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    c1, c2 = a - mu1, b - mu2
    diff = mu1 - mu2
    s = np.linalg.svd(c1 @ c2.T, compute_uv=False) / np.sqrt((n1 - 1) * (n2 - 1))
    value = float(
        diff @ diff + np.sum(c1 * c1) / (n1 - 1) + np.sum(c2 * c2) / (n2 - 1) - 2.0 * np.sum(s)
    )
    return max(value, 0.0)


# --- Kernel distance ----------------------------------------------------------------------------------


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(x y^T / d + 1)^3: the polynomial kernel of KID (degree 3, gamma 1/d, coef0 1)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = len(k_xx)
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    feats_a: np.ndarray, feats_b: np.ndarray, subset_size: int, n_subsets: int, seed: int
) -> tuple[float, float]:
    """Mean and standard deviation (ddof=0) of the unbiased MMD^2 over `n_subsets` random subsets.

    Subsets are drawn exactly as torch-fidelity 0.4.0 draws them: one np.random.RandomState(seed), and
    per subset choice(n_a, subset_size, replace=False) then choice(n_b, subset_size, replace=False).
    A subset larger than either set is an error, never silently shrunk. Values slightly below 0 are
    valid (the estimator is unbiased) and are not clipped.
    """
    a = _as_features(feats_a, "first feature set")
    b = _as_features(feats_b, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    n_a, n_b = len(a), len(b)
    if subset_size > n_a or subset_size > n_b:
        raise UserError(
            f"KID subset size {subset_size} is larger than the feature sets ({n_a} and {n_b} samples); "
            f"set the subset size to at most {min(n_a, n_b)}"
        )
    if subset_size < 2:
        raise UserError(f"KID subset size must be at least 2, got {subset_size}")
    if n_subsets < 1:
        raise UserError(f"KID needs at least 1 subset, got {n_subsets}")
    picks = _kid_subsets(seed, n_a, n_b, subset_size, n_subsets)
    d = a.shape[1]
    full_cost = (n_a + n_b) ** 2 * d + n_subsets * (n_a + n_b) ** 2
    if full_cost < 3 * n_subsets * subset_size ** 2 * d and max(n_a, n_b) ** 2 <= _FULL_KERNEL_MAX_ENTRIES:
        mmds = _subset_mmds_from_full_kernels(a, b, picks)
    else:
        mmds = np.array([_mmd2_unbiased(_poly_kernel(a[ia], a[ia]), _poly_kernel(a[ia], b[ib]), _poly_kernel(b[ib], b[ib]))
                         for ia, ib in picks])
    return float(np.mean(mmds)), float(np.std(mmds))


@functools.lru_cache(maxsize=16)
def _kid_subsets(seed: int, n_a: int, n_b: int, subset_size: int, n_subsets: int) -> tuple:
    """The (index into a, index into b) subset pairs torch-fidelity draws. Cached: a bootstrap calls KID
    hundreds of times with the same seed and sizes, and drawing them is most of a small KID's time."""
    rng = np.random.RandomState(seed)
    pairs = tuple((rng.choice(n_a, subset_size, replace=False), rng.choice(n_b, subset_size, replace=False))
                  for _ in range(n_subsets))
    for ia, ib in pairs:
        ia.setflags(write=False)
        ib.setflags(write=False)
    return pairs


# Small sets (the medical test splits, and every bootstrap resample of them): when the kernel matrices of
# the whole sets cost fewer operations than the per-subset ones, every subset's MMD² comes from them in a few
# matrix products (the same kernel values; sums equal up to float64 rounding). Otherwise, and always for
# sets too large to hold their kernel matrix, the per-subset products keep memory O(subset²).
_FULL_KERNEL_MAX_ENTRIES = 4_000_000


def _subset_mmds_from_full_kernels(a: np.ndarray, b: np.ndarray, picks: tuple) -> np.ndarray:
    # With s the 0/1 indicator of a subset (no repeats: drawn without replacement), the sum of a kernel's
    # subset block is s K s^T, so all subsets' block sums are the row sums of (S K) * S.
    m = len(picks[0][0])
    s_a = np.zeros((len(picks), len(a)))
    s_b = np.zeros((len(picks), len(b)))
    for row, (ia, ib) in enumerate(picks):
        s_a[row, ia] = 1.0
        s_b[row, ib] = 1.0
    k_aa, k_ab, k_bb = _poly_kernel(a, a), _poly_kernel(a, b), _poly_kernel(b, b)
    off_xx = ((s_a @ k_aa) * s_a).sum(axis=1) - s_a @ np.diag(k_aa)
    off_yy = ((s_b @ k_bb) * s_b).sum(axis=1) - s_b @ np.diag(k_bb)
    xy = ((s_a @ k_ab) * s_b).sum(axis=1)
    return (off_xx + off_yy) / (m * (m - 1)) - 2.0 * xy / (m * m)


# --- Precision, recall, density, coverage ---------------------------------------------------------


def _pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the row itself, at distance 0, not counted)."""
    d = _pairwise_distances(x, x)
    np.fill_diagonal(d, 0.0)
    return np.partition(d, k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of `fake` against `real` (Naeem et al. 2020), k-NN balls."""
    r = _as_features(real, "real features")
    f = _as_features(fake, "fake features")
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    if k < 1 or k >= len(r) or k >= len(f):
        raise UserError(f"PRDC needs 1 <= k < the set sizes; got k={k} with {len(r)} real and {len(f)} fake")
    real_radii = _kth_neighbour_radii(r, k)
    fake_radii = _kth_neighbour_radii(f, k)
    d_rf = _pairwise_distances(r, f)  # (n_real, n_fake)
    inside_real = d_rf < real_radii[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d_rf < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < real_radii).mean()),
    }
