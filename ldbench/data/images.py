"""Image folders for the standalone metrics (`ldbench fid A B`): PNG / JPEG, 8- or 16-bit, gray or RGB.

Loading rules (all recorded in the result's provenance via `ImageFolder.describe()`):
- files: `*.png`, `*.jpg`, `*.jpeg` (any case) directly in the folder, hidden files skipped, sorted by name;
- values: divided by the maximum of the stored integer type (255 for 8-bit, 65535 for 16-bit), so a
  16-bit PNG is never saturated or truncated to 8 bits; result float64 in [0, 1];
- channels: gray stays gray; RGB (and palette) images become gray by the mean of R, G and B; an alpha
  channel is dropped (channel policy `gray-mean-rgb-drop-alpha`);
- sizes: every image must have the same height and width: images of differing sizes are refused
  (never resized silently); an unreadable or corrupt file is refused naming the file.

Images are read in batches (`iter_batches`), so a folder never has to fit in memory at once; the files
of a batch are decoded on `workers` threads (default min(4, CPUs)), results in file order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ldbench.data import readers
from ldbench.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg")
CHANNEL_POLICY = "gray-mean-rgb-drop-alpha"
VALUE_POLICY = "divide-by-dtype-max"


def list_images(folder: str | Path) -> list[Path]:
    """Sorted PNG/JPEG files directly in `folder`; a missing or empty folder is a UserError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a directory of images")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")
    )
    if not files:
        raise UserError(f"{folder}: no PNG or JPEG images in this folder")
    return files


def read_image(path: str | Path) -> np.ndarray:
    """One image as float64 (H, W) in [0, 1], following the module's value and channel policies.

    Decoding (bit depth, palette/bilevel/CMYK conversion, refusing 16-bit colour PNGs, corrupt files)
    is ldbench.data.readers', shared with the dataset adapters; only the fixed rules of image folders
    (divide by the dtype maximum, mean of R, G, B) are applied here."""
    path = Path(path)
    try:
        raw = readers.read_image(path)
    except readers.ImageError as exc:
        raise UserError(f"{path}: {exc}") from None
    if raw.bit_depth not in (8, 16) or raw.mode not in _FOLDER_MODES or (
            raw.mode == "I" and not 0 <= raw.data.min() <= raw.data.max() <= 65535):
        raise UserError(f"{path}: unsupported image mode {raw.mode!r} (use 8/16-bit gray or 8-bit RGB)")
    x = raw.data
    if x.ndim == 3:
        x = x[..., :3].mean(axis=-1)  # RGB(A) -> gray by the channel mean, alpha dropped
    if x.ndim != 2:
        raise UserError(f"{path}: unexpected image shape {raw.data.shape}")
    return x / (65535.0 if raw.bit_depth == 16 else 255.0)


# Pillow modes an image folder accepts (after readers' conversions): 8-bit gray / RGB(A), 16-bit gray
_FOLDER_MODES = ("L", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N")


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the header only."""
    try:
        return readers.image_size(path)
    except readers.ImageError as exc:
        raise UserError(f"{path}: {exc}") from None


class ImageFolder:
    """A folder of same-size images, checked up front (headers only), read in batches."""

    def __init__(self, folder: str | Path, workers: int | None = None) -> None:
        self.workers = readers.check_workers(workers, f"image folder {folder}")
        self.path = Path(folder)
        self.files = list_images(self.path)
        first = _image_size(self.files[0])
        for p in self.files[1:]:
            size = _image_size(p)
            if size != first:
                raise UserError(
                    f"{p}: size {size[1]}x{size[0]} differs from {self.files[0].name} ({first[1]}x{first[0]}); "
                    "all images of a set must have the same size (resize them yourself: ldbench does not "
                    "resize silently)"
                )
        self.shape = first
        self._hash: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def iter_batches(self, batch_size: int = 64) -> Iterator[np.ndarray]:
        """(b, H, W) float64 batches in [0, 1], in file order; each batch's files are decoded on
        `workers` threads (only one batch is in memory at a time)."""
        if batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {batch_size}")
        for s in range(0, len(self.files), batch_size):
            files = self.files[s : s + batch_size]
            batch = []
            for p, img in zip(files, readers.ordered_map(read_image, files, self.workers), strict=True):
                if img.shape != self.shape:  # a header that lied about the size
                    raise UserError(f"{p}: decoded size {img.shape} differs from {self.shape}")
                batch.append(img)
            yield np.stack(batch)

    def load(self) -> np.ndarray:
        """All images at once, (N, H, W) float64: only for small folders (tests, stats building)."""
        return np.concatenate(list(self.iter_batches(256)))

    def content_hash(self) -> str:
        """SHA-256 over (name, bytes) of every image file in order."""
        if self._hash is None:
            h = hashlib.sha256()
            for p in self.files:
                h.update(p.name.encode() + b"\0")
                with open(p, "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
            self._hash = h.hexdigest()
        return self._hash

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path.resolve()),
            "n": len(self.files),
            "height": self.shape[0],
            "width": self.shape[1],
            "content_sha256": self.content_hash(),
            "channel_policy": CHANNEL_POLICY,
            "value_policy": VALUE_POLICY,
            "file_order": "sorted by name",
        }
