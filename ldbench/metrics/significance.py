"""Uncertainty and significance for benchmark comparisons: pure numpy/scipy, float64, no I/O.

Which test is used where, and why:

- Per-image metrics (SSIM, PSNR, L1, LPIPS, CLD, ...): the mean over images with a percentile
  bootstrap CI (`mean_with_ci`). Two methods that edit the same source images are compared with a
  *paired* bootstrap of the mean difference (`paired_bootstrap_difference` with `n_b=None`): the
  same resampled source indices go to both methods, so the between-image variation that both share
  cancels and the test has the power a paired design deserves.
- Set metrics (FD/KD and other statistics of a whole generated set): no per-item values exist, so
  the bootstrap recomputes the set statistic on each resample of the difference
  (`paired_bootstrap_difference` with statistics that take an index array). It is paired over
  source images when both sets edit the same sources, unpaired (`n_b` given) otherwise.
- ROC AUC (e.g. a drift detector or attribute classifier on two score sets over the same cases):
  the paired DeLong test (`delong_test`, DeLong et al. 1988, fast midrank form of Sun & Xu 2014),
  which is the standard analytic test for correlated AUCs, plus the paired bootstrap as a check
  that does not rely on asymptotic normality (small or degenerate samples). Single AUCs get a
  *stratified* bootstrap CI (`auc_with_ci`) so that every resample has both classes.

- Many tests at once (every LD effect of a run): `adjust_p_values`, Holm's step-down correction
  (controls the family-wise error rate under any dependence) or Benjamini-Hochberg (false discovery
  rate, for independent or positively dependent tests).

All bootstraps use `np.random.default_rng(seed)`: equal seeds give equal numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import ndtr

from ldbench.errors import UserError
from ldbench.metrics.intervals import one_blas_thread
from ldbench.metrics.math import finite_array

__all__ = [
    "P_ADJUST_METHODS",
    "adjust_p_values",
    "auc_with_ci",
    "binary_auc",
    "delong_test",
    "mean_with_ci",
    "paired_bootstrap_difference",
]

# Rows of bootstrap index matrices built at once: bounds memory at about 8 bytes * _CHUNK * n.
_CHUNK = 256
# Variances below this (relative to 1, AUCs live in [0, 1]) are treated as exactly zero.
_ZERO_VAR = 1e-15
_Z975 = 1.959963984540054  # standard normal 97.5 % quantile


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return (1.0 - level) / 2.0


def _check_n_boot(n_boot: int, minimum: int) -> int:
    if int(n_boot) != n_boot or n_boot < minimum:
        raise UserError(
            f"number of bootstrap resamples must be an integer >= {minimum}, got {n_boot!r}; "
            "set a larger bootstrap count"
        )
    return int(n_boot)


def _as_vector(x: np.ndarray, what: str) -> np.ndarray:
    return finite_array(x, what, 1, "1-D")


def _as_labels(y_true: np.ndarray) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    values = np.unique(y)
    if not np.all(np.isin(values, [0, 1])):
        raise ValueError(f"labels must be binary 0/1 (or bool), got values {values[:5].tolist()}")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(
            "AUC needs both classes, but all labels are "
            f"{'positive' if y.all() else 'negative'} ({len(y)} cases)"
        )
    return y


def _percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


# --- Means -----------------------------------------------------------------------------------------


def mean_with_ci(
    values: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, tuple[float, float] | None]:
    """Mean of per-item values and its percentile bootstrap CI.

    The CI is None when `n_boot == 0` (the user asked for no bootstrap) or there are fewer than 2
    items (a resample of one item has no spread, so an interval would be a false claim of
    certainty). Items are resampled with replacement; seeded, so equal seeds give equal intervals.
    """
    v = _as_vector(values, "values")
    if len(v) == 0:
        raise ValueError("cannot average an empty array of values")
    alpha = _check_level(level)
    n_boot = _check_n_boot(n_boot, 0)
    mean = float(np.mean(v))
    if n_boot == 0 or len(v) < 2:
        return mean, None
    rng = np.random.default_rng(seed)
    n = len(v)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        rows = min(_CHUNK, n_boot - start)
        means[start : start + rows] = v[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return mean, _percentile_ci(means, alpha)


# --- ROC AUC ---------------------------------------------------------------------------------------


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of `score` for binary labels (sklearn's `roc_auc_score`; ties count one half).

    Raises ValueError naming the problem when only one class is present: the AUC is undefined
    there, and returning 0.5 or NaN would hide that the evaluation set is broken.
    """
    y = _as_labels(y_true)
    s = _as_vector(score, "scores")
    if len(s) != len(y):
        raise ValueError(f"labels ({len(y)}) and scores ({len(s)}) differ in length")
    # imported where used: scikit-learn costs about 1.9 s, and a run whose every stage is cached computes no AUC
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def _auc_from_split(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC from positive and negative scores (midranks, so ties count one half).

    Same number as `roc_auc_score`, computed with one sort: the bootstrap calls it thousands of times.
    """
    from scipy.stats import rankdata  # where used, like roc_auc_score

    m, n = len(pos), len(neg)
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[:m].sum() - m * (m + 1) / 2.0) / (m * n))


def auc_with_ci(
    y_true: np.ndarray, score: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, tuple[float, float] | None]:
    """ROC AUC with a stratified percentile bootstrap CI (None when `n_boot == 0`).

    Positives and negatives are resampled separately, each to its own count, so every resample
    has both classes (a plain resample can draw one class only, where AUC is undefined) and the
    class balance of the evaluation set is kept, as the AUC's sampling distribution assumes.
    """
    auc = binary_auc(y_true, score)
    alpha = _check_level(level)
    n_boot = _check_n_boot(n_boot, 0)
    if n_boot == 0:
        return auc, None
    y = _as_labels(y_true)
    s = _as_vector(score, "scores")
    pos, neg = s[y], s[~y]
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        aucs[b] = _auc_from_split(
            pos[rng.integers(0, len(pos), size=len(pos))],
            neg[rng.integers(0, len(neg), size=len(neg))],
        )
    return auc, _percentile_ci(aucs, alpha)


def _delong_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components for k score sets, by midranks (Sun & Xu 2014).

    `pos` (k, m) and `neg` (k, n) hold the scores of the m positive and n negative cases. Returns
    aucs (k,), v_pos (k, m) = placement of each positive among the negatives (share of negatives it
    beats, ties one half) and v_neg (k, n) = share of positives that beat each negative. Midranks
    give these in O((m + n) log(m + n)) instead of DeLong's O(m n) pairwise comparisons.
    """
    from scipy.stats import rankdata  # where used, like roc_auc_score

    k, m = pos.shape
    n = neg.shape[1]
    aucs = np.empty(k)
    v_pos = np.empty((k, m))
    v_neg = np.empty((k, n))
    for r in range(k):
        rank_all = rankdata(np.concatenate([pos[r], neg[r]]))
        rank_pos = rankdata(pos[r])
        rank_neg = rankdata(neg[r])
        # Rank among all minus rank among own class = number of the other class below (ties 1/2).
        v_pos[r] = (rank_all[:m] - rank_pos) / n
        v_neg[r] = 1.0 - (rank_all[m:] - rank_neg) / m
        aucs[r] = v_pos[r].mean()
    return aucs, v_pos, v_neg


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, Any]:
    """Paired DeLong test of AUC(a) = AUC(b) for two score sets on the same cases.

    DeLong, DeLong & Clarke-Pearson (1988), Biometrics 44:837, in the fast midrank form of Sun & Xu
    (2014), IEEE SPL 21:1389. The covariance of the two AUCs is estimated from the placement values
    of the same cases, so the correlation between the two scorers (same cases, often similar
    errors) is accounted for; an unpaired test would be far too conservative.

    Returns auc_a, auc_b, difference (a - b), z, two-sided normal p_value, and ci95, the normal
    approximation difference +- 1.96 * SE (not clipped to [-1, 1]). When the variance of the
    difference is zero (e.g. identical scores, or both classifiers perfectly separating) the
    normal approximation says nothing; rather than a NaN or an infinite z, we report z = 0.0,
    p = 1.0 and a zero-width CI, a deliberately conservative choice: check such cases with
    `paired_bootstrap_difference`.
    """
    y = _as_labels(y_true)
    a = _as_vector(score_a, "scores a")
    b = _as_vector(score_b, "scores b")
    if not len(a) == len(b) == len(y):
        raise ValueError(f"labels ({len(y)}), scores a ({len(a)}) and b ({len(b)}) differ in length")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong test needs at least 2 positives and 2 negatives, got {m} and {n}")
    scores = np.stack([a, b])
    aucs, v_pos, v_neg = _delong_components(scores[:, y], scores[:, ~y])
    cov = np.cov(v_pos) / m + np.cov(v_neg) / n
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    diff = float(aucs[0] - aucs[1])
    if var <= _ZERO_VAR:
        z, p, se = 0.0, 1.0, 0.0
    else:
        se = float(np.sqrt(var))
        z = diff / se
        p = float(min(1.0, 2.0 * ndtr(-abs(z))))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": diff,
        "z": float(z),
        "p_value": p,
        "ci95": [diff - _Z975 * se, diff + _Z975 * se],
    }


# --- Bootstrap of a difference ---------------------------------------------------------------------


def paired_bootstrap_difference(
    stat_a: Callable[[np.ndarray], float],
    stat_b: Callable[[np.ndarray], float],
    n: int,
    n_boot: int,
    seed: int,
    level: float = 0.95,
    n_b: int | None = None,
) -> dict[str, Any]:
    """Bootstrap of stat_a - stat_b, where each statistic takes an index array into its items.

    Paired (`n_b` None): both statistics get the *same* resampled indices of 0..n-1, for items
    aligned across a and b (the same source image edited by two models), so shared per-item
    variation cancels. Unpaired (`n_b` given): a gets a resample of 0..n-1, b an independent one of
    0..n_b-1, for sets with no item correspondence.

    Returns value (the difference on all items), ci95 (percentile interval at `level`), p_value,
    significant (the CI excludes 0), test, B and seed. The p-value is the two-sided bootstrap
    p = min(1, 2 * min(share of resampled differences <= 0, share >= 0)); its resolution is 1/B,
    so p = 0 means "below 1/B", not zero: report B alongside it.
    Raises ValueError when a statistic returns a non-finite number, because a NaN would silently
    drop out of the quantiles and give a misleading interval.
    """
    alpha = _check_level(level)
    n_boot = _check_n_boot(n_boot, 1)
    if int(n) != n or n < 2:
        raise ValueError(f"bootstrap needs at least 2 items, got n={n!r}")
    if n_b is not None and (int(n_b) != n_b or n_b < 2):
        raise ValueError(f"bootstrap needs at least 2 items in set b, got n_b={n_b!r}")
    n = int(n)
    paired = n_b is None
    size_b = n if paired else int(n_b)  # type: ignore[arg-type]

    def difference(idx_a: np.ndarray, idx_b: np.ndarray) -> float:
        da, db = float(stat_a(idx_a)), float(stat_b(idx_b))
        if not (np.isfinite(da) and np.isfinite(db)):
            raise ValueError(f"bootstrap statistic returned a non-finite value (a={da}, b={db})")
        return da - db

    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    with one_blas_thread():  # small products per resample: see ldbench.metrics.intervals
        value = difference(np.arange(n), np.arange(size_b))
        for i in range(n_boot):
            idx_a = rng.integers(0, n, size=n)
            idx_b = idx_a if paired else rng.integers(0, size_b, size=size_b)
            diffs[i] = difference(idx_a, idx_b)
    low, high = _percentile_ci(diffs, alpha)
    p = min(1.0, 2.0 * min(float(np.mean(diffs <= 0.0)), float(np.mean(diffs >= 0.0))))
    return {
        "value": value,
        "ci95": [low, high],
        "p_value": p,
        "significant": bool(low > 0.0 or high < 0.0),
        "test": "paired bootstrap" if paired else "unpaired bootstrap",
        "B": n_boot,
        "seed": seed,
        "level": level,
    }


# --- Multiple comparisons --------------------------------------------------------------------------

P_ADJUST_METHODS = ("holm", "bh", "none")


def adjust_p_values(p_values, method: str = "holm") -> np.ndarray:
    """p-values adjusted for testing them all at once, in the input order.

    - "holm": Holm (1979), Scand. J. Statist. 6:65, step-down Bonferroni: sorted ascending, the i-th
      (1-based) of m gets max over j <= i of min(1, (m - j + 1) p_(j)). Controls the family-wise error
      rate at alpha (p_adjusted < alpha) under any dependence between the tests.
    - "bh": Benjamini & Hochberg (1995), JRSS B 57:289, step-up: the i-th gets min over j >= i of
      min(1, m p_(j) / j). Controls the false discovery rate for independent or positively
      dependent tests.
    - "none": the p-values unchanged.
    Equal to statsmodels' multipletests(p, method="holm" / "fdr_bh")[1]. An empty input gives an
    empty array.
    """
    if method not in P_ADJUST_METHODS:
        raise UserError(f"unknown multiple-comparison correction {method!r}; use one of {', '.join(P_ADJUST_METHODS)}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {p.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p-values must be finite and in [0, 1]")
    m = len(p)
    if method == "none" or m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ranked))
    else:
        adjusted = np.minimum.accumulate(np.minimum(1.0, m * ranked / rank)[::-1])[::-1]
    out = np.empty(m)
    out[order] = adjusted
    return out
