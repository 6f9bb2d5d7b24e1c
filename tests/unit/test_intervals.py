"""Intervals for biased set statistics: always contain the estimate, cover the truth at about the nominal rate."""

import numpy as np
import pytest

from ldbench.metrics.intervals import (
    CI_RECENTRED,
    bootstrap_ci,
    bootstrap_values,
    containing_bootstrap_ci,
    percentile_interval,
    recentred_interval,
)
from ldbench.metrics.math import bootstrap_ci as bootstrap_ci_compat
from ldbench.metrics.math import frechet_distance, gaussian_stats


def _fd_2d(mu: np.ndarray, cov: np.ndarray, mu_r: np.ndarray, cov_r: np.ndarray) -> np.ndarray:
    """Closed-form Fréchet distance of 2-D Gaussians, vectorised over leading axes:
    tr sqrt(A B) = sqrt(tr(A B) + 2 sqrt(det(A B))) for 2 x 2 PSD A, B."""
    m = cov @ cov_r
    tr_sqrt = np.sqrt(np.trace(m, axis1=-2, axis2=-1) + 2.0 * np.sqrt(np.clip(np.linalg.det(m), 0.0, None)))
    d = mu - mu_r
    return np.clip((d * d).sum(-1) + np.trace(cov, axis1=-2, axis2=-1) + np.trace(cov_r) - 2.0 * tr_sqrt, 0.0, None)


def _batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(-2)
    c = x - mu[..., None, :]
    return mu, np.swapaxes(c, -1, -2) @ c / (x.shape[-2] - 1)


def test_closed_form_2d_matches_frechet_distance():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=(2, 2, 2))
        cov1, cov2 = a @ a.T + 0.1 * np.eye(2), b @ b.T + 0.1 * np.eye(2)
        mu1, mu2 = rng.normal(size=(2, 2))
        assert float(_fd_2d(mu1, cov1, mu2, cov2)) == pytest.approx(frechet_distance(mu1, cov1, mu2, cov2), rel=1e-9)


@pytest.mark.parametrize("values", [
    np.linspace(5.0, 9.0, 200),  # every resample above the estimate
    np.linspace(-9.0, -5.0, 200),  # every resample below it
    np.full(50, 3.0),  # no spread at all
    np.r_[np.full(199, 1.0), 1e6],  # one wild resample
    np.array([2.0]),
])
def test_recentred_interval_always_contains_the_estimate(values):
    for estimate in (0.0, 1.0, 2.5, -3.0):
        low, high = recentred_interval(estimate, values)
        assert low <= estimate <= high
        q_lo, q_hi = percentile_interval(values)
        assert high - low == pytest.approx(q_hi - q_lo, abs=1e-9)  # shifted, not widened
    low, high = recentred_interval(0.5, np.linspace(5.0, 9.0, 200), lower_bound=0.0)
    assert low == 0.0 and high > 0.5  # clipped at the statistic's range, still containing it


def test_recentred_interval_rejects_bad_input():
    with pytest.raises(ValueError):
        recentred_interval(1.0, np.array([]))
    with pytest.raises(ValueError):
        recentred_interval(1.0, np.array([1.0, np.nan]))
    with pytest.raises(ValueError):
        recentred_interval(1.0, np.array([1.0, 2.0]), level=1.0)


def test_small_set_fd_percentile_misses_the_estimate_the_recentred_interval_does_not():
    # n barely above d and nearly equal distributions: every resample's FD is above the estimate
    rng = np.random.default_rng(3)
    ref_mu, ref_sigma = np.zeros(8), np.eye(8)
    feats = rng.normal(size=(40, 8))

    def fd(f: np.ndarray) -> float:
        return frechet_distance(*gaussian_stats(f), ref_mu, ref_sigma)

    value = fd(feats)
    p_lo, _ = bootstrap_ci(fd, feats, 100, seed=0)
    assert p_lo > value  # the failure this module exists for
    low, high = containing_bootstrap_ci(fd, feats, 100, seed=0, lower_bound=0.0)
    assert 0.0 <= low <= value <= high
    assert (low, high) == containing_bootstrap_ci(fd, feats, 100, seed=0, lower_bound=0.0)  # seeded


def test_recentred_fd_interval_covers_the_true_distance_at_the_nominal_rate():
    """200 seeded trials, d = 2, n = 300, B = 200: the estimator's bias (~0.013) is small against its spread
    (~0.07), where the interval should cover at about 95 %. Band [0.90, 0.99]: 0.95 +- 3 binomial standard
    errors of a proportion over 200 trials (sqrt(.95 * .05 / 200) = 0.015), plus room for the bootstrap's
    known slight under-coverage at finite n; a percentile interval of the biased resamples is lower
    (0.93 here, 0.90 in the 0.08-distance regime) and one missing its estimate would be far lower."""
    mu_r, cov_r = np.zeros(2), np.eye(2)
    mu_g, cov_g = np.array([0.5, 0.0]), np.diag([1.5, 0.7])
    true = float(_fd_2d(mu_g, cov_g, mu_r, cov_r))
    n, n_boot, trials = 300, 200, 200
    covered = 0
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        x = rng.multivariate_normal(mu_g, cov_g, size=n)
        estimate = float(_fd_2d(*_batch_stats(x), mu_r, cov_r))
        values = _fd_2d(*_batch_stats(x[rng.integers(0, n, size=(n_boot, n))]), mu_r, cov_r)
        low, high = recentred_interval(estimate, values, 0.95, lower_bound=0.0)
        assert low <= estimate <= high
        covered += low <= true <= high
    assert 0.90 <= covered / trials <= 0.99


def test_bootstrap_values_are_seeded_and_checked():
    f = np.arange(20.0)[:, None]
    a = bootstrap_values(lambda x: float(x.mean()), f, 30, seed=2)
    assert np.array_equal(a, bootstrap_values(lambda x: float(x.mean()), f, 30, seed=2))
    with pytest.raises(ValueError):
        bootstrap_values(lambda x: float("nan"), f, 5, seed=0)
    with pytest.raises(ValueError):
        bootstrap_values(lambda x: 0.0, f[:1], 5, seed=0)
    assert bootstrap_ci_compat is bootstrap_ci  # the old import path still works


def test_score_records_name_their_interval_method():
    from ldbench.metrics.scores import DistanceOptions, FeatureSet, feature_distance_metrics

    rng = np.random.default_rng(5)
    ref = rng.normal(size=(120, 6))
    gen = rng.normal(0.05, 1.0, size=(40, 6))
    mu, sigma = gaussian_stats(ref)
    options = DistanceOptions(kid=True, kid_subset_size=20, kid_subsets=10, bootstrap=50, seed=0)
    recs = feature_distance_metrics(FeatureSet(gen), FeatureSet(ref, mu, sigma), family="domain", extractor="domain",
                                    options=options)
    for r in recs:
        assert r["ci_method"] == CI_RECENTRED
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1]


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_resampling_loops_run_on_one_blas_thread_and_give_the_same_bits():
    from threadpoolctl import threadpool_limits

    from ldbench.metrics.extrapolation import ReferenceFD
    from ldbench.metrics.significance import paired_bootstrap_difference

    rng = np.random.default_rng(0)
    ref, gen = rng.normal(size=(60, 24)), rng.normal(0.3, 1.0, size=(60, 24))
    fd = ReferenceFD(ref.mean(axis=0), np.cov(ref, rowvar=False))
    seen = []

    def statistic(f: np.ndarray) -> float:
        seen.append(_blas_threads())
        return fd(f)

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        values = bootstrap_values(statistic, gen, 8, seed=1)
        assert _blas_threads() == before  # the caller's limits come back
        paired_bootstrap_difference(lambda i: statistic(gen[i]), lambda i: statistic(ref[i]), 60, 4, seed=1)
        rs = np.random.default_rng(1)
        by_hand = [fd(gen[rs.integers(0, 60, size=60)]) for _ in range(8)]  # the same resamples, 2 threads
    assert len(seen) == 8 + 2 + 4 * 2 and all(threads == [1] * len(before) for threads in seen)
    assert np.array_equal(values, by_hand)
