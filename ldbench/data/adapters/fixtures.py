"""Tiny example copies of every supported layout (real NIfTI, DICOM, JPG, PNG, 16-bit PNG files).

Used by the tests and benchmarks/perf/bench_readers.py; also a concrete picture of each layout. The
images are simple phantoms (a bright ellipse/ellipsoid on a dark background), not real anatomy.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ldbench.data.adapters.labels import OBSERVATIONS


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def phantom_2d(rng: np.random.Generator, shape=(40, 36), scale: float = 1.0) -> np.ndarray:
    """float in [0, 1]: a noisy bright ellipse."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((yy - h / 2) / (0.38 * h)) ** 2 + ((xx - w / 2) / (0.36 * w * scale)) ** 2
    img = np.where(r < 1, 0.7 - 0.3 * r, 0.05) + 0.03 * rng.standard_normal(shape)
    return np.clip(img, 0.0, 1.0)


def phantom_volume(rng: np.random.Generator, shape=(24, 28, 20)) -> np.ndarray:
    """float32 T1-like volume: an ellipsoid 'brain' (values ~100-800) on a zero background."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = x**2 / 0.7**2 + y**2 / 0.8**2 + (z + 0.1) ** 2 / 0.75**2
    vol = np.where(r < 1, 800 * (1 - 0.5 * r), 0.0) + np.where(r < 1, 20 * rng.standard_normal(shape), 0.0)
    return vol.astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # LAS: canonical orientation has to flip x
    nib.save(nib.Nifti1Image(data, affine), str(path))


def write_png(path: Path, img01: np.ndarray, bits: int = 8, rgb: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        Image.fromarray((img01 * 65535).astype(np.uint16)).save(path)
    else:
        arr = (img01 * 255).astype(np.uint8)
        Image.fromarray(np.stack([arr] * 3, -1) if rgb else arr).save(path)


def write_jpg(path: Path, img01: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img01 * 255).astype(np.uint8)).save(path, quality=90)


def write_dicom(path: Path, img01: np.ndarray, monochrome1: bool = False) -> None:
    """An uncompressed 16-bit (12 bits stored) secondary-capture DICOM file."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientID = "fixture"
    values = (img01 * 4095).astype(np.uint16)
    if monochrome1:
        values = (4095 - values).astype(np.uint16)
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = values.tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# --- layouts ---------------------------------------------------------------------------------------------


def write_adni(root: Path, n_subjects: int = 4, visits: int = 2, seed: int = 0,
               volume_shape: tuple[int, int, int] = (24, 28, 20)) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    dx_cycle = ["CN", "MCI", "Dementia"]
    for s in range(n_subjects):
        ptid = f"011_S_{s + 1:04d}"
        for v in range(visits):
            viscode = "bl" if v == 0 else f"m{12 * v:02d}"
            write_nifti(root / "images" / ptid / f"{viscode}.nii.gz", phantom_volume(rng, volume_shape))
            rows.append([s + 1, ptid, viscode, 70.0 + s, dx_cycle[s % 3], "CN" if s % 3 == 0 else "LMCI" if s % 3 == 1 else "AD",
                         "Male" if s % 2 else "Female", v])
        rows.append([s + 1, ptid, "m06", 70.0 + s, "", "", "Male" if s % 2 else "Female", 0.5])  # clinical-only
    _write_csv(root / "ADNIMERGE.csv", ["RID", "PTID", "VISCODE", "AGE", "DX", "DX_bl", "PTGENDER", "Years_bl"], rows)
    return root


def write_oasis3(root: Path, n_subjects: int = 4, visits: int = 2, seed: int = 0,
                 volume_shape: tuple[int, int, int] = (24, 28, 20)) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        sid = f"OAS3{s + 1:04d}"
        for v in range(visits):
            days = 400 * v + 7 * s
            write_nifti(root / "images" / sid / f"{sid}_MR_d{days:04d}.nii.gz", phantom_volume(rng, volume_shape))
            rows.append([sid, f"{sid}_MR_d{days:04d}", days, 65.0 + s, [0, 0.5, 1][s % 3], 1 + s % 2])
    _write_csv(root / "clinical.csv", ["OASISID", "OASIS_session_label", "days_to_visit", "ageAtEntry", "cdr",
                                       "GENDER"], rows)
    return root


def _cxr_labels(rng: np.random.Generator) -> list[str]:
    out = []
    for _ in OBSERVATIONS:
        u = rng.random()
        out.append("1.0" if u < 0.25 else "0.0" if u < 0.5 else "-1.0" if u < 0.6 else "")
    return out


def write_chexpert(root: Path, n_subjects: int = 4, studies: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subjects):
        for st in range(1, studies + 1):
            for view, fl in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
                rel = f"train/patient{s + 1:05d}/study{st}/{view}.jpg"
                write_jpg(root / rel, phantom_2d(rng, (48, 40)))
                rows.append([f"{root.name}/{rel}", "Male" if s % 2 else "Female", 50 + s, fl,
                             "PA" if fl == "Frontal" else "", *_cxr_labels(rng)])
    _write_csv(root / "train.csv", ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS], rows)
    return root


def write_mimic(root: Path, n_subjects: int = 4, studies: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    meta, labels = [], []
    for s in range(n_subjects):
        subject = f"1{s:07d}"
        for st in range(studies):
            study = f"5{s:03d}{st:04d}"
            date = 21500101 + 100 * (studies - st)  # study ids are not in time order: dates decide
            for k, view in enumerate(("PA", "LATERAL")):
                dicom_id = f"{s:02d}{st:02d}{k:02d}aa-bbbbbbbb-cccccccc-dddddddd"
                write_jpg(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg",
                          phantom_2d(rng, (44, 44)))
                meta.append([dicom_id, subject, study, "CHEST (PA AND LAT)", view, 44, 44, date, "101500.000"])
            labels.append([subject, study, *_cxr_labels(rng)])
    _write_csv(root / "mimic-cxr-2.0.0-metadata.csv", ["dicom_id", "subject_id", "study_id",
               "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns", "StudyDate", "StudyTime"], meta)
    _write_csv(root / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *OBSERVATIONS], labels)
    return root


def write_manifest(root: Path, n_subjects: int = 5, seed: int = 0) -> Path:
    """Each subject has two timepoints; the files cycle through PNG, RGB PNG, 16-bit PNG, JPG, DICOM
    (MONOCHROME2 and 1), 2-D NIfTI and 3-D NIfTI."""
    rng = np.random.default_rng(seed)
    kinds = ["png", "png-rgb", "png16", "jpg", "dcm", "dcm-mono1", "nii2d", "nii3d"]
    rows = []
    i = 0
    for s in range(n_subjects):
        for t in (0, 6):
            kind = kinds[i % len(kinds)]
            i += 1
            img = phantom_2d(rng, (40, 36))
            stem = f"images/s{s}/t{t}"
            if kind == "png":
                rel = f"{stem}.png"
                write_png(root / rel, img)
            elif kind == "png-rgb":
                rel = f"{stem}.png"
                write_png(root / rel, img, rgb=True)
            elif kind == "png16":
                rel = f"{stem}.png"
                write_png(root / rel, img, bits=16)
            elif kind == "jpg":
                rel = f"{stem}.jpg"
                write_jpg(root / rel, img)
            elif kind in ("dcm", "dcm-mono1"):
                rel = f"{stem}.dcm"
                write_dicom(root / rel, img, monochrome1=kind == "dcm-mono1")
            elif kind == "nii2d":
                rel = f"{stem}.nii.gz"
                write_nifti(root / rel, (img * 1000).astype(np.float32), np.eye(4))
            else:
                rel = f"{stem}.nii.gz"
                write_nifti(root / rel, phantom_volume(rng))
            rows.append([rel, f"subj{s}", t, ["CN", "AD"][s % 2], 60 + s])
    _write_csv(root / "manifest.csv", ["path", "subject_id", "timepoint", "diagnosis", "age"], rows)
    return root


WRITERS = {"adni": write_adni, "oasis3": write_oasis3, "chexpert": write_chexpert, "mimic-cxr-jpg": write_mimic,
           "manifest": write_manifest}
