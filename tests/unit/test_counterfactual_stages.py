"""Counterfactual evaluation plumbing: attribute tasks, the axioms on an identity editor, and LD effects."""

import numpy as np
import pytest

from ldbench.config import Evaluation
from ldbench.data.base import ImageTable
from ldbench.drift import NO_DRIFT, Drift
from ldbench.metrics.counterfactual_scores import image_similarity
from ldbench.runner import counterfactual_stages as cf
from ldbench.runner.effects import CellEvidence, ld_effects


def test_attribute_tasks_pick_the_disease_as_positive():
    assert cf.attribute_task(np.array(["CN", "AD", "CN"])) == ("binary", "AD")
    assert cf.attribute_task(np.array([0, 1, 1])) == ("binary", 1)
    assert cf.attribute_task(np.array([61.5, 70.2, 80.0])) == ("regression", None)
    assert cf.attribute_task(np.array(["a", "b", "c"])) is None
    table = ImageTable(np.zeros((3, 8, 8), np.float32), {
        "subject": np.array(["s1", "s2", "s3"]), "visit": np.array([0, 0, 0]), "split": np.array(["test"] * 3),
        "age": np.array([60.0, 70.0, 75.5]), "diagnosis": np.array(["CN", "AD", "AD"])})
    assert cf.predictable_attributes(table) == {"age": ("regression", None), "diagnosis": ("binary", "AD")}
    assert cf.effectiveness_attributes({"changes": ["diagnosis"]}, table) == ["diagnosis"]
    assert cf.effectiveness_attributes({"changes": []}, table) == ["age", "diagnosis"]  # text2img: all


def test_identity_edit_scores_perfect_identity_composition_and_reversibility(monkeypatch):
    """An editor that returns its input unchanged: L1 0 after 1 and k null edits and after a round trip,
    SSIM 1 and L1 0 against the source. (run_edits is replaced by the identity: the autoencoder's round trip
    is not part of the axioms' plumbing under test.)"""
    import ldbench.generate as generate

    calls = []

    def identity(editor, parts, dataset, request, settings, quiet=False, desc=None):
        calls.append((len(request.images), settings.seed))
        return request.images.copy(), None, [""] * len(request.images)

    monkeypatch.setattr(generate, "run_edits", identity)
    rng = np.random.default_rng(0)
    images = rng.random((5, 16, 16)).astype(np.float32)
    rows = {"subject": np.array([f"s{i}" for i in range(5)]), "visit": np.zeros(5, int),
            "split": np.array(["test"] * 5), "diagnosis": np.array(["CN", "AD", "CN", "AD", "CN"])}
    test = ImageTable(images, rows)
    generated = {"images": images[[2, 0, 1]], "source_index": np.array([2, 0, 1])}
    plan = {"target_rows": [dict(test.row(i), diagnosis="AD") for i in (2, 0, 1)], "changes": ["diagnosis"]}
    ev = Evaluation(axiom_items=3, null_edits=4)
    edits = cf.EditContext(None, None, None, None, NO_DRIFT, seed=7, quiet=True)
    out = cf.axiom_metrics(edits, test, generated, plan, ev)
    assert set(out) == {"composition_l1:1", "composition_l1:4", "reversibility_l1"}
    for values in out.values():
        np.testing.assert_array_equal(values, 0.0)
    assert [c[1] for c in calls] == [8, 9, 10, 11, 12]  # a fresh seed per null edit, then the way back
    sim = image_similarity(generated["images"], test.images[generated["source_index"]])
    np.testing.assert_array_equal(sim["ssim"], 1.0)
    np.testing.assert_array_equal(sim["l1"], 0.0)


def _evidence(drift, values, auc_scores, y, features):
    return CellEvidence(dataset="d", method="m", editor="e", seed=0, drift=drift,
                        records=[{"metric": "source_l1", "value": float(values.mean()), "extractor": "pixels", "n": 50,
                                  "details": {}},
                                 {"metric": "auc_synthetic", "value": 0.0, "extractor": "classifier", "n": len(y),
                                  "details": {}},
                                 {"metric": "fd", "value": 0.0, "extractor": "domain", "n": 50, "details": {}}],
                        items={"mean__source_l1": values, "auc_y__auc_synthetic": y, "auc_score__auc_synthetic": auc_scores},
                        features={"domain": features}, pairing="same", stats={"domain": _Stats()})


class _Stats:
    mu = np.zeros(3)
    sigma = np.eye(3)
    features = None


def test_ld_effects_find_a_real_shift_and_not_a_null_one():
    rng = np.random.default_rng(1)
    base_vals = rng.random(50)
    y = np.repeat([0.0, 1.0], 30)
    base_scores = y + rng.normal(0, 2.0, 60)
    good_scores = y + rng.normal(0, 0.3, 60)
    feats = rng.normal(size=(50, 3))
    ev = Evaluation(bootstrap=300)
    ld = Drift(0.1, train="noise", sample="init")
    effects = ld_effects([_evidence(NO_DRIFT, base_vals, base_scores, y, feats),
                          _evidence(ld, base_vals + 0.1, good_scores, y, feats + 2.0)], ev)
    by_metric = {e["metric"]: e for e in effects}
    assert by_metric["source_l1"]["test"] == "paired bootstrap"
    assert by_metric["source_l1"]["significant"] and by_metric["source_l1"]["difference"] == pytest.approx(0.1)
    assert by_metric["auc_synthetic"]["test"] == "DeLong (paired)" and by_metric["auc_synthetic"]["p_value"] < 0.01
    assert by_metric["fd"]["significant"] and by_metric["fd"]["ci95"][0] > 0
    same = ld_effects([_evidence(NO_DRIFT, base_vals, base_scores, y, feats),
                       _evidence(ld, base_vals, base_scores, y, feats)], ev)
    # identical per-item evidence (e.g. a shared classifier arm) is not "tested"; the set metric still is
    assert {e["metric"] for e in same} == {"fd"}
    assert not same[0]["significant"] and same[0]["difference"] == 0
