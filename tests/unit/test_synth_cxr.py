"""synth-cxr: deterministic, real lung outlines, counterfactuals change only the heart, every attribute has a measurable
effect, longitudinal progression, captions."""

from __future__ import annotations

import numpy as np
import pytest

from ldbench.data import create_dataset
from ldbench.data.base import SPLITS
from ldbench.data.pairs import longitudinal_pairs
from ldbench.errors import UserError

S = 64
_U = (np.arange(S) + 0.5) / S * 2.0 - 1.0
Y, X = np.meshgrid(_U, _U, indexing="ij")


def box(x0, x1, y0, y1, mirrored=False):
    xx = np.abs(X) if mirrored else X
    return (xx >= x0) & (xx <= x1) & (Y >= y0) & (Y <= y1)


@pytest.fixture(scope="module")
def prepared():
    return create_dataset("synth-cxr").prepare(), None  # defaults: 200 patients x 2 visits at 64 x 64


def test_defaults_well_formed(prepared):
    p, _ = prepared
    t, cf = p.table, p.counterfactuals
    assert t.images.shape == (400, S, S) and t.images.dtype == np.float32
    assert cf is not None and cf.images.shape == t.images.shape
    assert 0.0 <= t.images.min() and t.images.max() <= 1.0
    assert set(t.attributes["split"]) == set(SPLITS)
    owner = {}
    for s, split in zip(t.attributes["subject"], t.attributes["split"], strict=True):
        assert owner.setdefault(s, split) == split
    assert len(longitudinal_pairs(t)) == 200
    assert t.attributes["cardiomegaly"].mean() == pytest.approx(0.4)
    assert set(t.attributes["sex"]) == {"F", "M"}


def test_deterministic():
    a = create_dataset("synth-cxr", n_subjects=6, visits=2, seed=3).prepare()
    b = create_dataset("synth-cxr", n_subjects=6, visits=2, seed=3).prepare()
    c = create_dataset("synth-cxr", n_subjects=6, visits=2, seed=4).prepare()
    assert a.table.content_hash() == b.table.content_hash()
    assert a.counterfactuals.content_hash() == b.counterfactuals.content_hash()
    assert a.table.content_hash() != c.table.content_hash()


def test_counterfactual_changes_only_the_heart(prepared):
    p, _ = prepared
    t, cf = p.table, p.counterfactuals
    for key in t.attributes:
        if key not in ("cardiomegaly", "ctr"):
            assert np.array_equal(t.attributes[key], cf.attributes[key]), key
    assert np.array_equal(cf.attributes["cardiomegaly"], 1 - t.attributes["cardiomegaly"])
    diff = np.abs(t.images - cf.images) > 1e-6
    assert diff.reshape(len(t), -1).any(axis=1).all()  # every counterfactual changes something
    heart_zone = box(-0.7, 0.9, -0.4, 0.8)
    assert not diff[:, ~heart_zone].any()  # and nothing outside the heart's reach
    # the image with cardiomegaly is always denser on the heart's side (the heart displaces lung air)
    side = box(0.2, 0.7, 0.0, 0.5)
    card = t.attributes["cardiomegaly"] == 1
    with_card = np.where(card, t.images[:, side].mean(1), cf.images[:, side].mean(1))
    without = np.where(card, cf.images[:, side].mean(1), t.images[:, side].mean(1))
    assert (with_card > without + 0.01).all()
    assert (cf.attributes["ctr"][card] < 0.5).all() and (t.attributes["ctr"][card] > 0.5).all()


def test_attribute_effects_are_measurable(prepared):
    t = prepared[0].table
    a = t.attributes

    def effect(mask_rows, region):
        m = t.images[:, region].mean(1)
        return m[mask_rows].mean() - m[~mask_rows].mean()

    costophrenic = box(0.45, 0.72, 0.2, 0.45, mirrored=True)
    assert effect(a["pleural_effusion"] == 1, costophrenic) > 0.04
    lungs = box(0.2, 0.6, -0.1, 0.4, mirrored=True)
    assert effect(a["consolidation"] == 1, lungs) > 0.015
    breasts = box(0.35, 0.75, 0.1, 0.45, mirrored=True)
    assert effect(a["sex"] == "F", breasts) > 0.04
    upper = box(-0.9, 0.9, -0.9, -0.5)
    assert abs(effect(a["pleural_effusion"] == 1, upper)) < 0.02  # effusion acts at the bases only


def test_longitudinal_progression():
    t = create_dataset("synth-cxr", n_subjects=30, visits=4).prepare().table
    a = t.attributes
    for s in np.unique(a["subject"]):
        rows = np.flatnonzero(a["subject"] == s)
        rows = rows[np.argsort(a["visit"][rows])]
        assert (np.diff(a["ctr"][rows]) > 0).all()
        assert (np.diff(a["age"][rows]) == pytest.approx(1.0))
        assert (np.diff(a["pleural_effusion"][rows]) >= 0).all()  # once present, it stays
        assert len(set(a["cardiomegaly"][rows])) == 1
    assert 0 < a["pleural_effusion"].mean() < 1


def test_captions_and_counterfactual_rows():
    ds = create_dataset("synth-cxr", n_subjects=3, visits=1)
    row = {"subject": "sc-0000", "visit": 0, "split": "train", "age": 60.0, "sex": "M", "cardiomegaly": 1,
           "pleural_effusion": 0, "consolidation": 0, "ctr": 0.56}
    assert ds.caption(row) == "chest x-ray, cardiomegaly"
    flipped = ds.counterfactual_row(row)
    assert flipped == {**row, "cardiomegaly": 0}
    assert ds.caption(flipped) == "chest x-ray, no finding"
    assert ds.caption({**row, "pleural_effusion": 1}) == "chest x-ray, cardiomegaly, pleural effusion"
    with pytest.raises(UserError):
        ds.caption({**row, "cardiomegaly": 2})
    for bad in ({"n_subjects": 2}, {"image_size": 8}, {"cardiomegaly_fraction": 1.5}, {"visits": 0}):
        with pytest.raises(UserError):
            create_dataset("synth-cxr", **bad)


def test_smoke_cxr_suite_is_valid():
    from ldbench.config import available_suites, load_suite

    assert "smoke-cxr" in available_suites()
    suite = load_suite("smoke-cxr")
    assert [d.name for d in suite.datasets] == ["synth-cxr"]
