"""synth-brain: longitudinal 2D axial T1 brain MRI slices with ground-truth diagnosis counterfactuals.

Anatomy comes from the MNI152 2009 (symmetric, 2 mm) T1 template and its grey-matter / white-matter
probability maps and brain mask, which nilearn ships inside its package (no download):
`load_mni152_template`, `load_mni152_gm_template`, `load_mni152_wm_template`, `load_mni152_brain_mask`,
all at resolution=2 (volume shape (99, 117, 95)). The volumes are loaded once per process.

Generative model (everything below is part of the dataset definition; change it => bump `version`):

Template slice.
    The axial slice z index 45 (MNI z = +18 mm) shows the lateral ventricles (frontal horns, bodies
    and trigones). Each subject uses slice 45 + j, j uniform integer in [-2, 2]. The slice is oriented
    like a radiological axial image: anterior up, the patient's right on the image left. A square
    field of view of 108 template pixels (216 mm) centred on the brain is sampled at `image_size`
    pixels (bilinear, after a Gaussian anti-aliasing blur when down-sampling).
    Per slice: CSF = clip(mask - GM - WM, 0, 1). The ventricles V are the connected components of
    CSF > 0.5 that lie more than 8 pixels inside the brain, have >= 15 pixels and are centred near the
    middle of the brain. The "exterior" E is the outside of the brain mask plus sulcal CSF
    (CSF > 0.35 outside V); d_E is the Euclidean distance (pixels) to E.
    Template T1 intensities are remapped piecewise-linearly so that mean CSF / GM / WM intensities
    (least-squares fit of T1 = c*CSF + g*GM + w*WM inside the mask) become 0.12 / 0.50 / 0.80 (a
    typical T1 contrast; the averaged template has too bright CSF).

Subject (random stream seeded by (dataset seed, subject index) alone, so a subject renders the same
whatever n_subjects is; its diagnosis *rank* is drawn from the same stream):
    - baseline age uniform in [60, 85] years (rounded to 0.1); visit v is at baseline + 2 v years;
    - diagnosis: the floor(ad_fraction * n_subjects + 0.5) subjects with the smallest diagnosis key are
      "AD", the others "CN" (diagnosis is independent of age and anatomy: no confounding);
    - slice jitter j (above); an individual atrophy susceptibility f uniform in [0.8, 1.2];
    - a deformation: rotation uniform +-6 degrees, per-axis scale uniform in [0.94, 1.06],
      translation uniform +-2 template pixels, plus a smooth displacement field (5x5 control grid,
      N(0, 1.5 template pixels) per component, cubic-spline upsampled);
    - a smooth multiplicative bias field 1 + b * B, B a cubic-upsampled 4x4 random grid scaled to
      max |B| = 1, b uniform in [0.05, 0.15] (so the field stays in [0.85, 1.15]);
    - a global intensity scale uniform in [0.9, 1.05] and a Rician noise level sigma uniform in
      [0.015, 0.035].

Visit (subject, visit), also seeded on its own: one Rician noise realisation (two N(0, 1) images).

Atrophy of one image, from (age, diagnosis, f):
    a = f * (age - 50) * (3 if diagnosis == "AD" else 1)     (normal ageing from 50; AD 3x faster)
    s = 1 - exp(-max(a, 0) / 80)                             (saturating in [0, 1), monotone in a)
    - ventricle enlargement: the template is sampled at the end point of 4 Euler steps of
      x <- x + (5.0 * s / 4) * g(x), where g is the gradient of the Gaussian-smoothed (sigma 3
      pixels) ventricle indicator, normalised to max |g| = 1. Tissue around the ventricles is pulled
      outward, so the ventricles enlarge by up to ~5 template pixels (10 mm) at their walls; each step
      is below the folding limit 1 / max eigenvalue of -dg (~2.1 pixels), so the warp is a
      diffeomorphism (no tissue folds or duplicates) and is exactly 0 far from the ventricles;
    - cortical thinning: grey matter within t = 2.0 * s template pixels of the exterior is replaced
      by CSF, with a linear ramp of one pixel: lost = GM * clip((t - d_E) / 1, 0, 1), and the T1
      intensity drops by lost * (GM - CSF intensity). Sulci widen and the cortex thins from outside;
      deep grey matter (caudate, thalamus), far from E, is untouched.

Rendering:
    The atrophied template (T1, GM, d_E) is sampled through the subject deformation composed with the
    atrophy warp; the brain mask only through the subject deformation (so atrophy never moves the
    brain outline and counterfactuals differ only inside the brain). Then
    image = mask * clip(Rician(bias * scale * T1_atrophied, sigma), 1/255, 1), with the mask soft at
    the edge (bilinear) and set to 0 below 0.05: background exactly 0, brain values in (0, 1],
    float32.

Counterfactuals: for every image, the same subject and visit (same slice, deformation, bias, scale,
noise realisation, age and susceptibility) rendered with the diagnosis flipped (CN <-> AD).

Not modelled: sex (nothing in a single template slice can honestly render sex differences, so there
is no sex attribute), scanner/site effects, lesions, skull and extra-cerebral tissue.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ldbench.data import DATASETS
from ldbench.data.base import ImageTable, PreparedDataset
from ldbench.data.splits import check_fractions, subject_splits
from ldbench.errors import UserError

# --- constants of the generative model (changing any of them changes the images: bump `version`) ---
_SLICE = 45  # axial z index of the 2 mm MNI152 volume (MNI z = +18 mm): lateral ventricles visible
_JITTER = 2  # per-subject slice offset, uniform integer in [-_JITTER, _JITTER]
_FOV = 108.0  # square field of view in template pixels
_CSF_OUT, _GM_OUT, _WM_OUT = 0.12, 0.50, 0.80  # rendered T1 intensities of pure tissue
_VENT_SIGMA = 3.0  # smoothing of the ventricle indicator (template pixels)
_VENT_MAX = 5.0  # maximal ventricle wall displacement (template pixels)
_VENT_STEPS = 4  # Euler steps of the ventricle flow (each step must stay below ~2.1 pixels)
_CORTEX_MAX = 2.0  # maximal cortical erosion depth (template pixels)
_EROSION_RAMP = 1.0
_ATROPHY_ONSET = 50.0  # years
_AD_RATE = 3.0  # AD atrophy rate / normal ageing rate
_ATROPHY_SAT = 80.0  # saturation scale of the atrophy amount
_AGE_RANGE = (60.0, 85.0)
_YEARS_PER_VISIT = 2.0
_STREAM = 0x5B1A  # tag of this dataset's random streams

_DIAGNOSES = ("CN", "AD")


def _orient(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k as a radiological image: rows anterior -> posterior, columns right -> left."""
    return np.ascontiguousarray(volume[:, :, k].T[::-1, ::-1], dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _template_slab() -> dict[str, np.ndarray]:
    """The oriented slices _SLICE +- _JITTER of the four MNI152 volumes, loaded once per process."""
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
    ks = range(_SLICE - _JITTER, _SLICE + _JITTER + 1)
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
class _SliceMaps:
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
def _slice_maps(offset: int, image_size: int) -> _SliceMaps:
    slab = _template_slab()
    i = offset + _JITTER
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

    sigma = max(0.0, (_FOV / image_size - 1.0) / 2.0)  # anti-aliasing when down-sampling
    if sigma > 0:
        t1, gm, mask = (ndi.gaussian_filter(a, sigma) for a in (t1, gm, mask))
    return _SliceMaps(t1=t1, gm=gm, mask=mask, dist_ext=dist_ext, grad=grad, centre=centre)


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
class _Subject:
    diagnosis_key: float
    baseline_age: float
    offset: int
    susceptibility: float
    coords: np.ndarray  # (2, S, S) template coordinates of the output pixels
    mask: np.ndarray  # (S, S) brain mask in [0, 1], exactly 0 outside the brain
    gain: np.ndarray  # (S, S) bias field times global intensity scale
    noise_sigma: float


def _subject(seed: int, index: int, image_size: int) -> _Subject:
    rng = np.random.default_rng([_STREAM, seed, index, 0, 0])
    diagnosis_key = float(rng.random())
    baseline_age = round(float(rng.uniform(*_AGE_RANGE)), 1)
    offset = int(rng.integers(-_JITTER, _JITTER + 1))
    susceptibility = float(rng.uniform(0.8, 1.2))
    angle = math.radians(float(rng.uniform(-6.0, 6.0)))
    zoom_r, zoom_c = rng.uniform(0.94, 1.06, size=2)
    shift = rng.uniform(-2.0, 2.0, size=2)
    displacement = 1.5 * _smooth_field(rng, 5, image_size, 2)
    bias_field = _smooth_field(rng, 4, image_size, 1)[0]
    bias_amp = float(rng.uniform(0.05, 0.15))
    scale = float(rng.uniform(0.9, 1.05))
    noise_sigma = float(rng.uniform(0.015, 0.035))

    maps = _slice_maps(offset, image_size)
    u = (np.arange(image_size) + 0.5) / image_size - 0.5  # output pixel centres in FOV units
    rr, cc = np.meshgrid(u * _FOV, u * _FOV, indexing="ij")
    cos, sin = math.cos(angle), math.sin(angle)
    rows = maps.centre[0] + shift[0] + zoom_r * (cos * rr - sin * cc) + displacement[0]
    cols = maps.centre[1] + shift[1] + zoom_c * (sin * rr + cos * cc) + displacement[1]
    coords = np.stack([rows, cols])
    mask = _sample(maps.mask, coords)
    mask = np.where(mask < 0.05, 0.0, np.clip(mask, 0.0, 1.0))
    bias = 1.0 + bias_amp * bias_field / np.abs(bias_field).max()
    return _Subject(
        diagnosis_key=diagnosis_key,
        baseline_age=baseline_age,
        offset=offset,
        susceptibility=susceptibility,
        coords=coords,
        mask=mask,
        gain=bias * scale,
        noise_sigma=noise_sigma,
    )


def _visit_noise(seed: int, index: int, visit: int, image_size: int) -> np.ndarray:
    """(2, S, S) standard normal images: the Rician noise realisation of one (subject, visit)."""
    rng = np.random.default_rng([_STREAM, seed, index, 1, visit])
    return rng.standard_normal((2, image_size, image_size))


def atrophy_amount(age: np.ndarray, diagnosis: np.ndarray, susceptibility: np.ndarray) -> np.ndarray:
    """The saturating atrophy amount s in [0, 1) of the module docstring (vectorised)."""
    rate = np.where(np.asarray(diagnosis) == "AD", _AD_RATE, 1.0)
    a = np.asarray(susceptibility) * (np.asarray(age, dtype=np.float64) - _ATROPHY_ONSET) * rate
    return 1.0 - np.exp(-np.maximum(a, 0.0) / _ATROPHY_SAT)


def _sample(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    return ndi.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)


def _render_pixels(
    maps: _SliceMaps,
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
        warped = warped + step * np.stack([_sample(maps.grad[0], warped), _sample(maps.grad[1], warped)])
    t1 = _sample(maps.t1, warped)
    gm = _sample(maps.gm, warped)
    dist = _sample(maps.dist_ext, warped)
    lost = np.clip(gm, 0.0, 1.0) * np.clip((_CORTEX_MAX * atrophy - dist) / _EROSION_RAMP, 0.0, 1.0)
    signal = np.clip(t1 - lost * (_GM_OUT - _CSF_OUT), 0.0, None) * gain
    rician = np.sqrt((signal + noise_sigma * noise[0]) ** 2 + (noise_sigma * noise[1]) ** 2)
    return np.clip(rician, 1.0 / 255.0, 1.0)


def _is_int(value: object) -> bool:
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return not isinstance(value, bool)


@DATASETS.register("synth-brain")
class SynthBrain:
    """Longitudinal axial T1 slices from the MNI152 template with age- and AD-driven atrophy.

    See the module docstring for the full generative model.
    """

    name = "synth-brain"
    version = "1"  # bump when the rendering changes (it is part of every cache key)

    def __init__(
        self,
        n_subjects: int = 200,
        visits: int = 3,
        image_size: int = 64,
        seed: int = 0,
        ad_fraction: float = 0.5,
        split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    ) -> None:
        if not _is_int(n_subjects) or n_subjects < 3:
            raise UserError(f"synth-brain: n_subjects must be an integer >= 3, got {n_subjects!r}")
        if not _is_int(visits) or visits < 1:
            raise UserError(f"synth-brain: visits must be an integer >= 1, got {visits!r}")
        if not _is_int(image_size) or not 32 <= image_size <= 256:
            raise UserError(f"synth-brain: image_size must be an integer in 32..256, got {image_size!r}")
        if not _is_int(seed) or seed < 0:
            raise UserError(f"synth-brain: seed must be a non-negative integer, got {seed!r}")
        if isinstance(ad_fraction, bool) or not isinstance(ad_fraction, numbers.Real):
            raise UserError(f"synth-brain: ad_fraction must be a number in [0, 1], got {ad_fraction!r}")
        if not 0.0 <= ad_fraction <= 1.0:
            raise UserError(f"synth-brain: ad_fraction must be in [0, 1], got {ad_fraction!r}")
        if isinstance(split_fractions, (str, bytes)) or not isinstance(split_fractions, Sequence):
            raise UserError(
                f"synth-brain: split_fractions must be three numbers (train, val, test), got {split_fractions!r}"
            )
        fractions = check_fractions(split_fractions, "synth-brain: split_fractions")
        self.n_subjects = int(n_subjects)
        self.visits = int(visits)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.ad_fraction = float(ad_fraction)
        self.split_fractions = fractions

    def options(self) -> dict:
        """The constructor values (for cache keys and provenance)."""
        return {
            "n_subjects": self.n_subjects,
            "visits": self.visits,
            "image_size": self.image_size,
            "seed": self.seed,
            "ad_fraction": self.ad_fraction,
            "split_fractions": list(self.split_fractions),
        }

    def prepare(self) -> PreparedDataset:
        n, visits, size = self.n_subjects, self.visits, self.image_size
        subjects = [_subject(self.seed, i, size) for i in range(n)]

        n_ad = math.floor(self.ad_fraction * n + 0.5)
        order = np.argsort([s.diagnosis_key for s in subjects], kind="stable")
        is_ad = np.zeros(n, dtype=bool)
        is_ad[order[:n_ad]] = True

        names = np.array([f"sb-{i:04d}" for i in range(n)])
        splits_per_subject = subject_splits(names, self.split_fractions, self.seed)

        # rows: subject-major, visit-minor; each row rendered twice (factual, counterfactual)
        sub_idx = np.repeat(np.arange(n), visits)
        visit = np.tile(np.arange(visits, dtype=np.int64), n)
        age = np.round(np.array([subjects[i].baseline_age for i in sub_idx]) + _YEARS_PER_VISIT * visit, 1)
        diagnosis = np.where(is_ad[sub_idx], "AD", "CN")
        flipped = np.where(is_ad[sub_idx], "CN", "AD")
        both = self._render_rows(
            subjects,
            np.concatenate([sub_idx, sub_idx]),
            np.concatenate([visit, visit]),
            np.concatenate([age, age]),
            np.concatenate([diagnosis, flipped]),
        )
        factual, counterfactual = both[: len(sub_idx)], both[len(sub_idx) :]

        common = {
            "subject": names[sub_idx],
            "visit": visit,
            "age": age,
            "split": splits_per_subject[sub_idx],
        }
        table = ImageTable(factual, {**common, "diagnosis": diagnosis})
        cf_table = ImageTable(counterfactual, {**common, "diagnosis": flipped})
        return PreparedDataset(name=self.name, version=self.version, table=table, counterfactuals=cf_table)

    def _render_rows(
        self,
        subjects: list[_Subject],
        sub_idx: np.ndarray,
        visit: np.ndarray,
        age: np.ndarray,
        diagnosis: np.ndarray,
    ) -> np.ndarray:
        """(N, S, S) float32 images of the rows (subject index, visit, age, diagnosis)."""
        size = self.image_size
        out = np.zeros((len(sub_idx), size, size), dtype=np.float32)
        susceptibility = np.array([subjects[i].susceptibility for i in sub_idx])
        atrophy = atrophy_amount(age, diagnosis, susceptibility)
        # one noise realisation per (subject, visit), shared by a row and its counterfactual
        pairs, pair_idx = np.unique(np.stack([sub_idx, visit], axis=1), axis=0, return_inverse=True)
        noise = np.stack([_visit_noise(self.seed, int(i), int(v), size) for i, v in pairs])
        pair_idx = pair_idx.reshape(-1)
        offsets = np.array([subjects[i].offset for i in sub_idx])
        for offset in np.unique(offsets):
            rows = np.flatnonzero(offsets == offset)
            mask = np.stack([subjects[sub_idx[r]].mask for r in rows])
            n, r, c = np.nonzero(mask)  # only brain pixels are rendered; the rest stays exactly 0
            subj = sub_idx[rows][n]
            coords = np.stack([subjects[i].coords for i in sub_idx[rows]])[n, :, r, c].T
            gain = np.stack([subjects[i].gain for i in sub_idx[rows]])[n, r, c]
            sigma = np.array([s.noise_sigma for s in subjects])[subj]
            pixel_noise = noise[pair_idx[rows][n], :, r, c].T
            values = _render_pixels(
                _slice_maps(int(offset), size), coords, atrophy[rows][n], gain, pixel_noise, sigma
            )
            out[rows[n], r, c] = (mask[n, r, c] * values).astype(np.float32)
        return out

    def caption(self, row: dict) -> str:
        """e.g. "brain mri, 72 year old, alzheimer's disease" (age rounded half up)."""
        age = math.floor(float(row["age"]) + 0.5)
        return f"brain mri, {age} year old, {_diagnosis_words(row['diagnosis'])}"

    def counterfactual_row(self, row: dict) -> dict:
        """`row` with the diagnosis flipped (CN <-> AD); every other attribute unchanged."""
        _diagnosis_words(row["diagnosis"])
        return {**row, "diagnosis": "CN" if row["diagnosis"] == "AD" else "AD"}


def _diagnosis_words(diagnosis: object) -> str:
    if diagnosis == "AD":
        return "alzheimer's disease"
    if diagnosis == "CN":
        return "cognitively normal"
    raise UserError(f"synth-brain: diagnosis must be one of {', '.join(_DIAGNOSES)}, got {diagnosis!r}")
