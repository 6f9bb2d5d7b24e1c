import numpy as np
import pytest

from ldbench.data import DATASETS, ImageTable, create_dataset
from ldbench.data.base import SPLITS
from ldbench.data.synthetic.brain import SynthBrain
from ldbench.errors import UserError

N_SUBJECTS, VISITS = 12, 3


@pytest.fixture(scope="module")
def prepared():
    return SynthBrain(n_subjects=N_SUBJECTS, visits=VISITS, seed=0).prepare()


def _dark_inside_brain(images: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """Per image: number of CSF-dark pixels inside the brain (non-zero pixels)."""
    return ((images > 0) & (images < threshold)).sum(axis=(1, 2))


def _by_diagnosis(prepared) -> tuple[np.ndarray, np.ndarray]:
    """(AD images, CN images), row-aligned: each row's AD and CN rendering of the same subject/visit."""
    table, cf = prepared.table, prepared.counterfactuals
    is_ad = (table.attributes["diagnosis"] == "AD")[:, None, None]
    return np.where(is_ad, table.images, cf.images), np.where(is_ad, cf.images, table.images)


def test_registered():
    assert DATASETS.get("synth-brain") is SynthBrain
    ds = create_dataset("synth-brain", n_subjects=5, visits=2)
    assert isinstance(ds, SynthBrain)
    assert ds.name == "synth-brain" and ds.version == "1"


def test_options_round_trip():
    ds = SynthBrain(
        n_subjects=7, visits=2, image_size=48, seed=4, ad_fraction=0.25, split_fractions=(0.6, 0.2, 0.2)
    )
    opts = ds.options()
    assert opts == {
        "n_subjects": 7,
        "visits": 2,
        "image_size": 48,
        "seed": 4,
        "ad_fraction": 0.25,
        "split_fractions": [0.6, 0.2, 0.2],
    }
    assert SynthBrain(**opts).options() == opts


def test_table_layout(prepared):
    table, cf = prepared.table, prepared.counterfactuals
    n = N_SUBJECTS * VISITS
    assert prepared.name == "synth-brain" and prepared.version == "1"
    assert table.images.shape == (n, 64, 64) and table.images.dtype == np.float32
    assert cf is not None and cf.images.shape == table.images.shape and cf.images.dtype == np.float32
    attrs = table.attributes
    assert set(attrs) == {"subject", "visit", "age", "diagnosis", "split"}
    assert attrs["subject"][0] == "sb-0000" and attrs["subject"][-1] == f"sb-{N_SUBJECTS - 1:04d}"
    assert list(attrs["visit"][:VISITS]) == list(range(VISITS))
    assert set(attrs["split"]) == set(SPLITS)
    assert set(attrs["diagnosis"]) == {"CN", "AD"}
    assert (attrs["diagnosis"] == "AD").sum() == N_SUBJECTS // 2 * VISITS  # ad_fraction 0.5, exact
    ages = attrs["age"].reshape(N_SUBJECTS, VISITS)
    assert ages[:, 0].min() >= 60 and ages[:, 0].max() <= 85
    np.testing.assert_allclose(np.diff(ages, axis=1), 2.0, atol=1e-9)
    for s in np.unique(attrs["subject"]):
        rows = attrs["subject"] == s
        assert len(set(attrs["split"][rows])) == 1 and len(set(attrs["diagnosis"][rows])) == 1
    row = table.row(0)
    assert isinstance(row["subject"], str) and isinstance(row["visit"], int) and isinstance(row["age"], float)


def test_counterfactual_attributes(prepared):
    table, cf = prepared.table, prepared.counterfactuals
    for key in ("subject", "visit", "age", "split"):
        np.testing.assert_array_equal(cf.attributes[key], table.attributes[key])
    flipped = np.where(table.attributes["diagnosis"] == "AD", "CN", "AD")
    np.testing.assert_array_equal(cf.attributes["diagnosis"], flipped)
    ds = SynthBrain(n_subjects=3)
    for i in range(len(table)):
        assert ds.counterfactual_row(table.row(i)) == cf.row(i)


def test_value_range_and_black_background(prepared):
    for images in (prepared.table.images, prepared.counterfactuals.images):
        assert images.min() >= 0.0 and images.max() <= 1.0
        for corner in (images[:, :3, :3], images[:, :3, -3:], images[:, -3:, :3], images[:, -3:, -3:]):
            assert np.all(corner == 0.0)
        brain = (images > 0).mean(axis=(1, 2))
        assert np.all((brain > 0.3) & (brain < 0.8))


def test_deterministic(prepared):
    again = SynthBrain(n_subjects=N_SUBJECTS, visits=VISITS, seed=0).prepare()
    np.testing.assert_array_equal(again.table.images, prepared.table.images)
    np.testing.assert_array_equal(again.counterfactuals.images, prepared.counterfactuals.images)
    assert again.table.content_hash() == prepared.table.content_hash()
    other = SynthBrain(n_subjects=N_SUBJECTS, visits=VISITS, seed=1).prepare()
    assert not np.array_equal(other.table.images, prepared.table.images)


def _renderings(prepared, subject: str) -> dict[str, np.ndarray]:
    """diagnosis -> that subject's images (all visits) rendered with that diagnosis."""
    out = {}
    for t in (prepared.table, prepared.counterfactuals):
        rows = t.attributes["subject"] == subject
        out[str(t.attributes["diagnosis"][rows][0])] = t.images[rows]
    return out


def test_subject_reproducible_on_its_own(prepared):
    """A subject's renderings do not depend on n_subjects (its diagnosis rank may)."""
    small = SynthBrain(n_subjects=4, visits=VISITS, seed=0).prepare()
    for s in ("sb-0000", "sb-0003"):
        big, sml = _renderings(prepared, s), _renderings(small, s)
        for d in ("CN", "AD"):
            np.testing.assert_array_equal(big[d], sml[d])
        np.testing.assert_array_equal(
            prepared.table.attributes["age"][prepared.table.attributes["subject"] == s],
            small.table.attributes["age"][small.table.attributes["subject"] == s],
        )


def test_counterfactual_differs_only_inside_brain(prepared):
    table, cf = prepared.table.images, prepared.counterfactuals.images
    np.testing.assert_array_equal(table > 0, cf > 0)  # same brain outline
    changed = table != cf
    assert not np.any(changed & (table == 0))
    assert changed.any(axis=(1, 2)).all()  # every counterfactual changes something


def test_ad_shows_more_atrophy_than_cn(prepared):
    ad, cn = _by_diagnosis(prepared)
    assert np.all(_dark_inside_brain(ad) > _dark_inside_brain(cn))
    # visible, not marginal: on average clearly more CSF
    assert (_dark_inside_brain(ad) - _dark_inside_brain(cn)).mean() > 30


def test_atrophy_increases_with_visit(prepared):
    ad, cn = _by_diagnosis(prepared)
    ad_dark = _dark_inside_brain(ad).reshape(N_SUBJECTS, VISITS)
    cn_dark = _dark_inside_brain(cn).reshape(N_SUBJECTS, VISITS)
    # per subject at the faster (AD) rate; averaged over subjects at the normal rate (noise differs per visit)
    assert np.all(ad_dark[:, -1] > ad_dark[:, 0])
    assert np.all(np.diff(cn_dark.mean(axis=0)) > 0)
    assert np.all(np.diff(ad_dark.mean(axis=0)) > 0)


def test_ad_fraction_extremes():
    none = SynthBrain(n_subjects=4, visits=1, ad_fraction=0.0).prepare()
    assert set(none.table.attributes["diagnosis"]) == {"CN"}
    assert set(none.counterfactuals.attributes["diagnosis"]) == {"AD"}
    quarter = SynthBrain(n_subjects=8, visits=1, ad_fraction=0.25).prepare()
    assert (quarter.table.attributes["diagnosis"] == "AD").sum() == 2


def test_other_image_size():
    p = SynthBrain(n_subjects=3, visits=1, image_size=32).prepare()
    assert p.table.images.shape == (3, 32, 32)
    assert p.table.images[:, 0, 0].max() == 0.0 and p.table.images.max() > 0.5


def test_caption():
    ds = SynthBrain(n_subjects=3)
    assert ds.caption({"age": 72.4, "diagnosis": "AD"}) == "brain mri, 72 year old, alzheimer's disease"
    assert ds.caption({"age": 64.5, "diagnosis": "CN"}) == "brain mri, 65 year old, cognitively normal"
    text = ds.caption({"subject": "sb-0001", "visit": 0, "age": 80.0, "diagnosis": "CN", "split": "train"})
    assert text.isascii() and text == text.lower()
    with pytest.raises(UserError):
        ds.caption({"age": 70.0, "diagnosis": "MCI"})


def test_counterfactual_row():
    ds = SynthBrain(n_subjects=3)
    row = {"subject": "sb-0001", "visit": 1, "age": 70.0, "diagnosis": "CN", "split": "val"}
    assert ds.counterfactual_row(row) == {**row, "diagnosis": "AD"}
    assert ds.counterfactual_row(ds.counterfactual_row(row)) == row
    assert row["diagnosis"] == "CN"  # input untouched
    with pytest.raises(UserError):
        ds.counterfactual_row({**row, "diagnosis": "MCI"})


def test_save_load_round_trip(prepared, tmp_path):
    path = tmp_path / "table.npz"
    prepared.counterfactuals.save(path)
    loaded = ImageTable.load(path)
    assert loaded.content_hash() == prepared.counterfactuals.content_hash()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_subjects": 2},
        {"n_subjects": 10.5},
        {"visits": 0},
        {"image_size": 16},
        {"image_size": 512},
        {"seed": -1},
        {"ad_fraction": 1.5},
        {"ad_fraction": -0.1},
        {"split_fractions": (0.5, 0.5, 0.0)},
        {"split_fractions": (0.5, 0.3, 0.3)},
        {"split_fractions": (0.8, 0.2)},
        {"split_fractions": "abc"},
    ],
)
def test_bad_constructor_values(kwargs):
    with pytest.raises(UserError) as info:
        SynthBrain(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert next(iter(kwargs)) in message
