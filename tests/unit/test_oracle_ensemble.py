"""Oracle ensembles (ldbench.classify.oracle) and their two-level bootstrap (ldbench.metrics.ensemble)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldbench.classify import ClassifierOptions
from ldbench.classify.oracle import Oracle, read, train_oracle
from ldbench.errors import UserError
from ldbench.metrics.ensemble import ensemble_reading, member_seed
from ldbench.metrics.significance import auc_with_ci, binary_auc, mean_with_ci


def _mae_of(target):
    return lambda pred, idx: float(np.mean(np.abs(pred - target[idx])))


def test_members_that_disagree_widen_the_interval_that_one_member_would_not():
    # every member predicts one constant for all items: the items carry no spread, the members all of it
    target = np.zeros(40)
    predictions = np.arange(1.0, 6.0)[:, None] * np.ones((5, 40))
    value, ci, members = ensemble_reading(_mae_of(target), predictions, 400, seed=0)
    assert value == pytest.approx(3.0) and members == pytest.approx([1, 2, 3, 4, 5])
    assert ci[0] <= value <= ci[1] and ci[1] - ci[0] > 1.0  # a member draw moves the mean by whole units
    _, single = mean_with_ci(np.abs(predictions.mean(axis=0) - target), 400, 0)
    assert single[1] - single[0] == 0.0  # what a bootstrap over images alone would claim


def test_identical_members_give_the_single_classifier_value_and_an_item_interval():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80).astype(float)
    score = y * 0.5 + rng.normal(0, 0.5, 80)
    value, ci, members = ensemble_reading(lambda p, i: binary_auc(y[i], p), np.stack([score] * 3), 300, 2, strata=y)
    assert value == pytest.approx(binary_auc(y, score)) and members == pytest.approx([value] * 3)
    _, items_only = auc_with_ci(y, score, 300, 2)
    assert ci[0] <= value <= ci[1]
    assert ci[1] - ci[0] == pytest.approx(items_only[1] - items_only[0], rel=0.35)


def test_stratified_resamples_keep_both_classes_of_a_rare_positive():
    y = np.zeros(50)
    y[[3, 40]] = 1  # a plain resample would often draw no positive, where AUC is undefined
    predictions = np.random.default_rng(0).random((4, 50))
    value, ci, _ = ensemble_reading(lambda p, i: binary_auc(y[i], p), predictions, 300, 0, strata=y)
    assert ci[0] <= value <= ci[1]


def test_no_interval_without_resamples_or_with_one_item():
    assert ensemble_reading(_mae_of(np.zeros(3)), np.ones((2, 3)), 0, 0)[1] is None
    assert ensemble_reading(_mae_of(np.zeros(1)), np.ones((2, 1)), 100, 0)[1] is None
    with pytest.raises(ValueError, match="members, items"):
        ensemble_reading(_mae_of(np.zeros(3)), np.ones(3), 10, 0)


def test_readings_near_the_ceiling_keep_their_interval_inside_the_range():
    # an ensemble at AUC ~0.99 whose members disagree: the re-centred interval would reach past 1 unclipped
    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 40)
    predictions = np.stack([y + rng.normal(0, 0.4, 80) for _ in range(3)])  # members 0.94-0.98, ensemble 0.999
    auc = {r.metric: r for r in read(predictions, y, "binary", 300, 0)}["auc"]
    assert 0.0 <= auc.ci95[0] <= auc.value <= auc.ci95[1] <= 1.0

    def statistic(p, i):
        return binary_auc(y[i], p)

    _, unclipped, _ = ensemble_reading(statistic, predictions, 300, 0, strata=y)
    _, clipped, _ = ensemble_reading(statistic, predictions, 300, 0, strata=y, bounds=(0.0, 1.0))
    assert unclipped[1] > 1.0 and clipped == (unclipped[0], 1.0)  # the case this guards against occurs


def test_member_seeds_are_distinct_and_fixed():
    seeds = {member_seed(s, i) for s in range(4) for i in range(8)}
    assert len(seeds) == 32 and member_seed(0, 0) == member_seed(0, 0)
    assert all(0 <= s < 2**32 for s in seeds)


def test_read_names_what_each_task_yields():
    preds = np.array([[0.9, 0.2, 0.7, 0.4], [0.7, 0.4, 0.9, 0.2]])
    readings = {r.metric: r for r in read(preds, np.array([1, 0, 1, 0]), "binary", 50, 0)}
    assert set(readings) == {"auc", "acc"} and readings["auc"].value == 1.0 and readings["acc"].value == 1.0
    assert readings["auc"].per_item == pytest.approx([0.8, 0.3, 0.8, 0.3])  # the ensemble's score per item
    assert [r.metric for r in read(preds, np.array([1, 1, 1, 1]), "binary", 50, 0)] == ["acc"]
    (mae,) = read(np.array([[1.0, 2.0], [3.0, 2.0]]), np.array([0.0, 0.0]), "regression", 50, 0)
    assert mae.metric == "mae" and mae.value == 2.0 and mae.member_values == [1.5, 2.5]


def test_an_oracle_trains_distinct_members_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 64)
    images = np.clip(labels[:, None, None] * 0.4 + 0.3 + rng.normal(0, 0.1, (64, 16, 16)), 0, 1).astype(np.float32)
    options = ClassifierOptions(model="resnet10t", epochs=1, batch_size=16)
    oracle = train_oracle((images, labels.astype(float)), "binary", options, seed=3, n_members=2, quiet=True)
    assert [m.seed for m in oracle.members] == [member_seed(3, 0), member_seed(3, 1)]
    predictions = oracle.predict(images)
    assert predictions.shape == (2, 64) and not np.allclose(predictions[0], predictions[1])
    oracle.save(tmp_path)
    assert np.array_equal(Oracle.load(tmp_path, 2).predict(images), predictions)
    with pytest.raises(UserError, match="member-02.safetensors"):
        Oracle.load(tmp_path, 3)
