"""synth-cxr's real lung outlines: the pinned torchxrayvision masks, which masks are kept, where a lung is
placed, and the pinned-file checks."""

from __future__ import annotations

import numpy as np
import pytest

from ldbench.data.synthetic import cxr
from ldbench.data.synthetic.cxr_lungs import GRID, LUNG_MASKS, lung_field, lung_shape, lung_shapes, right_lung
from ldbench.errors import UserError
from ldbench.packaged import PackagedFile


def _disc(shape, centre, radii):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def test_right_lung_is_the_image_left_of_two_lungs_side_by_side():
    mask = _disc((100, 100), (50, 28), (35, 15)) | _disc((100, 100), (52, 72), (30, 14))
    mask[5:8, 5:8] = True  # an annotation speck is ignored
    lung = right_lung(mask)
    assert lung is not None and lung.shape == (71, 31)  # the left ellipse's bounding box
    assert right_lung(_disc((100, 100), (50, 50), (30, 30))) is None  # one component
    assert right_lung(_disc((100, 100), (50, 28), (35, 15)) | _disc((100, 100), (50, 72), (8, 5))) is None  # unbalanced
    stacked = _disc((100, 100), (25, 50), (15, 30)) | _disc((100, 100), (75, 50), (15, 30))
    assert right_lung(stacked) is None  # not side by side


def test_shipped_masks_give_hundreds_of_real_right_lungs():
    shapes = lung_shapes()
    assert len(shapes) >= 400  # of 517 masks in the archive; the rest are empty or not two lungs
    assert len({s.source for s in shapes}) == len(shapes)
    for s in shapes:
        assert s.occupancy.shape == GRID and 0.0 <= s.occupancy.min() and s.occupancy.max() <= 1.0
        assert s.base.shape == (GRID[1],) and ((0.0 < s.base) & (s.base <= 1.0)).all()
    areas = np.array([s.occupancy.mean() for s in shapes])
    assert 0.5 < np.median(areas) < 0.95 and areas.std() > 0.02  # lungs fill most of their box, and vary


def test_lung_field_places_the_lung_in_its_box_and_mirrors_the_left():
    lung = np.zeros((60, 30), dtype=bool)
    lung[:, :20] = True  # lateral two thirds; the medial third empty
    lung[50:, 10:] = False  # the dome is higher medially
    shape = lung_shape("test", lung)
    u = np.linspace(-1, 1, 201)
    y, x = np.meshgrid(u, u, indexing="ij")
    occ, dome = lung_field(shape, x, y, (-0.8, -0.2, -0.6, 0.6), pixel=0.01)
    assert occ[100, 30] > 0.99 and occ[100, 85] < 0.01  # lateral part full, medial third empty
    assert occ[:, 100:].max() == 0 and occ[:15].max() == 0  # nothing outside the box
    assert dome[0, 30] == pytest.approx(0.6, abs=0.03) and dome[0, 60] < 0.45  # lowest laterally
    mirrored, _ = lung_field(shape, x, y, (0.8, 0.2, -0.6, 0.6), pixel=0.01)
    np.testing.assert_allclose(mirrored, occ[:, ::-1], atol=1e-6)


def test_each_patient_gets_two_different_real_lungs():
    patients = [cxr._patient(0, i, 64, 2) for i in range(20)]
    sources = [(p.lungs[0].source, p.lungs[1].source) for p in patients]
    assert all(a != b for a, b in sources)
    assert len({s for pair in sources for s in pair}) > 30  # drawn from the archive, not a few favourites


def test_pinned_file_checks():
    assert LUNG_MASKS.read()[:2] == b"PK"
    altered = PackagedFile(LUNG_MASKS.dist, LUNG_MASKS.path, "0" * 64, LUNG_MASKS.pin)
    with pytest.raises(UserError, match="torchxrayvision==1.5.7"):
        altered.read()
    with pytest.raises(UserError, match="not installed"):
        PackagedFile("no-such-distribution-x", "a/b.zip", "0" * 64, "no-such-distribution-x==1").read()
    with pytest.raises(UserError, match="missing"):
        PackagedFile(LUNG_MASKS.dist, "torchxrayvision/data/no-such-file.zip", "0" * 64, LUNG_MASKS.pin).read()
