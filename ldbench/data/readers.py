"""The one image-file reader of ldbench: PNG / JPG (8- and 16-bit), DICOM (pydicom), NIfTI (nibabel).

Used by the real-data adapters (through the preprocessing policies) and by the image folders of
`ldbench fid` (ldbench.data.images, which applies its own fixed value/channel rules to the result), so
that both decode, detect bit depth and report bad files the same way.

Every reader returns a `RawImage` holding the stored values as float64 (never truncated to 8 bits) and,
for NIfTI, the nibabel image (so an orientation policy can reorient it). Anything unreadable raises
`ImageError` with a one-line reason; callers add the file name (and CSV row) to it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii", ".nii.gz")


T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Reader threads when none are asked for: min(4, CPUs). Decoding (zlib, libjpeg, gzip) and the
    numpy/PIL preprocessing release the GIL for much of their time, so threads overlap usefully, and
    more than 4 mostly adds memory (several volumes in flight) for little gain."""
    return min(4, os.cpu_count() or 1)


def check_workers(workers: object, what: str) -> int:
    """`workers` as an int >= 1 (None: default_workers()); else a UserError naming the value."""
    from ldbench.errors import UserError

    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"{what}: workers must be an integer >= 1 (reader threads), got {workers!r}")
    return workers


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order (so output and the first error
    reported are the same as a serial loop's). workers == 1 runs in the calling thread. All items are
    submitted at once: give it a batch, or make fn return small results."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="ldbench-read") as pool:
        yield from pool.map(fn, items)


class ImageError(ValueError):
    """A file that is not a usable image (the message says why)."""


@dataclass
class RawImage:
    """Stored values (float64; 2-D (H, W), 2-D with channels (H, W, C), or a 3-D volume)."""

    data: np.ndarray
    format: str  # "png", "jpg", "dicom", "nifti"
    nifti: object | None = None  # the nibabel image (volumes only), for orientation policies
    bit_depth: int | None = None
    mode: str | None = None  # Pillow's mode after palette/bilevel/CMYK conversion (PNG / JPG only)


def image_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".dcm"):
        return "dicom"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpg"
    raise ImageError(f"unsupported image type {path.suffix or '(no suffix)'!r}; use one of {', '.join(IMAGE_SUFFIXES)}")


def read_image(path: Path) -> RawImage:
    fmt = image_format(path)
    if not path.is_file():
        raise ImageError("file does not exist")
    reader = {"nifti": _read_nifti, "dicom": _read_dicom, "png": _read_pil, "jpg": _read_pil}[fmt]
    try:
        raw = reader(path)
    except ImageError:
        raise
    except (OSError, ValueError, EOFError, zlib.error, gzip.BadGzipFile, SyntaxError, AttributeError,
            KeyError, IndexError, TypeError) as exc:
        raise ImageError(f"unreadable or truncated {fmt} file ({_first_line(exc)})") from None
    except Exception as exc:  # third-party readers raise their own types (nibabel, pydicom)
        raise ImageError(f"unreadable {fmt} file ({_first_line(exc)})") from None
    raw.format = fmt
    if raw.data.size == 0:
        raise ImageError(f"empty image (shape {raw.data.shape})")
    bad = ~np.isfinite(raw.data)
    if bad.any():
        raise ImageError(f"{int(bad.sum())} NaN/Inf values; fix or remove the image")
    return raw


def _first_line(exc: BaseException) -> str:
    """'Type: first line of the message': error messages stay one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG / JPG from its header only (no decoding): lets a folder check that all
    its images share one size before reading any of them."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"unreadable or corrupt image ({_first_line(exc)})") from None
    return h, w


def png_bit_depth(path: Path) -> int | None:
    """The bit depth in a PNG's IHDR header (None for other files). Pillow opens 16-bit grayscale PNGs
    as mode "I", so the header, not the values, says whether a file is 16-bit."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) >= 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def _read_pil(path: Path) -> RawImage:
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decodes everything: truncated files fail here
        mode = im.mode
        if not mode.startswith("I") and mode != "F" and png_bit_depth(path) == 16:
            # Pillow decodes 16-bit RGB(A) / LA PNGs to 8 bits per channel: refuse rather than truncate
            raise ImageError("16-bit colour PNG, which Pillow can only read truncated to 8 bits; "
                             "save it as 16-bit grayscale")
        if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
            # palette with transparency -> RGBA (what Pillow itself asks for), bilevel -> L (0 / 255)
            rgba = mode == "PA" or (mode == "P" and "transparency" in im.info)
            im = im.convert("RGBA" if rgba else "RGB" if mode != "1" else "L")
            mode = im.mode
        if mode == "LA":
            im = im.getchannel("L")
            mode = "L"
        arr = np.asarray(im)
    sixteen = mode.startswith("I;16") or (mode == "I" and (png_bit_depth(path) == 16 or arr.max(initial=0) > 255))
    depth = 16 if sixteen else 8
    if mode == "F":
        depth = 32
    return RawImage(arr.astype(np.float64), format="", bit_depth=depth, mode=mode)


def _read_dicom(path: Path) -> RawImage:
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds:
        raise ImageError("DICOM file has no pixel data")
    try:
        arr = np.asarray(ds.pixel_array, dtype=np.float64)
    except RuntimeError as exc:  # a compressed transfer syntax whose decoder plugin is not installed
        plugins = "; ".join(line.strip() for line in str(exc).splitlines()[1:])
        if not plugins:
            raise
        raise ImageError(f"{ds.file_meta.TransferSyntaxUID.name} pixel data needs a decoder that is not "
                         f"installed; any one of: {plugins}") from None
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = arr * slope + intercept
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":  # stored inverted: high values are dark
        arr = arr.max() + arr.min() - arr
    if arr.ndim == 3 and int(getattr(ds, "NumberOfFrames", 1) or 1) == 1 and arr.shape[-1] not in (3, 4):
        raise ImageError(f"DICOM pixel array has unexpected shape {arr.shape}")
    return RawImage(arr, format="", bit_depth=int(getattr(ds, "BitsStored", 0) or 0) or None)


def _read_nifti(path: Path) -> RawImage:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float64)  # reads (and decompresses) everything
    return RawImage(data, format="", nifti=img)
