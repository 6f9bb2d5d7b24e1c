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

import math
import numbers
import operator
from collections.abc import Sequence

import numpy as np

from ldbench.data import DATASETS
from ldbench.data.base import ImageTable, PreparedDataset
from ldbench.data.splits import check_fractions, subject_splits
from ldbench.data.synthetic.brain_anatomy import atrophy_amount, render_pixels, slice_maps
from ldbench.data.synthetic.brain_subjects import Subject, draw_subject, visit_noise
from ldbench.errors import UserError

YEARS_PER_VISIT = 2.0
_DIAGNOSES = ("CN", "AD")

__all__ = ["SynthBrain", "atrophy_amount"]


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
        subjects = [draw_subject(self.seed, i, size) for i in range(n)]

        n_ad = math.floor(self.ad_fraction * n + 0.5)
        order = np.argsort([s.diagnosis_key for s in subjects], kind="stable")
        is_ad = np.zeros(n, dtype=bool)
        is_ad[order[:n_ad]] = True

        names = np.array([f"sb-{i:04d}" for i in range(n)])
        splits_per_subject = subject_splits(names, self.split_fractions, self.seed)

        # rows: subject-major, visit-minor; each row rendered twice (factual, counterfactual)
        sub_idx = np.repeat(np.arange(n), visits)
        visit = np.tile(np.arange(visits, dtype=np.int64), n)
        age = np.round(np.array([subjects[i].baseline_age for i in sub_idx]) + YEARS_PER_VISIT * visit, 1)
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
        subjects: list[Subject],
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
        noise = np.stack([visit_noise(self.seed, int(i), int(v), size) for i, v in pairs])
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
            values = render_pixels(
                slice_maps(int(offset), size), coords, atrophy[rows][n], gain, pixel_noise, sigma
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
