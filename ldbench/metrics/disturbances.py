"""Seeded image disturbances for testing a feature extractor (Heusel et al. 2017, "GANs trained by a two
time-scale update rule converge to a local Nash equilibrium", section "FID evaluation").

Each disturbance maps images (N, H, W) float in [0, 1] to a new array of the same shape, clipped to
[0, 1]. It is pure: the output depends only on the images, the strength and the seed (and, for
contamination, the other dataset's images). Strengths are nested: the random draws are the same at
every strength and only their effect grows (the same noise field scaled up, the first k of the same
rectangles, the same pixels plus more), so a stronger level is a superset of a weaker one.

`DISTURBANCES` lists them with their validated strengths (`levels`, increasing, strength 0 = the
undisturbed images); `disturb(name, images, level, seed, other)` applies level 1..L of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ldbench.errors import UserError


def _check(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 3:
        raise UserError(f"expected grayscale images of shape (N, H, W), got shape {x.shape}")
    return np.clip(x, 0.0, 1.0)


def _rng(seed: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), salt])


def gaussian_noise(images: np.ndarray, strength: float, seed: int = 0, other: np.ndarray | None = None) -> np.ndarray:
    """Additive white Gaussian noise with standard deviation `strength` (image units), clipped."""
    x = _check(images)
    noise = _rng(seed, 1).standard_normal(x.shape)
    return np.clip(x + float(strength) * noise, 0.0, 1.0)


def gaussian_blur(images: np.ndarray, strength: float, seed: int = 0, other: np.ndarray | None = None) -> np.ndarray:
    """Gaussian blur with sigma `strength` pixels (reflecting borders); not random."""
    x = _check(images)
    if strength <= 0:
        return x
    return np.clip(ndi.gaussian_filter(x, sigma=(0.0, float(strength), float(strength)), mode="reflect"), 0.0, 1.0)


RECT_FRACTION = 0.25  # side of each black rectangle, as a fraction of the image side
MAX_RECTS = 16


def black_rectangles(images: np.ndarray, strength: float, seed: int = 0,
                     other: np.ndarray | None = None) -> np.ndarray:
    """`strength` black rectangles (side a quarter of the image) implanted at seeded random positions,
    biased to the image's bright area (positions drawn where the image is above its mean)."""
    x = _check(images).copy()
    k = int(round(strength))
    if k <= 0:
        return x
    n, h, w = x.shape
    rh, rw = max(1, int(round(RECT_FRACTION * h))), max(1, int(round(RECT_FRACTION * w)))
    for i in range(n):
        # centres drawn from the foreground so that the rectangles cover content, not background
        ys, xs = np.nonzero(x[i] > x[i].mean())
        if len(ys) == 0:
            ys, xs = np.mgrid[:h, :w].reshape(2, -1)
        # the same draws at every strength (one stream per image, always MAX_RECTS long): nested levels
        picks = np.random.default_rng([int(seed), 3, i]).integers(0, len(ys), size=max(k, MAX_RECTS))
        for p in picks[:k]:
            top = int(np.clip(ys[p] - rh // 2, 0, h - rh))
            left = int(np.clip(xs[p] - rw // 2, 0, w - rw))
            x[i, top : top + rh, left : left + rw] = 0.0
    return x


def swirl(images: np.ndarray, strength: float, seed: int = 0, other: np.ndarray | None = None) -> np.ndarray:
    """skimage.transform.swirl with `strength`, radius half the image side, centre the image centre
    moved by a seeded offset of up to an eighth of the side (the same offsets at every strength)."""
    from skimage.transform import swirl as sk_swirl

    x = _check(images)
    n, h, w = x.shape
    offsets = _rng(seed, 4).uniform(-1.0, 1.0, size=(n, 2)) * np.array([w, h]) / 8.0
    out = np.empty_like(x)
    for i in range(n):
        centre = (w / 2.0 - 0.5 + offsets[i, 0], h / 2.0 - 0.5 + offsets[i, 1])
        out[i] = sk_swirl(x[i], center=centre, strength=float(strength), radius=min(h, w) / 2.0,
                          mode="reflect", order=1)
    return np.clip(out, 0.0, 1.0)


def salt_and_pepper(images: np.ndarray, strength: float, seed: int = 0,
                    other: np.ndarray | None = None) -> np.ndarray:
    """A fraction `strength` of the pixels set to 0 or 1 (half each); nested across strengths."""
    x = _check(images).copy()
    rng = _rng(seed, 5)
    u = rng.random(x.shape)
    salt = rng.random(x.shape) < 0.5
    hit = u < float(strength)
    x[hit & salt] = 1.0
    x[hit & ~salt] = 0.0
    return x


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) -> (N, *size) with skimage's antialiased linear resize, clipped to [0, 1]."""
    from skimage.transform import resize

    x = _check(images)
    if x.shape[1:] == tuple(size):
        return x
    return np.clip(np.stack([resize(im, size, order=1, anti_aliasing=True) for im in x]), 0.0, 1.0)


def contamination(images: np.ndarray, strength: float, seed: int = 0, other: np.ndarray | None = None) -> np.ndarray:
    """A fraction `strength` of the images replaced by images of another dataset (`other`, resized to
    this size): the first round(strength * N) of a seeded permutation, each by a seeded pick of `other`
    (without replacement while `other` has enough images)."""
    x = _check(images).copy()
    k = int(round(float(strength) * len(x)))
    if k <= 0:
        return x
    if other is None or len(other) == 0:
        raise UserError("the contamination disturbance needs images of another dataset")
    rng = _rng(seed, 6)
    slots = rng.permutation(len(x))[:k]
    pool = np.asarray(other)
    picks = rng.permutation(len(pool)) if len(pool) >= len(x) else rng.integers(0, len(pool), size=len(x))
    x[slots] = resize_images(pool[picks[:k]], x.shape[1:])
    return x


@dataclass(frozen=True)
class Disturbance:
    name: str
    apply: Callable[..., np.ndarray]
    levels: tuple[float, ...]  # validated strengths, increasing; strength 0 is the undisturbed set
    unit: str
    needs_other: bool = False


DISTURBANCES: dict[str, Disturbance] = {
    d.name: d
    for d in (
        Disturbance("gaussian_noise", gaussian_noise, (0.02, 0.05, 0.1, 0.2), "noise std"),
        Disturbance("gaussian_blur", gaussian_blur, (0.5, 1.0, 2.0, 3.0), "sigma (px)"),
        Disturbance("black_rectangles", black_rectangles, (1, 2, 3, 5), "rectangles"),
        Disturbance("swirl", swirl, (0.5, 1.0, 2.0, 4.0), "swirl strength"),
        Disturbance("salt_and_pepper", salt_and_pepper, (0.01, 0.03, 0.1, 0.25), "pixel fraction"),
        Disturbance("contamination", contamination, (0.1, 0.25, 0.5, 0.75), "fraction replaced", True),
    )
}


def get_disturbance(name: str) -> Disturbance:
    if name not in DISTURBANCES:
        raise UserError(f"unknown disturbance {name!r}; known: {', '.join(DISTURBANCES)}")
    return DISTURBANCES[name]


def disturb(name: str, images: np.ndarray, level: int, seed: int = 0, other: np.ndarray | None = None) -> np.ndarray:
    """Level `level` of disturbance `name` (0: the images unchanged, clipped; 1..L: its `levels`)."""
    d = get_disturbance(name)
    if not 0 <= int(level) <= len(d.levels):
        raise UserError(f"disturbance {name!r} has levels 0..{len(d.levels)}, got {level}")
    if int(level) == 0:
        return _check(images)
    return d.apply(images, d.levels[int(level) - 1], seed, other)
