"""The data every stage passes around: grayscale images in [0, 1] with one attribute row each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ldbench.errors import UserError
from ldbench.hashing import array_hash

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageTable:
    """N images (float32, (N, H, W), values in [0, 1]) and per-image attribute columns.

    `attributes` always holds `subject` (str), `visit` (int) and `split` (one of SPLITS); a dataset
    adds its own columns (synth-brain: `age` float, `diagnosis` "CN"/"AD").
    """

    images: np.ndarray
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        for key, col in self.attributes.items():
            if len(col) != n:
                raise ValueError(f"attribute {key!r} has {len(col)} rows for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, mask_or_index: np.ndarray) -> ImageTable:
        return ImageTable(
            self.images[mask_or_index], {k: v[mask_or_index] for k, v in self.attributes.items()}
        )

    def split(self, name: str) -> ImageTable:
        return self.select(self.attributes["split"] == name)

    def row(self, i: int) -> dict:
        return {k: v[i].item() for k, v in self.attributes.items()}

    def content_hash(self) -> str:
        keys = sorted(self.attributes)
        return array_hash(self.images, *[np.asarray(self.attributes[k]) for k in keys])

    def save(self, path: Path) -> None:
        """npz without pickle: strings are stored as fixed-width unicode arrays."""
        arrays = {"images": self.images}
        arrays.update({f"attr__{k}": np.asarray(v) for k, v in self.attributes.items()})
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> ImageTable:
        try:
            with np.load(path, allow_pickle=False) as z:
                images = z["images"]
                attrs = {k[len("attr__"):]: z[k] for k in z.files if k.startswith("attr__")}
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: not a readable ldbench image table ({exc}); delete it to rebuild") from None
        return cls(images, attrs)


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready for the pipeline.

    `table`: every image of every split. `counterfactuals`: for each row of `table`, the same subject
    and visit re-rendered with the counterfactual attribute (row-aligned; attributes say which), or
    None when the dataset has no ground truth.
    """

    name: str
    version: str
    table: ImageTable
    counterfactuals: ImageTable | None


class Dataset(Protocol):
    """What a dataset provides. Registered in ldbench.data.DATASETS under its name."""

    name: str
    version: str

    def prepare(self) -> PreparedDataset: ...

    def caption(self, row: dict) -> str:
        """The text prompt describing one image's attributes."""
        ...

    def counterfactual_row(self, row: dict) -> dict:
        """The attribute row of the intended counterfactual of `row` (e.g. diagnosis flipped)."""
        ...
