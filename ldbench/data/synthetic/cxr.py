"""synth-cxr: a procedural frontal (PA) chest radiograph phantom with ground-truth cardiomegaly counterfactuals.

Generative model (everything below is part of the dataset definition; change it => bump `version`).

Geometry. Coordinates (x, y) in [-1, 1]^2, x left -> right on the image (the patient's right is on the
image left, as on a PA film), y top (neck) -> bottom (upper abdomen). Each patient has a similarity
transform (scale U[0.93, 1.03], rotation U[-3, 3] degrees, shift U[-0.04, 0.04]) and each visit adds a
small repositioning (rotation U[-1, 1] degrees, shift U[-0.015, 0.015]). All structures are soft-edged
(logistic edge of about one pixel), so images are anti-aliased.

Anatomy, as a map of X-ray attenuation A (brighter = more attenuation):
    body     a superellipse torso (half-width 0.86 x w_body, power 4) with a soft-tissue thickness profile
             (thickest in the middle), cut above by the neck and the sloping shoulders;
    lungs    two air spaces, each a real lung outline (ldbench.data.synthetic.cxr_lungs: the right lung of a
             real frontal radiograph's binary mask; the left lung is another mask's right lung, mirrored;
             two masks drawn per patient) placed in a box from x = 0.68 w_lung (lateral) to 0.07 (medial)
             whose lowest point (the costophrenic angle) is at y = 0.51 + d (right; the left 0.05 lower, as
             usual), 1.2 h_lung high times the square root of the mask's own height/width ratio over the
             masks' median 1.7 (clipped to [1.0, 1.35]); cut medially by the mediastinum; air reduces
             attenuation;
    heart    a rotated ellipse resting on the left hemidiaphragm, its half-width
             r = CTR x 0.68 (0.68 = half the internal thoracic width at the domes), so its width over the
             thoracic width is the cardiothoracic ratio CTR; the heart displaces lung air;
    mediastinum and spine: a central soft-tissue band with the trachea (air, upper part), an aortic
             knob, and the vertebral column (bone, with darker disc spaces every 0.09);
    ribs     per side 10 posterior ribs (arched bands, bone) and 6 fainter anterior ribs (oblique bands);
    clavicles two bone bands from the sternal notch up to the shoulders;
    gastric bubble under the left hemidiaphragm (air);
    lung markings: a per-patient band-pass random field inside the lungs, stronger near the hila,
             plus hilar densities;
    breasts  (sex F only) two lower-lateral soft-tissue shadows with a sharp inferolateral margin, the
             one real, visible sex difference on a frontal radiograph (so sex is an attribute).

Findings:
    cardiomegaly: the patient's CTR. Normal patients have CTR = c0 + 0.004 v (c0 ~ U[0.40, 0.46], v the
        visit), patients with cardiomegaly CTR = c0 + 0.13 + 0.012 v (0.53..0.63 and growing);
        cardiomegaly = 1 iff the patient is in the second group (a fraction `cardiomegaly_fraction`).
    pleural_effusion: an onset visit per patient (never with probability 0.6, else uniform over the
        visits); from onset the fluid height grows (0.12 + 0.06 (v - onset)), on one side or both. Fluid
        fills the lung base (the mask's lowest point in each column) with the soft-tissue attenuation up to
        a meniscus that rises laterally, which blunts the costophrenic angle.
    consolidation: independently per visit with probability 0.2, a patchy opacity (a thresholded smooth
        random blob, radius ~0.13) in the mid/lower zone of one lung, partly replacing the air.
    Finding prevalences are independent of each other and of sex and age (no confounding).

Rendering: I = 1 - exp(-k A) (k per patient, exposure) with a small additive Gaussian noise (sigma per
patient U[0.008, 0.02], one realisation per visit) and clipping to [0, 1]; float32.

Counterfactuals (row-aligned): every image re-rendered with cardiomegaly flipped (the CTR of the
other group: c0 + 0.13 + 0.012 v <-> c0 + 0.004 v), same patient, visit, position, noise and every
other finding. They differ from the factual image only where the heart outline moves.

Subject random streams are seeded by (dataset seed, subject index) alone; age is U[35, 85] at baseline
plus one year per visit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ldbench.data import DATASETS
from ldbench.data.adapters.labels import cxr_caption
from ldbench.data.base import ImageTable, PreparedDataset
from ldbench.data.splits import check_fractions, subject_splits
from ldbench.data.synthetic.cxr_anatomy import bones, ellipse, sig, with_breasts
from ldbench.data.synthetic.cxr_lungs import LungShape, lung_field, lung_shapes
from ldbench.errors import UserError

_STREAM = 0xC4E57
_THORAX_HALF = 0.68  # half the internal thoracic width at the domes (CTR denominator / 2)
_CTR_NORMAL = (0.40, 0.46)
_CTR_JUMP = 0.13
_CTR_RATE = (0.004, 0.012)  # per visit: normal, cardiomegaly
_EFFUSION_NEVER = 0.6
_CONSOLIDATION_P = 0.2


@dataclass(frozen=True)
class _Patient:
    sex: str
    age: float
    c0: float
    cardiomegaly: bool
    effusion_onset: int  # -1: never
    effusion_side: int  # -1 right, 1 left, 0 both
    scale: float
    angle: float
    shift: tuple[float, float]
    body_w: float
    lung_w: float
    lung_h: float
    dome: float
    exposure: float
    noise: float
    texture: np.ndarray  # (S, S) band-pass lung markings
    rib_phase: float
    lungs: tuple[LungShape, LungShape]  # the real outlines of the right and (mirrored) left lung


def _patient(seed: int, index: int, size: int, visits: int, card_key_only: bool = False) -> _Patient | float:
    rng = np.random.default_rng([_STREAM, seed, index, 0])
    card_key = float(rng.random())
    if card_key_only:
        return card_key
    sex = "F" if rng.random() < 0.5 else "M"
    age = round(float(rng.uniform(35.0, 85.0)), 1)
    c0 = float(rng.uniform(*_CTR_NORMAL))
    onset = -1 if rng.random() < _EFFUSION_NEVER else int(rng.integers(0, visits))
    side = int(rng.choice([-1, 1, 0], p=[0.4, 0.4, 0.2]))
    scale = float(rng.uniform(0.93, 1.03))
    angle = math.radians(float(rng.uniform(-3.0, 3.0)))
    shift = (float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04)))
    body_w = float(rng.uniform(0.95, 1.05)) * (0.97 if sex == "F" else 1.0)
    lung_w = float(rng.uniform(0.95, 1.05))
    lung_h = float(rng.uniform(0.94, 1.06))
    dome = float(rng.uniform(-0.04, 0.04))
    exposure = float(rng.uniform(1.1, 1.4))
    noise = float(rng.uniform(0.008, 0.02))
    raw = rng.standard_normal((size, size))
    px = size / 64.0
    texture = ndi.gaussian_filter(raw, 1.0 * px) - ndi.gaussian_filter(raw, 4.0 * px)
    texture /= texture.std() + 1e-12
    shapes = lung_shapes()
    masks = np.random.default_rng([_STREAM, seed, index, 2]).choice(len(shapes), size=2, replace=False)
    return _Patient(sex, age, c0, False, onset, side, scale, angle, shift, body_w, lung_w, lung_h, dome,
                    exposure, noise, texture, float(rng.uniform(-0.02, 0.02)), (shapes[masks[0]], shapes[masks[1]]))


def ctr_of(c0: float, cardiomegaly: bool, visit: int) -> float:
    """The cardiothoracic ratio of a patient at a visit (module docstring)."""
    return c0 + (_CTR_JUMP + _CTR_RATE[1] * visit if cardiomegaly else _CTR_RATE[0] * visit)


@dataclass(frozen=True)
class _Visit:
    angle: float
    shift: tuple[float, float]
    noise: np.ndarray
    effusion: float  # fluid height, 0 = none
    consolidation: tuple[float, float, float, np.ndarray] | None  # (side, cy, r, blob noise)


def _visit(seed: int, index: int, visit: int, size: int, p: _Patient) -> _Visit:
    rng = np.random.default_rng([_STREAM, seed, index, 1, visit])
    angle = math.radians(float(rng.uniform(-1.0, 1.0)))
    shift = (float(rng.uniform(-0.015, 0.015)), float(rng.uniform(-0.015, 0.015)))
    noise = rng.standard_normal((size, size))
    effusion = 0.0 if p.effusion_onset < 0 or visit < p.effusion_onset else 0.12 + 0.06 * (visit - p.effusion_onset)
    consolidation = None
    if rng.random() < _CONSOLIDATION_P:
        side = float(rng.choice([-1.0, 1.0]))
        blob = ndi.gaussian_filter(rng.standard_normal((size, size)), 1.5 * size / 64.0)
        consolidation = (side, float(rng.uniform(-0.05, 0.25)), float(rng.uniform(0.11, 0.16)),
                         blob / (blob.std() + 1e-12))
    return _Visit(angle, shift, noise, effusion, consolidation)


@dataclass(frozen=True)
class _Frame:
    """The patient-and-visit coordinates of every pixel (x, y, |x|) and the edge softness eps."""

    x: np.ndarray
    y: np.ndarray
    ax: np.ndarray
    eps: float


def _frame(p: _Patient, v: _Visit, size: int) -> _Frame:
    u = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(u, u, indexing="ij")
    ang = p.angle + v.angle
    c, s = math.cos(ang), math.sin(ang)
    x0, y0 = xx - p.shift[0] - v.shift[0], yy - p.shift[1] - v.shift[1]
    x = (c * x0 + s * y0) / p.scale
    y = (-s * x0 + c * y0) / p.scale
    return _Frame(x, y, np.abs(x), 1.1 / size)


def _body(f: _Frame, p: _Patient) -> tuple[np.ndarray, np.ndarray]:
    """The torso (cut by neck and shoulders) and its soft-tissue attenuation."""
    x, y, ax, eps = f.x, f.y, f.ax, f.eps
    bw = 0.86 * p.body_w
    shoulder = -0.90 + 0.35 * (np.clip(ax - 0.18, 0.0, None) / 0.66) ** 2
    neck = sig(ax - 0.18, eps)
    body = sig(ellipse(x, y, (0.0, 0.12), (bw, 1.25), power=4.0), eps) * np.maximum(sig(shoulder - y, eps), neck)
    thick = np.sqrt(np.clip(1.0 - (x / (bw + 0.05)) ** 2, 0.0, 1.0))
    return body, body * (0.55 + 0.45 * thick)


def _lungs(f: _Frame, p: _Patient) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both lungs (real outlines, cut by the mediastinum) and the two domes (lung base per column)."""
    fields = []
    for side, shape, base in ((-1.0, p.lungs[0], 0.51), (1.0, p.lungs[1], 0.56)):
        height = float(np.clip(1.2 * np.sqrt(shape.aspect / 1.7), 1.0, 1.35)) * p.lung_h  # 1.7: the median
        bottom = base + p.dome
        box = (side * 0.68 * p.lung_w, side * 0.07, bottom - height, bottom)
        fields.append(lung_field(shape, f.x, f.y, box, f.eps * 2.0 / 1.1))  # a pixel: 2 / size = eps * 2 / 1.1
    (lung_r, dome_r), (lung_l, dome_l) = fields
    lung_r, lung_l = lung_r * (f.x < 0), lung_l * (f.x > 0)
    medi = 0.09 + 0.06 * np.clip(-f.y - 0.2, 0.0, 1.0)
    return (lung_r + lung_l) * sig(medi - f.ax, f.eps), dome_r, dome_l


def _heart_and_knob(f: _Frame, ctr: float) -> tuple[np.ndarray, np.ndarray]:
    """The heart, whose width over the thoracic width is `ctr`, and the aortic knob."""
    rx = ctr * _THORAX_HALF
    tilt, aspect = -0.45, 1.35  # long axis from upper right (patient) to the apex, lower left
    b = rx / math.sqrt((aspect * math.cos(tilt)) ** 2 + math.sin(tilt) ** 2)  # horizontal half-extent = rx
    heart_cx = 0.10 + 0.45 * (rx - 0.30)
    heart_cy = 0.30 + 0.2 * (rx - 0.30)
    heart = sig(ellipse(f.x, f.y, (heart_cx, heart_cy), (aspect * b, b), angle=tilt), f.eps)
    knob = sig(ellipse(f.x, f.y, (0.11, -0.30), (0.075, 0.07)), f.eps)
    return heart, knob


def _effusion(f: _Frame, p: _Patient, v: _Visit, air: np.ndarray, domes: tuple) -> np.ndarray:
    """`air` with pleural fluid at the lung base, its meniscus rising laterally."""
    lw = 0.31 * p.lung_w
    for side, dome, cx in ((-1, domes[0], -0.37), (1, domes[1], 0.37)):
        if p.effusion_side in (side, 0):
            lateral = np.clip((side * f.x - cx * side) / lw, -1.0, 1.0)
            level = dome - v.effusion * (1.0 + 0.8 * np.clip(lateral, 0.0, 1.0) ** 2)
            fluid = sig(level - f.y, 2.5 * f.eps) * (side * f.x > 0)
            air = air * (1.0 - fluid)
    return air


def _consolidation(f: _Frame, v: _Visit, air: np.ndarray) -> np.ndarray:
    """`air` partly replaced by the visit's patchy opacity."""
    side, cy, r, blob = v.consolidation
    d = np.sqrt((f.x - side * 0.38) ** 2 + (f.y - cy) ** 2) / r
    patch = np.clip(1.2 - d ** 2 + 0.45 * blob, 0.0, 1.0) * (side * f.x > 0)
    return air * (1.0 - 0.75 * patch)


def render(p: _Patient, v: _Visit, ctr: float, size: int) -> np.ndarray:
    """(S, S) float32 radiograph of patient p at visit v with cardiothoracic ratio ctr."""
    f = _frame(p, v, size)
    x, y, ax, eps = f.x, f.y, f.ax, f.eps
    body, att = _body(f, p)
    lungs, dome_r, dome_l = _lungs(f, p)
    heart, knob = _heart_and_knob(f, ctr)  # the heart displaces lung air
    air = lungs * (1.0 - heart) * (1.0 - knob)
    if v.effusion > 0:
        air = _effusion(f, p, v, air, (dome_r, dome_l))
    if v.consolidation is not None:
        air = _consolidation(f, v, air)

    # lung markings and hila
    hilum = np.exp(-np.sqrt((ax - 0.17) ** 2 + (y + 0.02) ** 2) / 0.3)
    markings = air * (0.02 + 0.05 * hilum) * p.texture
    hila = sig(ellipse(ax, y, (0.16, 0.0), (0.07, 0.12)), 2 * eps) * 0.12
    att = att - 0.62 * air + markings + hila * lungs

    # trachea (air) and gastric bubble
    trachea = sig(ax - 0.035, eps) * sig(y + 0.35, eps) * body
    bubble = sig(ellipse(x, y, (0.42, 0.60 + p.dome), (0.11, 0.065)), eps)
    att = att - 0.28 * trachea - 0.35 * bubble
    att = att + bones(f, p, body)
    if p.sex == "F":  # breast shadows
        att = with_breasts(f, att)

    image = 1.0 - np.exp(-p.exposure * np.clip(att, 0.0, None))
    image = image + p.noise * v.noise
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@DATASETS.register("synth-cxr")
class SynthCXR:
    """Procedural frontal chest radiographs (cardiomegaly, effusion, consolidation, sex), longitudinal.

    See the module docstring for the generative model. Counterfactual: cardiomegaly flipped.
    """

    name = "synth-cxr"
    version = "2"  # bump when the rendering changes (it is part of every cache key); 2: real lung outlines

    def __init__(self, n_subjects: int = 200, visits: int = 2, image_size: int = 64, seed: int = 0,
                 cardiomegaly_fraction: float = 0.4,
                 split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> None:
        if not _is_int(n_subjects) or n_subjects < 3:
            raise UserError(f"synth-cxr: n_subjects must be an integer >= 3, got {n_subjects!r}")
        if not _is_int(visits) or visits < 1:
            raise UserError(f"synth-cxr: visits must be an integer >= 1, got {visits!r}")
        if not _is_int(image_size) or not 32 <= image_size <= 256:
            raise UserError(f"synth-cxr: image_size must be an integer in 32..256, got {image_size!r}")
        if not _is_int(seed) or seed < 0:
            raise UserError(f"synth-cxr: seed must be a non-negative integer, got {seed!r}")
        if (isinstance(cardiomegaly_fraction, bool) or not isinstance(cardiomegaly_fraction, numbers.Real)
                or not 0.0 <= cardiomegaly_fraction <= 1.0):
            raise UserError(f"synth-cxr: cardiomegaly_fraction must be a number in [0, 1], got {cardiomegaly_fraction!r}")
        if isinstance(split_fractions, (str, bytes)) or not isinstance(split_fractions, Sequence):
            raise UserError(f"synth-cxr: split_fractions must be three numbers, got {split_fractions!r}")
        self.split_fractions = check_fractions(split_fractions, "synth-cxr: split_fractions")
        self.n_subjects, self.visits, self.image_size = int(n_subjects), int(visits), int(image_size)
        self.seed, self.cardiomegaly_fraction = int(seed), float(cardiomegaly_fraction)

    def options(self) -> dict:
        return {"n_subjects": self.n_subjects, "visits": self.visits, "image_size": self.image_size,
                "seed": self.seed, "cardiomegaly_fraction": self.cardiomegaly_fraction,
                "split_fractions": list(self.split_fractions)}

    def prepare(self) -> PreparedDataset:
        n, visits, size = self.n_subjects, self.visits, self.image_size
        patients = [_patient(self.seed, i, size, visits) for i in range(n)]
        keys = [_patient(self.seed, i, size, visits, card_key_only=True) for i in range(n)]
        n_card = math.floor(self.cardiomegaly_fraction * n + 0.5)
        is_card = np.zeros(n, dtype=bool)
        is_card[np.argsort(keys, kind="stable")[:n_card]] = True
        names = np.array([f"sc-{i:04d}" for i in range(n)])
        split = subject_splits(names, self.split_fractions, self.seed)

        images, cfs, rows = [], [], []
        for i, p in enumerate(patients):
            for v in range(visits):
                vis = _visit(self.seed, i, v, size, p)
                card = bool(is_card[i])
                images.append(render(p, vis, ctr_of(p.c0, card, v), size))
                cfs.append(render(p, vis, ctr_of(p.c0, not card, v), size))
                rows.append((i, v, card, vis))
        sub = np.array([r[0] for r in rows])
        visit = np.array([r[1] for r in rows], dtype=np.int64)
        card = np.array([r[2] for r in rows])
        common = {
            "subject": names[sub],
            "visit": visit,
            "split": split[sub],
            "age": np.round(np.array([patients[i].age for i in sub]) + visit, 1),
            "sex": np.array([patients[i].sex for i in sub]),
            "pleural_effusion": np.array([int(r[3].effusion > 0) for r in rows], dtype=np.int64),
            "consolidation": np.array([int(r[3].consolidation is not None) for r in rows], dtype=np.int64),
        }
        ctr = np.array([ctr_of(patients[i].c0, c, v) for i, c, v in zip(sub, card, visit, strict=True)])
        ctr_cf = np.array([ctr_of(patients[i].c0, not c, v) for i, c, v in zip(sub, card, visit, strict=True)])
        table = ImageTable(np.stack(images), {**common, "cardiomegaly": card.astype(np.int64),
                                              "ctr": np.round(ctr, 4)})
        cf_table = ImageTable(np.stack(cfs), {**common, "cardiomegaly": (~card).astype(np.int64),
                                              "ctr": np.round(ctr_cf, 4)})
        return PreparedDataset(name=self.name, version=self.version, table=table, counterfactuals=cf_table)

    def caption(self, row: dict) -> str:
        """"chest x-ray, cardiomegaly, pleural effusion" / "chest x-ray, no finding" (CheXpert order)."""
        for key in ("cardiomegaly", "pleural_effusion", "consolidation"):
            if int(row.get(key, 0)) not in (0, 1):
                raise UserError(f"synth-cxr: {key} must be 0 or 1, got {row.get(key)!r}")
        return cxr_caption(row)

    def counterfactual_row(self, row: dict) -> dict:
        """`row` with cardiomegaly flipped (0 <-> 1); every other attribute unchanged (the `ctr` column is
        left as it is: the caption does not use it; the counterfactual table holds the re-rendered CTR)."""
        self.caption(row)
        return {**row, "cardiomegaly": 1 - int(row["cardiomegaly"])}
