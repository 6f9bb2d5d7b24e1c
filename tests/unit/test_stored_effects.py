"""The LD effects through the artifact store: read back when their evidence is the same, tested afresh when
any of it changes."""

from types import SimpleNamespace

import numpy as np

from ldbench.config import Evaluation
from ldbench.drift import NO_DRIFT, Drift
from ldbench.runner import effects as effects_module
from ldbench.runner.effects import CellEvidence, ld_effects, stored_ld_effects
from ldbench.store import Store

LD = Drift(0.1, train="noise", sample="init")
EVALUATION = Evaluation(bootstrap=50)


def _cells(shift: float = 0.05, feature_shift: float = 0.3) -> list[CellEvidence]:
    rng = np.random.default_rng(0)
    values, feats = rng.random(30), rng.normal(size=(30, 4))
    ref = rng.normal(size=(40, 4))
    stats = SimpleNamespace(mu=ref.mean(0), sigma=np.cov(ref, rowvar=False), features=ref)

    def cell(drift, s, fs):
        from ldbench.metrics.math import frechet_distance, gaussian_stats

        f = feats + fs
        return CellEvidence(
            dataset="d", method="m", editor="e", seed=0, drift=drift, pairing="same", stats={"toy": stats},
            records=[{"metric": "source_l1", "value": float((values + s).mean()), "extractor": "pixels", "n": 30,
                      "details": {}},
                     {"metric": "fd", "value": frechet_distance(*gaussian_stats(f), stats.mu, stats.sigma),
                      "extractor": "toy", "n": 30, "details": {}}],
            items={"mean__source_l1": values + s}, features={"toy": f})

    return [cell(NO_DRIFT, 0.0, 0.0), cell(LD, shift, feature_shift)]


def test_effects_are_stored_once_and_read_back_equal(tmp_path, monkeypatch):
    store, cells = Store(tmp_path), _cells()
    first = stored_ld_effects(store, cells, EVALUATION)
    assert first == ld_effects(cells, EVALUATION) and {e["metric"] for e in first} == {"source_l1", "fd"}
    assert store.events[-1]["stage"] == "ld-effects" and not store.events[-1]["cached"]
    tests_run = []
    monkeypatch.setattr(effects_module, "ld_effects", lambda *a: tests_run.append(a) or [])
    assert stored_ld_effects(store, _cells(), EVALUATION) == first  # equal evidence, built anew: read back
    assert store.events[-1]["cached"] and not tests_run


def test_any_change_in_the_evidence_or_settings_tests_afresh(tmp_path):
    store = Store(tmp_path)
    stored_ld_effects(store, _cells(), EVALUATION)
    # one per-item value, then one feature value, each with the cell's records left as they were
    item_changed, feature_changed = _cells(), _cells()
    item_changed[1].items["mean__source_l1"][3] += 0.1
    feature_changed[1].features["toy"][3, 1] += 0.1
    for cells in (item_changed, feature_changed):
        assert [r["value"] for c in cells for r in c.records] == [r["value"] for c in _cells() for r in c.records]
        assert stored_ld_effects(store, cells, EVALUATION) == ld_effects(cells, EVALUATION)
        assert not store.events[-1]["cached"]
    stored_ld_effects(store, _cells(), Evaluation(bootstrap=60))
    assert not store.events[-1]["cached"]
    cells = _cells()
    cells[1].stats["toy"].features = cells[1].stats["toy"].features + 1.0  # another reference
    stored_ld_effects(store, cells, EVALUATION)
    assert not store.events[-1]["cached"]
    assert len({e["key"] for e in store.events}) == 5


def test_a_read_only_store_without_the_effects_is_an_error(tmp_path):
    import pytest

    from ldbench.errors import UserError

    with pytest.raises(UserError, match="no ld-effects entry"):
        stored_ld_effects(Store(tmp_path, read_only=True), _cells(), EVALUATION)
