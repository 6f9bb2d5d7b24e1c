"""Significance helpers: bootstrap CIs, AUC, DeLong (against the original pairwise formulas), paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ldbench.errors import UserError
from ldbench.metrics.significance import (
    auc_with_ci,
    binary_auc,
    delong_test,
    mean_with_ci,
    paired_bootstrap_difference,
)


def _delong_brute_force(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. 1988 written out: pairwise kernel psi, placement values V10/V01, S = S10/m + S01/n."""
    y = y.astype(bool)
    v10, v01, aucs = [], [], []
    for s in (a, b):
        x, z = s[y], s[~y]
        psi = np.array([[1.0 if xi > zj else 0.5 if xi == zj else 0.0 for zj in z] for xi in x])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))  # one per positive
        v01.append(psi.mean(axis=0))  # one per negative
    m, n = int(y.sum()), int((~y).sum())
    s10 = np.array(
        [[np.sum((v10[r] - aucs[r]) * (v10[c] - aucs[c])) / (m - 1) for c in range(2)] for r in range(2)]
    )
    s01 = np.array(
        [[np.sum((v01[r] - aucs[r]) * (v01[c] - aucs[c])) / (n - 1) for c in range(2)] for r in range(2)]
    )
    s = s10 / m + s01 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    return aucs[0], aucs[1], var


# --- mean_with_ci ----------------------------------------------------------------------------------


def test_mean_with_ci_contains_mean_and_is_seeded():
    v = np.random.default_rng(0).normal(1.0, 0.5, size=200)
    mean, ci = mean_with_ci(v, n_boot=500, seed=3)
    assert mean == pytest.approx(v.mean())
    assert ci is not None and ci[0] < mean < ci[1]
    # Width near 2 * 1.96 * sd / sqrt(n).
    assert ci[1] - ci[0] == pytest.approx(2 * 1.96 * v.std() / np.sqrt(len(v)), rel=0.2)
    assert mean_with_ci(v, n_boot=500, seed=3) == (mean, ci)
    assert mean_with_ci(v, n_boot=500, seed=4)[1] != ci


def test_mean_with_ci_none_cases_and_bad_input():
    assert mean_with_ci(np.array([1.0, 2.0]), n_boot=0, seed=0) == (1.5, None)
    assert mean_with_ci(np.array([2.0]), n_boot=100, seed=0) == (2.0, None)
    with pytest.raises(UserError, match="-1"):
        mean_with_ci(np.array([1.0, 2.0]), n_boot=-1, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        mean_with_ci(np.array([1.0, np.nan]), n_boot=10, seed=0)
    with pytest.raises(ValueError, match="empty"):
        mean_with_ci(np.array([]), n_boot=10, seed=0)


# --- AUC -------------------------------------------------------------------------------------------


def test_binary_auc_separable_and_one_class():
    y = np.array([0, 0, 0, 1, 1, 1])
    assert binary_auc(y, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == 1.0
    assert binary_auc(y, -np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        binary_auc(np.ones(4), np.arange(4.0))


def test_auc_with_ci_random_labels_contains_half_and_matches_sklearn():
    rng = np.random.default_rng(1)
    score = rng.normal(size=300)
    y = rng.permutation(np.repeat([0, 1], 150))
    auc, ci = auc_with_ci(y, score, n_boot=300, seed=0)
    assert auc == pytest.approx(roc_auc_score(y, score))
    assert ci is not None and ci[0] < 0.5 < ci[1]
    assert abs(auc - 0.5) < 0.1
    assert auc_with_ci(y, score, n_boot=300, seed=0) == (auc, ci)
    assert auc_with_ci(y, score, n_boot=0, seed=0) == (auc, None)


def test_auc_with_ci_stratified_keeps_both_classes_with_one_positive_pair():
    # Two positives among many negatives: a plain bootstrap would often draw no positive at all.
    y = np.array([1, 1] + [0] * 30)
    score = np.concatenate([[2.0, 0.3], np.linspace(-1, 1, 30)])
    auc, ci = auc_with_ci(y, score, n_boot=200, seed=0)
    assert ci is not None and 0.0 <= ci[0] <= auc <= ci[1] <= 1.0


# --- DeLong ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = np.array([0] * 9 + [1] * 7)
    a = np.round(rng.normal(size=16) + y, 1)  # rounding makes ties
    b = np.round(rng.normal(size=16) + 0.5 * y + 0.5 * a, 1)
    out = delong_test(y, a, b)
    auc_a, auc_b, var = _delong_brute_force(y, a, b)
    assert out["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert out["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert out["auc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert out["difference"] == pytest.approx(auc_a - auc_b, abs=1e-12)
    assert out["z"] == pytest.approx((auc_a - auc_b) / np.sqrt(var), abs=1e-10)
    half = (out["ci95"][1] - out["ci95"][0]) / 2
    assert half == pytest.approx(1.959963984540054 * np.sqrt(var), abs=1e-10)


def test_delong_identical_scores_gives_p_one_without_nan():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    s = rng.normal(size=40) + y
    out = delong_test(y, s, s.copy())
    assert out["difference"] == 0.0 and out["z"] == 0.0 and out["p_value"] == 1.0
    assert out["ci95"] == [0.0, 0.0]
    assert all(np.isfinite(v) for v in (out["z"], out["p_value"], *out["ci95"]))


def test_delong_clearly_better_score_is_significant():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 100)
    good = rng.normal(size=200) + 2.0 * y
    bad = rng.normal(size=200) + 0.2 * y
    out = delong_test(y, good, bad)
    assert out["difference"] > 0.3 and out["p_value"] < 0.01 and out["ci95"][0] > 0
    assert delong_test(y, bad, good)["z"] == pytest.approx(-out["z"])


def test_delong_p_values_roughly_uniform_under_null():
    # Two independent noise scorers with the same signal: p should not pile up near 0.
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], 40)
    ps = np.array(
        [delong_test(y, rng.normal(size=80) + y, rng.normal(size=80) + y)["p_value"] for _ in range(200)]
    )
    assert 0.02 <= np.mean(ps < 0.05) <= 0.10
    assert 0.4 <= np.mean(ps) <= 0.6


# --- paired bootstrap ------------------------------------------------------------------------------


def test_paired_bootstrap_detects_shift_and_not_zero_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0, 1.0, size=100)  # large shared per-item variation
    a = base + 0.1 + rng.normal(0.0, 0.05, size=100)
    b_same = base + rng.normal(0.0, 0.05, size=100)
    shifted = paired_bootstrap_difference(lambda i: a[i].mean(), lambda i: b_same[i].mean(), 100, 500, seed=1)
    assert shifted["test"] == "paired bootstrap" and shifted["B"] == 500 and shifted["seed"] == 1
    assert shifted["value"] == pytest.approx(a.mean() - b_same.mean())
    assert shifted["significant"] and shifted["ci95"][0] > 0 and shifted["p_value"] < 0.01
    c = base + rng.normal(0.0, 0.05, size=100)
    null = paired_bootstrap_difference(lambda i: c[i].mean(), lambda i: b_same[i].mean(), 100, 500, seed=1)
    assert not null["significant"] and null["ci95"][0] < 0 < null["ci95"][1] and null["p_value"] > 0.05
    # Unpaired resampling cannot cancel the shared variation: the same +0.1 is not detected.
    unpaired = paired_bootstrap_difference(
        lambda i: a[i].mean(), lambda i: b_same[i].mean(), 100, 500, seed=1, n_b=100
    )
    assert unpaired["test"] == "unpaired bootstrap" and not unpaired["significant"]


def test_paired_bootstrap_unpaired_sizes_and_errors():
    a = np.arange(10.0)
    b = np.arange(30.0) + 100
    out = paired_bootstrap_difference(lambda i: a[i].mean(), lambda i: b[i].mean(), 10, 50, seed=0, n_b=30)
    assert out["value"] == pytest.approx(a.mean() - b.mean()) and out["p_value"] == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap_difference(lambda i: float("nan"), lambda i: 0.0, 10, 5, seed=0)
    with pytest.raises(UserError):
        paired_bootstrap_difference(lambda i: 0.0, lambda i: 0.0, 10, 0, seed=0)


# --- multiple comparisons --------------------------------------------------------------------------


def test_adjust_p_values_hand_computed():
    from ldbench.metrics.significance import adjust_p_values

    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max 0.02, 0.03,
    # 0.06, 0.06; back in input order:
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: 4 p / rank = 0.02, 0.02, 0.04, 0.04; running min from the largest: unchanged; input order:
    assert adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p_values(p, "none") == pytest.approx(p)
    assert adjust_p_values([0.5, 0.9], "holm") == pytest.approx([1.0, 1.0])  # capped at 1
    assert adjust_p_values([], "holm").shape == (0,)
    with pytest.raises(UserError):
        adjust_p_values(p, "bonferroni-ish")
    with pytest.raises(ValueError):
        adjust_p_values([0.1, 1.5], "holm")


@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_p_values_match_statsmodels(method, sm_method):
    from ldbench.metrics.significance import adjust_p_values

    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(4).uniform(0, 0.2, size=40)
    p[[3, 9]] = p[5]  # ties
    assert adjust_p_values(p, method) == pytest.approx(multitest.multipletests(p, method=sm_method)[1], abs=1e-12)


def test_adjust_p_values_keep_order_and_dominate_raw():
    from ldbench.metrics.significance import adjust_p_values

    p = np.random.default_rng(5).uniform(size=50)
    for method in ("holm", "bh"):
        adj = adjust_p_values(p, method)
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1.0)
        order = np.argsort(p)
        assert np.all(np.diff(adj[order]) >= -1e-15)  # monotone in the raw p
    assert np.all(adjust_p_values(p, "bh") <= adjust_p_values(p, "holm") + 1e-15)
