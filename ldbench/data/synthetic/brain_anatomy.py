"""synth-brain's anatomy: the MNI152 template slices nilearn ships, prepared for sampling, and what
atrophy does to them (ventricle flow, cortical erosion), rendered at the pixels a subject's deformation
samples. The generative model is specified in ldbench.data.synthetic.brain's docstring; changing anything
here changes the images (bump SynthBrain.version)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

# --- constants of the generative model (changing any of them changes the images: bump `version`) ---
SLICE = 45  # axial z index of the 2 mm MNI152 volume (MNI z = +18 mm): lateral ventricles visible
JITTER = 2  # per-subject slice offset, uniform integer in [-JITTER, JITTER]
FOV = 108.0  # square field of view in template pixels
_CSF_OUT, _GM_OUT, _WM_OUT = 0.12, 0.50, 0.80  # rendered T1 intensities of pure tissue
_VENT_SIGMA = 3.0  # smoothing of the ventricle indicator (template pixels)
_VENT_MAX = 5.0  # maximal ventricle wall displacement (template pixels)
_VENT_STEPS = 4  # Euler steps of the ventricle flow (each step must stay below ~2.1 pixels)
_CORTEX_MAX = 2.0  # maximal cortical erosion depth (template pixels)
_EROSION_RAMP = 1.0
_ATROPHY_ONSET = 50.0  # years
_AD_RATE = 3.0  # AD atrophy rate / normal ageing rate
_ATROPHY_SAT = 80.0  # saturation scale of the atrophy amount


def _orient(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k as a radiological image: rows anterior -> posterior, columns right -> left."""
    return np.ascontiguousarray(volume[:, :, k].T[::-1, ::-1], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _template_slab() -> dict[str, np.ndarray]:
    """The oriented slices SLICE +- JITTER of the four MNI152 volumes, loaded once per process."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nilearn import datasets

        volumes = {
            "t1": datasets.load_mni152_template(resolution=2),
            "gm": datasets.load_mni152_gm_template(resolution=2),
            "wm": datasets.load_mni152_wm_template(resolution=2),
            "mask": datasets.load_mni152_brain_mask(resolution=2),
        }
    ks = range(SLICE - JITTER, SLICE + JITTER + 1)
    slab = {}
    for key, img in volumes.items():
        vol = np.asarray(img.dataobj, dtype=np.float64)
        if vol.shape != (99, 117, 95):
            raise RuntimeError(f"unexpected MNI152 {key} shape {vol.shape} from nilearn (want (99, 117, 95))")
        slab[key] = np.stack([_orient(vol, k) for k in ks])
    slab["mask"] = (slab["mask"] > 0.5).astype(np.float64)
    slab["gm"] = np.clip(slab["gm"], 0.0, 1.0) * slab["mask"]
    slab["wm"] = np.clip(slab["wm"], 0.0, 1.0) * slab["mask"]
    slab["t1"] = np.clip(slab["t1"], 0.0, None) * slab["mask"]
    return slab


@dataclass(frozen=True)
class SliceMaps:
    """One template slice prepared for sampling at one output size."""

    t1: np.ndarray  # remapped T1 intensities, anti-aliased
    gm: np.ndarray  # grey matter probability, anti-aliased
    mask: np.ndarray  # brain mask (0/1), anti-aliased
    dist_ext: np.ndarray  # distance to the exterior (template pixels)
    grad: np.ndarray  # (2, H, W) ventricle pull direction, max norm 1
    centre: tuple[float, float]  # brain bounding-box centre (row, col)


def _ventricles(csf: np.ndarray, mask: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    depth = ndi.distance_transform_edt(mask > 0.5)
    labels, n = ndi.label((csf > 0.5) & (depth > 8))
    if n == 0:
        raise RuntimeError("no ventricles found in the MNI152 slice")
    idx = np.arange(1, n + 1)
    sizes = ndi.sum_labels(np.ones_like(csf), labels, idx)
    centroids = np.array(ndi.center_of_mass(np.ones_like(csf), labels, idx)).reshape(n, 2)
    keep = (
        (sizes >= 15)
        & (np.abs(centroids[:, 0] - centre[0]) < 20)
        & (np.abs(centroids[:, 1] - centre[1]) < 15)
    )
    return np.isin(labels, idx[keep])


def _tissue_intensities(slab: dict[str, np.ndarray]) -> np.ndarray:
    """Least-squares mean T1 intensity of pure CSF, GM, WM inside the mask (ascending)."""
    inside = slab["mask"] > 0.5
    csf = np.clip(slab["mask"] - slab["gm"] - slab["wm"], 0.0, 1.0)
    design = np.stack([csf[inside], slab["gm"][inside], slab["wm"][inside]], axis=1)
    coef, *_ = np.linalg.lstsq(design, slab["t1"][inside], rcond=None)
    return coef


@functools.lru_cache(maxsize=16)
def slice_maps(offset: int, image_size: int) -> SliceMaps:
    slab = _template_slab()
    i = offset + JITTER
    t1, gm, wm, mask = (slab[key][i] for key in ("t1", "gm", "wm", "mask"))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    centre = ((rows[0] + rows[-1]) / 2.0, (cols[0] + cols[-1]) / 2.0)
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    vent = _ventricles(csf, mask, centre)
    phi = ndi.gaussian_filter(vent.astype(np.float64), _VENT_SIGMA)
    grad = np.stack(np.gradient(phi))
    grad /= np.sqrt((grad**2).sum(axis=0)).max()
    exterior = (mask < 0.5) | ((csf > 0.35) & ~vent)
    dist_ext = ndi.distance_transform_edt(~exterior)

    c, g, w = _tissue_intensities(slab)
    if not 0.0 < c < g < w:
        raise RuntimeError(f"unexpected MNI152 tissue intensities CSF {c:.3f}, GM {g:.3f}, WM {w:.3f}")
    t1 = np.interp(t1, [0.0, c, g, w, max(w, 1.0) + 0.1], [0.0, _CSF_OUT, _GM_OUT, _WM_OUT, _WM_OUT + 0.1])
    t1 *= mask

    sigma = max(0.0, (FOV / image_size - 1.0) / 2.0)  # anti-aliasing when down-sampling
    if sigma > 0:
        t1, gm, mask = (ndi.gaussian_filter(a, sigma) for a in (t1, gm, mask))
    return SliceMaps(t1=t1, gm=gm, mask=mask, dist_ext=dist_ext, grad=grad, centre=centre)


def atrophy_amount(age: np.ndarray, diagnosis: np.ndarray, susceptibility: np.ndarray) -> np.ndarray:
    """The saturating atrophy amount s in [0, 1) of the module docstring (vectorised)."""
    rate = np.where(np.asarray(diagnosis) == "AD", _AD_RATE, 1.0)
    a = np.asarray(susceptibility) * (np.asarray(age, dtype=np.float64) - _ATROPHY_ONSET) * rate
    return 1.0 - np.exp(-np.maximum(a, 0.0) / _ATROPHY_SAT)


def sample(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return ndi.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)


def render_pixels(
    maps: SliceMaps,
    coords: np.ndarray,
    atrophy: np.ndarray,
    gain: np.ndarray,
    noise: np.ndarray,
    noise_sigma: np.ndarray,
) -> np.ndarray:
    """Intensities (M,) of M brain pixels of one template slice, before the mask.

    coords (2, M) subject-deformed template coordinates; atrophy, gain, noise_sigma (M,) the amount s,
    bias x scale and Rician sigma at each pixel; noise (2, M) its standard normal noise pair.
    """
    step = _VENT_MAX / _VENT_STEPS * atrophy
    warped = coords
    for _ in range(_VENT_STEPS):  # flow along the pull field: a composition of small diffeomorphisms
        warped = warped + step * np.stack([sample(maps.grad[0], warped), sample(maps.grad[1], warped)])
    t1 = sample(maps.t1, warped)
    gm = sample(maps.gm, warped)
    dist = sample(maps.dist_ext, warped)
    lost = np.clip(gm, 0.0, 1.0) * np.clip((_CORTEX_MAX * atrophy - dist) / _EROSION_RAMP, 0.0, 1.0)
    signal = np.clip(t1 - lost * (_GM_OUT - _CSF_OUT), 0.0, None) * gain
    rician = np.sqrt((signal + noise_sigma * noise[0]) ** 2 + (noise_sigma * noise[1]) ** 2)
    return np.clip(rician, 1.0 / 255.0, 1.0)
