"""FD∞ (Chong & Forsyth 2020): closer to the true distance than the plain FD of a small set."""

import numpy as np
import pytest

from ldbench.errors import UserError
from ldbench.metrics.extrapolation import (
    ExtrapolationOptions,
    ReferenceFD,
    fd_inf_record,
    fd_infinity,
    subset_sizes,
)
from ldbench.metrics.intervals import CI_RECENTRED
from ldbench.metrics.math import frechet_distance, gaussian_stats
from ldbench.metrics.scores import display_name, metric_info

D = 16
REF_MU, REF_SIGMA = np.zeros(D), np.eye(D)
GEN_MU, GEN_SIGMA = np.r_[0.5, np.zeros(D - 1)], np.diag(np.linspace(0.6, 1.4, D))


def test_reference_fd_equals_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(D, D))
    ref_sigma = a @ a.T / D
    fd = ReferenceFD(np.ones(D), ref_sigma)
    for n in (5, 40, 200):  # rank-deficient and full-rank sets
        x = rng.normal(size=(n, D))
        assert fd(x) == pytest.approx(frechet_distance(*gaussian_stats(x), np.ones(D), ref_sigma), rel=1e-9, abs=1e-12)


def test_subset_sizes_are_even_in_one_over_n():
    sizes = subset_sizes(200)
    assert sizes[0] == 50 and sizes[-1] == 200 and len(sizes) == 15
    assert np.all(np.diff(sizes) > 0)
    steps = np.diff(1.0 / sizes)
    assert np.allclose(steps, steps.mean(), rtol=0.25)  # even up to rounding N to an integer
    with pytest.raises(UserError):
        subset_sizes(10, min_size=10)
    with pytest.raises(UserError):
        subset_sizes(10, n_sizes=1)


def test_exact_line_is_recovered():
    # a statistic that is exactly 2 + 30 / N gives intercept 2 and slope 30
    fit = fd_infinity(np.zeros((100, 1)), lambda f: 2.0 + 30.0 / len(f), subset_sizes(100), seed=0)
    assert fit["value"] == pytest.approx(2.0) and fit["slope"] == pytest.approx(30.0)
    assert fit["intercept_se"] == pytest.approx(0.0, abs=1e-9)


def test_fd_inf_is_closer_to_the_true_distance_than_fd_at_small_n():
    true = frechet_distance(GEN_MU, GEN_SIGMA, REF_MU, REF_SIGMA)
    fd = ReferenceFD(REF_MU, REF_SIGMA)
    sizes = subset_sizes(120)
    err_fd, err_inf = [], []
    for seed in range(20):
        f = np.random.default_rng(seed).multivariate_normal(GEN_MU, GEN_SIGMA, size=120)
        err_fd.append(fd(f) - true)
        err_inf.append(fd_infinity(f, fd, sizes, seed)["value"] - true)
    # FD of 120 samples in 16 dimensions is biased upwards by more than the distance itself (~ +0.67);
    # FD∞ removes most of that (~0.17 mean absolute error, measured)
    assert np.mean(err_fd) > 0.4
    assert np.mean(np.abs(err_inf)) < 0.5 * np.mean(np.abs(err_fd))


def test_fd_inf_record_has_fit_details_and_a_containing_ci():
    f = np.random.default_rng(1).multivariate_normal(GEN_MU, GEN_SIGMA, size=80)
    opts = ExtrapolationOptions(n_sizes=8, n_boot=30, seed=3)
    rec = fd_inf_record(f, REF_MU, REF_SIGMA, extractor="domain", family="domain", options=opts)
    assert rec["metric"] == "fd_inf" and rec["n"] == 80 and rec["ci_method"] == CI_RECENTRED
    assert rec["ci95"][0] <= rec["value"] <= rec["ci95"][1]
    assert rec["sizes"][0] == 20 and rec["sizes"][-1] == 80 and len(rec["fds"]) == len(rec["sizes"])
    assert rec["slope"] > 0 and rec["value"] < rec["fd_at_n"]
    assert rec == fd_inf_record(f, REF_MU, REF_SIGMA, extractor="domain", family="domain", options=opts)  # seeded
    inc = fd_inf_record(f, REF_MU, REF_SIGMA, extractor="inception", family="inception",
                        options=ExtrapolationOptions(n_sizes=5, n_boot=0))
    assert inc["metric"] == "fid_inf" and inc["ci95"] is None
    assert display_name("fid_inf", "inception") == "FID∞" and display_name("fd_inf", "domain") == "FD∞ [domain]"
    assert not metric_info("fd_inf").higher_is_better and metric_info("fid_inf").group == "realism"


def test_ld_effects_test_fd_inf_as_a_set_statistic():
    from ldbench.config import Evaluation
    from ldbench.drift import NO_DRIFT, Drift
    from ldbench.runner.effects import CellEvidence, ld_effects

    class Stats:
        mu, sigma, features = REF_MU, REF_SIGMA, None

    rng = np.random.default_rng(2)
    base = rng.normal(size=(80, D))
    opts = ExtrapolationOptions(n_sizes=5, n_boot=0)

    def cell(drift, f):
        rec = fd_inf_record(f, REF_MU, REF_SIGMA, extractor="domain", family="domain", options=opts)
        details = {k: v for k, v in rec.items() if k not in ("metric", "value", "ci95", "n", "extractor")}
        return CellEvidence(dataset="d", method="m", editor="e", seed=0, drift=drift,
                            records=[{**{k: rec[k] for k in ("metric", "value", "n", "extractor")}, "details": details}],
                            items={}, features={"domain": f}, pairing="same", stats={"domain": Stats()})

    effects = ld_effects([cell(NO_DRIFT, base), cell(Drift(0.1, train="noise", sample="init"), base + 1.0)],
                         Evaluation(bootstrap=40))
    assert len(effects) == 1 and effects[0]["metric"] == "fd_inf"
    assert effects[0]["difference"] > 5 and effects[0]["significant"]
