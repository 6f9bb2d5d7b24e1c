import numpy as np
import pytest

from ldbench.data.base import SPLITS
from ldbench.data.splits import split_counts, subject_splits
from ldbench.errors import UserError

FRACTIONS = (0.7, 0.1, 0.2)


def _rows(n_subjects: int, visits: int = 3) -> np.ndarray:
    return np.repeat(np.array([f"s-{i:03d}" for i in range(n_subjects)]), visits)


@pytest.mark.parametrize("n_subjects", [3, 4, 5, 10, 57, 200])
def test_subject_disjoint_and_every_split_non_empty(n_subjects):
    subjects = _rows(n_subjects)
    splits = subject_splits(subjects, FRACTIONS, seed=0)
    assert splits.shape == subjects.shape
    assert set(splits) == set(SPLITS)
    for s in np.unique(subjects):
        assert len(set(splits[subjects == s])) == 1, s
    per_split = {name: set(subjects[splits == name]) for name in SPLITS}
    assert not per_split["train"] & per_split["val"]
    assert not per_split["train"] & per_split["test"]
    assert not per_split["val"] & per_split["test"]


def test_counts_follow_fractions():
    subjects = _rows(200)
    splits = subject_splits(subjects, FRACTIONS, seed=1)
    counts = {name: len(set(subjects[splits == name])) for name in SPLITS}
    assert counts == {"train": 140, "val": 20, "test": 40}
    assert split_counts(3, (0.98, 0.01, 0.01)) == (1, 1, 1)
    assert split_counts(10, (1 / 3, 1 / 3, 1 / 3)) == (4, 3, 3)
    assert sum(split_counts(7, FRACTIONS)) == 7


def test_deterministic_and_seed_dependent():
    subjects = _rows(50)
    a = subject_splits(subjects, FRACTIONS, seed=0)
    b = subject_splits(subjects.copy(), FRACTIONS, seed=0)
    np.testing.assert_array_equal(a, b)
    c = subject_splits(subjects, FRACTIONS, seed=1)
    assert not np.array_equal(a, c)


def test_independent_of_row_order_and_row_counts():
    subjects = _rows(40)
    base = subject_splits(subjects, FRACTIONS, seed=3)
    perm = np.random.default_rng(0).permutation(len(subjects))
    np.testing.assert_array_equal(subject_splits(subjects[perm], FRACTIONS, seed=3), base[perm])
    # one row per subject gives the same subject -> split map
    unique = np.unique(subjects)
    once = subject_splits(unique, FRACTIONS, seed=3)
    mapping = dict(zip(subjects, base, strict=True))
    assert [mapping[s] for s in unique] == list(once)


def test_integer_subject_ids():
    subjects = np.repeat(np.arange(10), 2)
    splits = subject_splits(subjects, FRACTIONS, seed=0)
    assert set(splits) == set(SPLITS)
    np.testing.assert_array_equal(splits[::2], splits[1::2])


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.3, 0.0), (0.5, 0.5, 0.5), (0.8, 0.2), (-0.1, 0.6, 0.5), ("a", 0.5, 0.5)]
)
def test_bad_fractions_raise_user_error(fractions):
    with pytest.raises(UserError):
        subject_splits(_rows(5), fractions, seed=0)
