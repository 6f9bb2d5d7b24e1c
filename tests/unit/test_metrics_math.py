"""ldbench.metrics.math: closed forms, stability, and parity with torch-fidelity's algorithms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldbench.errors import UserError
from ldbench.metrics.math import (
    RunningMoments,
    bootstrap_ci,
    frechet_distance,
    gaussian_stats,
    kernel_inception_distance,
    prdc,
    rank_warning,
    trace_sqrt_product,
)


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    return rng.standard_normal((n, d)) @ (np.eye(d) + 0.5 * mix) + shift


# --- moments -----------------------------------------------------------------------------------------


def test_running_moments_equal_numpy_mean_and_cov():
    f = _features(257, 12, seed=1, shift=1e3)  # a large mean: the shifted sums must not cancel
    rm = RunningMoments()
    for s, e in [(0, 1), (1, 40), (40, 41), (41, 200), (200, 257)]:
        rm.update(f[s:e])
    assert rm.count == 257
    np.testing.assert_allclose(rm.mean(), f.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rm.covariance(), np.cov(f, rowvar=False), rtol=1e-9, atol=1e-12)


def test_gaussian_stats_equal_numpy():
    f = _features(50, 7, seed=2)
    mu, sigma = gaussian_stats(f)
    np.testing.assert_allclose(mu, f.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-12, atol=1e-14)
    assert mu.dtype == sigma.dtype == np.float64


def test_moments_need_two_rows():
    rm = RunningMoments()
    rm.update(np.ones((1, 3)))
    with pytest.raises(ValueError):
        rm.covariance()
    with pytest.raises(ValueError):
        gaussian_stats(np.ones((1, 3)))


# --- Frechet distance ----------------------------------------------------------------------------------


def test_fd_closed_form_diagonal():
    rng = np.random.default_rng(3)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_fd_closed_form_full_covariance():
    # S2 = c^2 S1 commutes with S1: tr sqrt(S1 S2) = c tr S1, so FD = |dmu|^2 + (1 - c)^2 tr S1
    f = _features(300, 10, seed=4)
    mu1, s1 = gaussian_stats(f)
    mu2 = mu1 + 0.3
    c = 1.7
    expected = 10 * 0.3**2 + (1 - c) ** 2 * np.trace(s1)
    assert frechet_distance(mu1, s1, mu2, c**2 * s1) == pytest.approx(expected, rel=1e-10)


def test_fd_identical_sets_is_zero():
    for n, d in [(200, 16), (10, 64)]:  # full rank and rank-deficient
        mu, sigma = gaussian_stats(_features(n, d, seed=5))
        value = frechet_distance(mu, sigma, mu, sigma)
        assert 0.0 <= value <= 1e-9 * np.trace(sigma)


def test_fd_rank_deficient_is_finite_nonnegative_and_exact():
    d = 64
    a, b = _features(20, d, seed=6), _features(15, d, seed=7, shift=0.2)
    mu1, s1 = gaussian_stats(a)
    mu2, s2 = gaussian_stats(b)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value >= 0.0
    # exact reference: S = Xc^T Xc / (n - 1), so tr sqrt(S1 S2) is the nuclear norm of Xa Xb^T / sqrt(..)
    xa, xb = a - mu1, b - mu2
    nuclear = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / np.sqrt(19 * 14)
    assert trace_sqrt_product(s1, s2) == pytest.approx(nuclear, rel=1e-8)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * nuclear
    assert value == pytest.approx(expected, rel=1e-8)


def test_rank_warning_names_the_numbers():
    text = rank_warning(20, 64)
    assert text is not None and "20" in text and "64" in text
    assert rank_warning(100, 64) is None


def test_fd_agrees_with_torch_fidelity():
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    a, b = _features(400, 32, seed=8), _features(350, 32, seed=9, shift=0.1)
    (mu1, s1), (mu2, s2) = gaussian_stats(a), gaussian_stats(b)
    ref = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, verbose=False)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref[KEY_METRIC_FID], rel=1e-8)


def test_fd_refuses_nan_and_shape_mismatch():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError):
        frechet_distance(mu, sigma * np.nan, mu, sigma)
    with pytest.raises(ValueError):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))


# --- KID ------------------------------------------------------------------------------------------------


def test_kid_is_seeded():
    a, b = _features(60, 16, seed=10), _features(50, 16, seed=11, shift=0.3)
    first = kernel_inception_distance(a, b, 25, 20, seed=7)
    assert kernel_inception_distance(a, b, 25, 20, seed=7) == first
    assert kernel_inception_distance(a, b, 25, 20, seed=8) != first
    assert first[0] > 0


@pytest.mark.parametrize("path", ["whole-set kernels", "per-subset kernels"])
def test_kid_agrees_with_torch_fidelity_including_subset_sampling(path, monkeypatch):
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    import ldbench.metrics.math as metrics_math

    if path == "per-subset kernels":  # the path large sets take
        monkeypatch.setattr(metrics_math, "_FULL_KERNEL_MAX_ENTRIES", 0)
    calls = []
    real = metrics_math._subset_mmds_from_full_kernels
    monkeypatch.setattr(metrics_math, "_subset_mmds_from_full_kernels", lambda *a: calls.append(1) or real(*a))

    a, b = _features(60, 16, seed=12), _features(50, 16, seed=13, shift=0.2)
    ref = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=20,
        kid_subset_size=25,
        rng_seed=3,
        verbose=False,
    )
    mean, std = kernel_inception_distance(a, b, 25, 20, seed=3)
    assert mean == pytest.approx(ref[KEY_METRIC_KID_MEAN], rel=1e-10)
    assert std == pytest.approx(ref[KEY_METRIC_KID_STD], rel=1e-10)
    assert bool(calls) == (path == "whole-set kernels")


def test_kid_subset_larger_than_a_set_is_an_error_naming_the_numbers():
    a, b = _features(60, 4, seed=14), _features(50, 4, seed=15)
    with pytest.raises(UserError) as exc:
        kernel_inception_distance(a, b, 1000, 10, seed=0)
    msg = str(exc.value)
    assert "1000" in msg and "60" in msg and "50" in msg
    with pytest.raises(UserError):
        kernel_inception_distance(a, b, 55, 10, seed=0)  # fits a, not b: never shrunk


# --- bootstrap --------------------------------------------------------------------------------------------


def test_bootstrap_ci_is_seeded_and_brackets_the_statistic():
    f = np.random.default_rng(16).normal(5.0, 2.0, size=(400, 1))

    def stat(x: np.ndarray) -> float:
        return float(x.mean())

    low, high = bootstrap_ci(stat, f, n_boot=300, seed=1)
    assert (low, high) == bootstrap_ci(stat, f, n_boot=300, seed=1)
    assert low < stat(f) < high
    half_width = 1.96 * 2.0 / np.sqrt(400)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.25)


# --- PRDC -------------------------------------------------------------------------------------------------


def _prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    from scipy.spatial.distance import cdist

    rr = np.sort(cdist(real, real), axis=1)[:, k]
    ff = np.sort(cdist(fake, fake), axis=1)[:, k]
    rf = cdist(real, fake)
    return {
        "precision": float((rf < rr[:, None]).any(axis=0).mean()),
        "recall": float((rf < ff[None, :]).any(axis=1).mean()),
        "density": float((rf < rr[:, None]).sum(axis=0).mean() / k),
        "coverage": float((rf.min(axis=1) < rr).mean()),
    }


def test_prdc_matches_a_direct_implementation():
    real, fake = _features(80, 8, seed=17), _features(70, 8, seed=18, shift=0.5)
    got = prdc(real, fake, k=5)
    ref = _prdc_reference(real, fake, 5)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key


def test_prdc_extremes():
    real = _features(40, 4, seed=19)
    same = prdc(real, real, k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(real, real + 1e3, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(UserError):
        prdc(real[:3], real, k=3)
