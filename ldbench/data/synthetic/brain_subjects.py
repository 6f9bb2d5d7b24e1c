"""synth-brain's subjects and visits: each drawn from its own random stream, seeded by (dataset seed,
subject index[, visit]) alone, so a subject renders the same whatever n_subjects is. The draws are
specified in ldbench.data.synthetic.brain's docstring; changing any changes the images (bump
SynthBrain.version)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ldbench.data.synthetic.brain_anatomy import FOV, JITTER, sample, slice_maps

AGE_RANGE = (60.0, 85.0)
STREAM = 0x5B1A  # tag of this dataset's random streams


@functools.lru_cache(maxsize=8)
def _upsampler(grid: int, size: int) -> np.ndarray:
    """(size, grid) matrix of cubic-spline upsampling (ndimage.zoom of each unit vector)."""
    eye = np.eye(grid)
    return np.stack([ndi.zoom(e, size / grid, order=3, mode="nearest", grid_mode=True) for e in eye], axis=1)


def _smooth_field(rng: np.random.Generator, grid: int, size: int, channels: int) -> np.ndarray:
    """(channels, size, size): a cubic-spline upsampled grid x grid N(0, 1) field."""
    coarse = rng.standard_normal((channels, grid, grid))
    up = _upsampler(grid, size)
    return up @ coarse @ up.T


@dataclass(frozen=True)
class Subject:
    diagnosis_key: float
    baseline_age: float
    offset: int
    susceptibility: float
    coords: np.ndarray  # (2, S, S) template coordinates of the output pixels
    mask: np.ndarray  # (S, S) brain mask in [0, 1], exactly 0 outside the brain
    gain: np.ndarray  # (S, S) bias field times global intensity scale
    noise_sigma: float


def draw_subject(seed: int, index: int, image_size: int) -> Subject:
    rng = np.random.default_rng([STREAM, seed, index, 0, 0])
    diagnosis_key = float(rng.random())
    baseline_age = round(float(rng.uniform(*AGE_RANGE)), 1)
    offset = int(rng.integers(-JITTER, JITTER + 1))
    susceptibility = float(rng.uniform(0.8, 1.2))
    angle = math.radians(float(rng.uniform(-6.0, 6.0)))
    zoom_r, zoom_c = rng.uniform(0.94, 1.06, size=2)
    shift = rng.uniform(-2.0, 2.0, size=2)
    displacement = 1.5 * _smooth_field(rng, 5, image_size, 2)
    bias_field = _smooth_field(rng, 4, image_size, 1)[0]
    bias_amp = float(rng.uniform(0.05, 0.15))
    scale = float(rng.uniform(0.9, 1.05))
    noise_sigma = float(rng.uniform(0.015, 0.035))

    maps = slice_maps(offset, image_size)
    u = (np.arange(image_size) + 0.5) / image_size - 0.5  # output pixel centres in FOV units
    rr, cc = np.meshgrid(u * FOV, u * FOV, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    rows = maps.centre[0] + shift[0] + zoom_r * (cos * rr - sin * cc) + displacement[0]
    cols = maps.centre[1] + shift[1] + zoom_c * (sin * rr + cos * cc) + displacement[1]
    coords = np.stack([rows, cols])
    mask = sample(maps.mask, coords)
    mask = np.where(mask < 0.05, 0.0, np.clip(mask, 0.0, 1.0))
    bias = 1.0 + bias_amp * bias_field / np.abs(bias_field).max()
    return Subject(
        diagnosis_key=diagnosis_key,
        baseline_age=baseline_age,
        offset=offset,
        susceptibility=susceptibility,
        coords=coords,
        mask=mask,
        gain=bias * scale,
        noise_sigma=noise_sigma,
    )


def visit_noise(seed: int, index: int, visit: int, image_size: int) -> np.ndarray:
    """(2, S, S) standard normal images: the Rician noise realisation of one (subject, visit)."""
    rng = np.random.default_rng([STREAM, seed, index, 1, visit])
    return rng.standard_normal((2, image_size, image_size))
