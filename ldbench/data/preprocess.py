"""Preprocessing as named, registered policies: raw file values -> one (S, S) float32 image in [0, 1].

Five kinds, applied in this order, one registry each (`POLICIES[kind]`):

    orientation  volumes only: `canonical` (the closest RAS+ orientation, as nibabel as_closest_canonical:
                 io_orientation of the affine applied to the loaded array) | `none` (as stored)
    slice        volumes only, 3-D -> 2-D axial: `relative` (at: fraction of the brain's z extent,
                 0 = lowest brain slice, 1 = top; default 0.6 = lateral ventricles) | `index` (index: int)
                 | `relative-range` (start, stop, count: `count` evenly spaced positions from start to
                 stop inclusive, as numpy.linspace, in the same brain-extent fraction as `relative`;
                 each volume gives `count` images and each image's position becomes the `slice`
                 attribute, so that a subject's visits can be paired slice by slice)
    channels     colour images only: `luminance` (ITU-R 601 weights) | `first` | `mean` | `reject`
    intensity    `percentile` (low, high: clip to those percentiles, scale to [0, 1]) | `zscore`
                 (clip: z-scores clipped to +-clip, mapped to [0, 1]) | `window` (center, width, as for
                 CT / DICOM VOI) | `minmax` | `range` (scale by the nominal bit depth: 8-bit /255,
                 16-bit /65535)
    resize       `area` (box filter: exact area averaging, the default) | `bilinear` | `lanczos`;
                 parameter fit: `pad` (pad the short side with the image minimum to a square; keeps
                 everything) | `crop` (centre crop to a square) | `stretch`

A policy is given as a name or a mapping {name: ..., PARAM: value}; unknown names or parameters are a
UserError. `Pipeline.spec()` (every name and every parameter, defaults filled in) is part of each real
dataset's options() and therefore of every cache key. All arithmetic is float64 on the stored values,
so 16-bit PNG / DICOM keep their full range until the final float32 image.

Axial display convention (volumes, after `canonical`): rows anterior -> posterior, columns the patient's
right -> left (radiological), as in synth-brain.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ldbench.data.readers import ImageError, RawImage
from ldbench.errors import UserError
from ldbench.registry import Registry

KINDS = ("orientation", "slice", "channels", "intensity", "resize")
POLICIES: dict[str, Registry[Callable]] = {kind: Registry(f"{kind} policy") for kind in KINDS}


def _register(kind: str, name: str):
    return POLICIES[kind].register(name)


# --- orientation (nibabel image -> 3-D array) ---------------------------------------------------------


@_register("orientation", "canonical")
def _canonical(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The voxel axes permuted/flipped to the closest RAS+ orientation: what nibabel's
    as_closest_canonical does to the data array, applied to the already loaded array."""
    from nibabel.orientations import apply_orientation, io_orientation

    return apply_orientation(volume, io_orientation(affine))


@_register("orientation", "none")
def _as_stored(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return volume


# --- slice (3-D volume -> 2-D axial image) --------------------------------------------------------------


def brain_extent(volume: np.ndarray) -> tuple[int, int]:
    """First and last z index holding foreground (voxels above 10% of the 99th percentile, >= 1% of the
    busiest slice's foreground count)."""
    step = max(1, round((volume.size / 2e5) ** (1 / 3)))  # the threshold from <= ~200k voxels
    thr = 0.1 * np.percentile(volume[::step, ::step, ::step], 99)
    counts = (volume > thr).sum(axis=(0, 1))
    if counts.max() == 0:
        raise ImageError("volume has no foreground (all voxels equal)")
    z = np.flatnonzero(counts >= 0.01 * counts.max())
    return int(z[0]), int(z[-1])


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k as a radiological image: rows anterior -> posterior, columns right -> left."""
    return np.ascontiguousarray(volume[:, :, k].T[::-1, ::-1])


def _check_relative(at: float = 0.6) -> None:  # also when the policy is built
    if not 0.0 <= at <= 1.0:
        raise UserError(f"slice policy relative: at must be in [0, 1], got {at}")


@_register("slice", "relative")
def _slice_relative(volume: np.ndarray, at: float = 0.6) -> np.ndarray:
    _check_relative(at)
    lo, hi = brain_extent(volume)
    return _axial(volume, int(round(lo + at * (hi - lo))))


def _check_range(start: float = 0.5, stop: float = 0.7, count: int = 5) -> None:
    """Checked when the policy is built (from the config), not per volume, so a bad range fails before
    any file is read."""
    if not 0.0 <= start < stop <= 1.0:
        raise UserError(f"slice policy relative-range: need 0 <= start < stop <= 1 (fractions of the brain "
                        f"extent), got start={start}, stop={stop}; e.g. start: 0.4, stop: 0.6")
    if count < 1:
        raise UserError(f"slice policy relative-range: count must be an integer >= 1, got {count}")


def range_positions(start: float, stop: float, count: int) -> list[float]:
    """The relative positions of a relative-range policy (rounded to 6 decimals: they are attribute
    values and must compare equal across volumes and runs, free of linspace rounding noise)."""
    return [round(float(x), 6) for x in np.linspace(start, stop, count)]


@_register("slice", "relative-range")
def _slice_range(volume: np.ndarray, start: float = 0.5, stop: float = 0.7, count: int = 5) -> list[np.ndarray]:
    """`count` axial slices, one per position (same index rule as `relative`, the brain extent computed
    once). Two positions that land on the same slice would give duplicate images under different
    labels, so that is an ImageError naming how many distinct slices the volume has."""
    _check_range(start, stop, count)
    lo, hi = brain_extent(volume)
    ks = [int(round(lo + at * (hi - lo))) for at in range_positions(start, stop, count)]
    if len(set(ks)) < len(ks):
        raise ImageError(f"slice range {start}..{stop} (count {count}) gives only {len(set(ks))} distinct axial "
                         f"slices in this volume's brain extent (z {lo}..{hi}); lower count or widen the range")
    return [_axial(volume, k) for k in ks]


MULTI_SLICE = frozenset({"relative-range"})  # slice policies giving several images per volume


def _check_index(index: int = 0) -> None:  # at build time: a negative index would count from the top
    if index < 0:
        raise UserError(f"slice policy index: index must be >= 0 (the lowest axial slice), got {index}; e.g. 40")


@_register("slice", "index")
def _slice_index(volume: np.ndarray, index: int = 0) -> np.ndarray:
    if not 0 <= index < volume.shape[2]:
        raise ImageError(f"slice index {index} outside the volume's {volume.shape[2]} axial slices (0..{volume.shape[2] - 1})")
    return _axial(volume, index)


_slice_index.validate = _check_index  # type: ignore[attr-defined]
_slice_range.validate = _check_range  # type: ignore[attr-defined]
_slice_relative.validate = _check_relative  # type: ignore[attr-defined]


# --- channels ((H, W, C) -> (H, W)) ---------------------------------------------------------------------


@_register("channels", "luminance")
def _luminance(img: np.ndarray) -> np.ndarray:
    return img[..., :3] @ np.array([0.299, 0.587, 0.114])


@_register("channels", "first")
def _first(img: np.ndarray) -> np.ndarray:
    return img[..., 0]


@_register("channels", "mean")
def _mean(img: np.ndarray) -> np.ndarray:
    return img[..., :3].mean(axis=-1)


@_register("channels", "reject")
def _reject(img: np.ndarray) -> np.ndarray:
    raise ImageError(f"colour image (shape {img.shape}) but the channels policy is 'reject'")


# --- intensity (2-D float64 -> [0, 1]) ------------------------------------------------------------------


def _scale(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(img)  # a constant image maps to 0
    return np.clip((img - lo) / (hi - lo), 0.0, 1.0)


@_register("intensity", "percentile")
def _percentile(img: np.ndarray, low: float = 0.5, high: float = 99.5, bit_depth=None) -> np.ndarray:
    if not 0.0 <= low < high <= 100.0:
        raise UserError(f"intensity policy percentile: need 0 <= low < high <= 100, got {low}, {high}")
    lo, hi = np.percentile(img, [low, high])
    return _scale(img, lo, hi)


@_register("intensity", "minmax")
def _minmax(img: np.ndarray, bit_depth=None) -> np.ndarray:
    return _scale(img, img.min(), img.max())


@_register("intensity", "zscore")
def _zscore(img: np.ndarray, clip: float = 3.0, bit_depth=None) -> np.ndarray:
    if clip <= 0:
        raise UserError(f"intensity policy zscore: clip must be > 0, got {clip}")
    std = img.std()
    z = (img - img.mean()) / std if std > 0 else np.zeros_like(img)
    return (np.clip(z, -clip, clip) + clip) / (2 * clip)


@_register("intensity", "window")
def _window(img: np.ndarray, center: float = 40.0, width: float = 400.0, bit_depth=None) -> np.ndarray:
    if width <= 0:
        raise UserError(f"intensity policy window: width must be > 0, got {width}")
    return _scale(img, center - width / 2, center + width / 2)


@_register("intensity", "range")
def _range(img: np.ndarray, bit_depth=None) -> np.ndarray:
    top = 2.0 ** (bit_depth or (16 if img.max() > 255 else 8)) - 1
    return _scale(img, 0.0, top)


# --- resize ((H, W) -> (S, S)) -------------------------------------------------------------------------


def _square(img: np.ndarray, fit: str) -> np.ndarray:
    h, w = img.shape
    if fit == "stretch" or h == w:
        return img
    if fit == "crop":
        s = min(h, w)
        r, c = (h - s) // 2, (w - s) // 2
        return img[r : r + s, c : c + s]
    if fit == "pad":
        s = max(h, w)
        out = np.full((s, s), img.min(), dtype=img.dtype)
        r, c = (s - h) // 2, (s - w) // 2
        out[r : r + h, c : c + w] = img
        return out
    raise UserError(f"resize policy: fit must be pad, crop or stretch, got {fit!r}")


def _pil_resize(img: np.ndarray, size: int, fit: str, method: str) -> np.ndarray:
    from PIL import Image

    sq = _square(img, fit).astype(np.float32)
    resample = {"area": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
                "lanczos": Image.Resampling.LANCZOS}[method]
    return np.asarray(Image.fromarray(sq, mode="F").resize((size, size), resample=resample), dtype=np.float64)


@_register("resize", "area")
def _area(img: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    return _pil_resize(img, size, fit, "area")


@_register("resize", "bilinear")
def _bilinear(img: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    return _pil_resize(img, size, fit, "bilinear")


@_register("resize", "lanczos")
def _lanczos(img: np.ndarray, size: int, fit: str = "pad") -> np.ndarray:
    return _pil_resize(img, size, fit, "lanczos")


# --- policies with parameters ---------------------------------------------------------------------------

_CONTEXT_ARGS = {"size", "bit_depth", "affine"}  # filled in by the pipeline, not by the user


@dataclass(frozen=True)
class Policy:
    kind: str
    name: str
    params: tuple[tuple[str, object], ...]

    def spec(self) -> dict:
        return {"name": self.name, **dict(self.params)}

    def __call__(self, x, **context):
        fn = POLICIES[self.kind].get(self.name)
        accepted = inspect.signature(fn).parameters
        extra = {k: v for k, v in context.items() if k in accepted}
        return fn(x, **dict(self.params), **extra)


def make_policy(kind: str, spec: object) -> Policy:
    """A policy from a name or {name: ..., params...}; defaults filled in, parameter types checked."""
    if isinstance(spec, Policy):
        return spec
    if isinstance(spec, str):
        name, given = spec, {}
    elif isinstance(spec, dict) and isinstance(spec.get("name"), str):
        name, given = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise UserError(f"{kind} policy must be a name or a mapping with 'name', got {spec!r}; "
                        f"valid names: {', '.join(POLICIES[kind].names())}")
    fn = POLICIES[kind].get(name)
    defaults = {p.name: p.default for p in list(inspect.signature(fn).parameters.values())[1:]
                if p.name not in _CONTEXT_ARGS}
    unknown = set(given) - set(defaults)
    if unknown:
        raise UserError(f"{kind} policy {name!r}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                        f"valid: {', '.join(sorted(defaults)) or 'none'}")
    params = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, bool) or isinstance(default, str):
            ok = type(value) is type(default)
        elif isinstance(default, int):
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = True
        if not ok:
            raise UserError(f"{kind} policy {name!r}: {key} must be a {type(default).__name__}, got {value!r}")
        params[key] = value
    validate = getattr(fn, "validate", None)  # value checks that need no image, run at build time
    if validate is not None:
        validate(**params)
    return Policy(kind, name, tuple(sorted(params.items())))


@dataclass(frozen=True)
class Pipeline:
    """The five policies of one dataset; `run(raw, size)` gives an (S, S) float32 image in [0, 1]."""

    orientation: Policy
    slice: Policy
    channels: Policy
    intensity: Policy
    resize: Policy

    @classmethod
    def build(cls, orientation="canonical", slice="relative", channels="luminance", intensity="percentile",
              resize="area") -> Pipeline:
        given = {"orientation": orientation, "slice": slice, "channels": channels, "intensity": intensity,
                 "resize": resize}
        return cls(**{kind: make_policy(kind, given[kind]) for kind in KINDS})

    def spec(self) -> dict:
        return {kind: getattr(self, kind).spec() for kind in KINDS}

    @property
    def multi_slice(self) -> bool:
        """True when the slice policy gives several images per volume (each with a `slice` position)."""
        return self.slice.name in MULTI_SLICE

    def slice_positions(self) -> list[float] | None:
        """The relative positions of a multi-slice policy, in output order; None for single-slice ones."""
        if not self.multi_slice:
            return None
        p = dict(self.slice.params)
        return range_positions(p["start"], p["stop"], p["count"])

    def to_2d_all(self, raw: RawImage) -> list[tuple[float | None, np.ndarray]]:
        """(slice position, 2-D float64 image) for every image `raw` gives (orientation, slice and channel
        policies applied). One image, position None, unless `raw` is a 3-D volume and the slice policy is
        a multi-slice one."""
        data = raw.data
        while data.ndim > 2 and data.shape[-1] == 1:  # (H, W, 1), (X, Y, Z, 1)
            data = data[..., 0]
        out: list[tuple[float | None, np.ndarray]]
        if raw.nifti is not None and data.ndim == 3:
            sliced = self.slice(self.orientation(data, affine=raw.nifti.affine))
            if isinstance(sliced, list):
                out = list(zip(self.slice_positions() or [None] * len(sliced), sliced, strict=True))
            else:
                out = [(None, sliced)]
        elif raw.nifti is not None and data.ndim == 2:
            out = [(None, _axial(data[:, :, None], 0))]
        elif data.ndim == 3 and data.shape[-1] in (3, 4) and raw.nifti is None:
            out = [(None, self.channels(data))]
        else:
            out = [(None, data)]
        for _, img in out:
            if img.ndim != 2:
                want = "a 3-D volume or a 2-D image" if raw.nifti is not None else "a 2-D image (grayscale or RGB)"
                raise ImageError(f"wrong dimensionality: shape {raw.data.shape}, want {want}")
            if min(img.shape) < 2:
                raise ImageError(f"image too small: shape {img.shape}")
        return out

    def to_2d(self, raw: RawImage) -> np.ndarray:
        """The one 2-D image of `raw` (single-slice policies; see to_2d_all for multi-slice ones)."""
        images = self.to_2d_all(raw)
        if len(images) != 1:
            raise ValueError(f"the {self.slice.name} slice policy gives {len(images)} images; use to_2d_all")
        return images[0][1]

    def finish(self, img: np.ndarray, size: int, bit_depth: int | None = None) -> np.ndarray:
        """A 2-D image from to_2d -> (size, size) float32 in [0, 1] (intensity and resize policies)."""
        img = self.intensity(img, bit_depth=bit_depth)
        img = self.resize(img, size=size)
        return np.clip(img, 0.0, 1.0).astype(np.float32)

    def run(self, raw: RawImage, size: int) -> np.ndarray:
        return self.finish(self.to_2d(raw), size, raw.bit_depth)

    def run_all(self, raw: RawImage, size: int) -> list[tuple[float | None, np.ndarray]]:
        """(slice position, (size, size) float32 image) for every image of `raw` (see to_2d_all)."""
        return [(pos, self.finish(img, size, raw.bit_depth)) for pos, img in self.to_2d_all(raw)]
