"""Axial slice selection by range (`slice: {name: relative-range, start, stop, count}`) on real NIfTI
fixture trees written with nibabel: validation, cache keys, the `slice` attribute, subject-level splits,
per-slice longitudinal structure, and that the single-slice forms are unchanged."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ldbench.data import create_dataset
from ldbench.data.adapters import fixtures
from ldbench.data.preprocess import Pipeline, make_policy
from ldbench.data.readers import read_image
from ldbench.errors import UserError

RANGE = {"name": "relative-range", "start": 0.4, "stop": 0.6, "count": 5}
POSITIONS = [0.4, 0.45, 0.5, 0.55, 0.6]


@pytest.fixture(scope="module")
def oasis(tmp_path_factory) -> Path:
    # 48 axial slices: the phantom brain spans ~36 of them, enough for 5 distinct positions in 0.4..0.6
    return fixtures.write_oasis3(tmp_path_factory.mktemp("o") / "oasis3", volume_shape=(24, 28, 48))


@pytest.mark.parametrize("spec, needle", [
    ({**RANGE, "start": 0.6, "stop": 0.4}, "start=0.6, stop=0.4"),
    ({**RANGE, "start": 0.5, "stop": 0.5}, "start=0.5, stop=0.5"),
    ({**RANGE, "stop": 1.2}, "stop=1.2"),
    ({**RANGE, "start": -0.1}, "start=-0.1"),
    ({**RANGE, "count": 0}, "got 0"),
    ({**RANGE, "count": 2.5}, "count must be a int, got 2.5"),
    ({**RANGE, "count": True}, "count must be a int, got True"),
    ({**RANGE, "step": 0.1}, "unknown parameter(s) step"),
])
def test_bad_ranges_are_refused_when_the_policy_is_built(spec, needle):
    with pytest.raises(UserError) as info:
        make_policy("slice", spec)
    assert needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="relative-range"):  # also through a dataset's options, before any read
        create_dataset("oasis3", root="/nonexistent", slice=spec)


def test_single_slice_forms_are_unchanged(oasis):
    ds = create_dataset("oasis3", root=str(oasis))
    assert ds.options()["preprocess"]["slice"] == {"name": "relative", "at": 0.6}
    assert not ds.pipeline.multi_slice and ds.pipeline.slice_positions() is None
    t = ds.prepare().table
    assert "slice" not in t.attributes and len(t) == 8
    explicit = create_dataset("oasis3", root=str(oasis), slice={"name": "relative", "at": 0.6})
    assert explicit.options() == ds.options()
    assert np.array_equal(explicit.prepare().table.images, t.images)


def test_a_range_gives_every_position_of_every_volume(oasis):
    ds = create_dataset("oasis3", root=str(oasis), slice=RANGE)
    spec = ds.options()["preprocess"]["slice"]
    assert spec == RANGE  # every parameter in the cache key
    t = ds.prepare().table
    assert len(t) == 4 * 2 * 5 and t.images.shape[1:] == (64, 64)
    a = t.attributes
    assert a["slice"].dtype == np.float64
    rows = defaultdict(list)
    for i in range(len(t)):
        rows[(str(a["subject"][i]), int(a["visit"][i]))].append(i)
    assert len(rows) == 8
    for idx in rows.values():
        assert [float(a["slice"][i]) for i in idx] == POSITIONS  # sorted subject, visit, slice
        assert len({int(a["days"][i]) for i in idx}) == 1  # one volume per visit, its attributes repeated
    # each image is the slice its label names: the same as the single-slice policy at that position
    first = t.row(0)
    path = oasis / "images" / first["subject"] / f"{first['subject']}_MR_d{first['days']:04d}.nii.gz"
    raw = read_image(path)
    for k, pos in enumerate(POSITIONS):
        single = Pipeline.build(slice={"name": "relative", "at": pos}).run(raw, 64)
        assert np.array_equal(t.images[k], single), pos
    assert not np.array_equal(t.images[0], t.images[4])  # different positions, different images


def test_splits_stay_subject_level_and_visits_pair_per_slice(oasis):
    t = create_dataset("oasis3", root=str(oasis), slice=RANGE, split_fractions=(0.5, 0.25, 0.25)).prepare().table
    a = t.attributes
    owner: dict[str, str] = {}
    for subject, split in zip(a["subject"], a["split"], strict=True):
        assert owner.setdefault(str(subject), str(split)) == split
    assert len(set(owner.values())) == 3
    # the grouping a per-slice pairing needs: every (subject, slice) has exactly one row per visit
    per = defaultdict(list)
    for i in range(len(t)):
        per[(str(a["subject"][i]), float(a["slice"][i]))].append(int(a["visit"][i]))
    assert len(per) == 4 * 5 and all(sorted(v) == [0, 1] for v in per.values())


def test_the_range_is_part_of_the_cache_key(oasis):
    keys = {str(create_dataset("oasis3", root=str(oasis), slice=s).options()) for s in
            ("relative", RANGE, {**RANGE, "count": 3}, {**RANGE, "stop": 0.7})}
    assert len(keys) == 4


def test_count_one_is_the_start_position(oasis):
    one = create_dataset("oasis3", root=str(oasis), slice={**RANGE, "start": 0.6, "stop": 0.9, "count": 1})
    single = create_dataset("oasis3", root=str(oasis)).prepare().table
    t = one.prepare().table
    assert list(t.attributes["slice"]) == [0.6] * 8
    assert np.array_equal(t.images, single.images)


def test_positions_that_collapse_onto_one_slice_are_a_problem_naming_the_file(tmp_path):
    root = fixtures.write_adni(tmp_path / "adni", n_subjects=3)  # 20 axial slices: a small brain extent
    ds = create_dataset("adni", root=str(root), slice={**RANGE, "count": 12})
    _, problems = ds.check()
    assert problems and all("distinct axial slices" in p and ".nii.gz" in p and "lower count" in p
                            for p in problems), problems
    with pytest.raises(UserError, match="distinct axial slices"):
        ds.prepare()


def test_check_summary_counts_visits_not_slices(oasis):
    summary, problems = create_dataset("oasis3", root=str(oasis), slice=RANGE).check()
    assert problems == []
    assert summary["images"] == 40 and summary["subjects"] == 4
    assert summary["visits per subject"].startswith("min 2, max 2")
    assert summary["axial slices per volume"] == "5 at 0.4, 0.45, 0.5, 0.55, 0.6"


def test_two_d_images_give_one_image_with_no_slice_position(tmp_path):
    root = fixtures.write_manifest(tmp_path / "m", n_subjects=4)  # one 3-D NIfTI among 2-D files
    t = create_dataset("manifest", root=str(root), slice={**RANGE, "count": 3}).prepare().table
    pos = t.attributes["slice"]
    assert len(t) == 8 - 1 + 3
    assert sorted(pos[~np.isnan(pos)].tolist()) == [0.4, 0.5, 0.6]
    assert int(np.isnan(pos).sum()) == 7


def test_to_2d_refuses_a_multi_slice_policy_instead_of_picking_one(oasis):
    raw = read_image(next((oasis / "images").rglob("*.nii.gz")))
    pipe = Pipeline.build(slice=RANGE)
    with pytest.raises(ValueError, match="to_2d_all"):
        pipe.to_2d(raw)
    assert [p for p, _ in pipe.run_all(raw, 32)] == POSITIONS


def test_longitudinal_pairs_join_the_same_slice_position_across_visits():
    import numpy as np

    from ldbench.data.base import ImageTable
    from ldbench.data.pairs import longitudinal_pairs

    # one subject, 2 visits x 3 slice positions, rows shuffled
    visit = np.array([1, 0, 0, 1, 0, 1])
    slice_ = np.array([0.5, 0.4, 0.6, 0.4, 0.5, 0.6])
    table = ImageTable(np.zeros((6, 4, 4), np.float32), {"subject": np.array(["s"] * 6), "visit": visit,
                                                         "slice": slice_, "split": np.array(["train"] * 6)})
    pairs = longitudinal_pairs(table)
    assert len(pairs) == 3
    for a, b in pairs:
        assert slice_[a] == slice_[b] and visit[a] == 0 and visit[b] == 1
