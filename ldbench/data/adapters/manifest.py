"""manifest: any image collection described by a manifest.csv (PNG, JPG, 16-bit PNG, DICOM, NIfTI)."""

from __future__ import annotations

import math
from collections import Counter

from ldbench.data import DATASETS
from ldbench.data.adapters.common import Entry, RealDataset, csv_rows, inside, read_csv
from ldbench.data.readers import IMAGE_SUFFIXES, ImageError, image_format
from ldbench.errors import UserError

RESERVED = ("path", "subject_id", "timepoint", "subject", "visit", "split")


@DATASETS.register("manifest")
class Manifest(RealDataset):
    """A generic dataset: manifest.csv at the root lists every image with its subject, timepoint and labels.

    Layout (ROOT = options.root):

        ROOT/manifest.csv    columns: path, subject_id, timepoint, then any attribute columns
        ROOT/<path>          the images, any mix of .png (8- or 16-bit), .jpg/.jpeg, .dcm (DICOM, read
                             with pydicom: RescaleSlope/Intercept applied, MONOCHROME1 inverted) and
                             .nii/.nii.gz (NIfTI, 2-D or 3-D; volumes go through the orientation and
                             slice policies)

    path: relative to ROOT (absolute paths and paths leaving ROOT are problems). subject_id: any
    string. timepoint: a number (days, months, visit index...) ordering a subject's images; the
    `visit` attribute is its rank within the subject. Attribute columns become attributes: a column
    whose values are all numbers is numeric, otherwise text. (subject_id, timepoint) must be unique.

    Captions: "{caption_prefix}, {column} {value}, ..." over caption_columns (default: every attribute
    column, in file order), e.g. "medical image, diagnosis AD, age 71". counterfactual: the attribute
    column (with exactly two values) that counterfactual_row flips; without it counterfactual_row is an
    error. No ground-truth counterfactual images.
    """

    name = "manifest"
    needs = "manifest.csv (path, subject_id, timepoint, attribute columns) and the images under options.root"
    csv_name = "manifest.csv"

    def __init__(self, root=None, caption_prefix: str = "medical image", caption_columns: list | None = None,
                 counterfactual: str | None = None, **common) -> None:
        if not isinstance(caption_prefix, str):
            raise UserError(f"manifest: caption_prefix must be text, got {caption_prefix!r}")
        if caption_columns is not None and (not isinstance(caption_columns, list)
                                            or not all(isinstance(c, str) for c in caption_columns)):
            raise UserError(f"manifest: caption_columns must be a list of column names, got {caption_columns!r}")
        if counterfactual is not None and not isinstance(counterfactual, str):
            raise UserError(f"manifest: counterfactual must be a column name, got {counterfactual!r}")
        self.caption_prefix = caption_prefix
        self.caption_columns = caption_columns
        self.counterfactual = counterfactual
        self._values: dict[str, list] = {}
        self.label_columns = ()
        super().__init__(root, **common)

    def _extra_options(self) -> dict:
        return {"caption_prefix": self.caption_prefix, "caption_columns": self.caption_columns,
                "counterfactual": self.counterfactual}

    def index_files(self):
        return [self.root / self.csv_name]

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        csv_path = self.root / self.csv_name
        parsed = read_csv(csv_path, {"path": ("path",), "subject": ("subject_id",), "timepoint": ("timepoint",)},
                          problems, fix="write manifest.csv (path, subject_id, timepoint, attributes) at the root")
        if parsed is None:
            return []
        rows, _ = parsed
        attr_cols = [c for c in (rows[0] if rows else {}) if c not in RESERVED and c]
        for c in (self.caption_columns or []) + ([self.counterfactual] if self.counterfactual else []):
            if rows and c not in attr_cols:
                problems.append(f"{csv_path}: option column {c!r} is not an attribute column "
                                f"(have: {', '.join(attr_cols) or 'none'}); fix the option or add the column")
                return []
        numeric = {c: all(_is_number(r[c]) for r in rows) for c in attr_cols}
        self._text_age = [r[c] for c in attr_cols if c.lower() == "age" and not numeric[c] for r in rows
                          if not _is_number(r[c])][:3]
        entries = []
        for where, row in csv_rows(rows, self.csv_name):
            path = inside(self.root, row["path"], where, problems)
            if path is None:
                continue
            try:
                image_format(path)
            except ImageError as exc:
                problems.append(f"{where}: {row['path']}: {exc}")
                continue
            if not row["subject_id"]:
                problems.append(f"{where}: empty subject_id; fill it in")
                continue
            if not _is_number(row["timepoint"]):
                problems.append(f"{where}: timepoint {row['timepoint']!r} is not a number; use days, months or a "
                                f"visit index")
                continue
            attrs = {}
            for c in attr_cols:
                attrs[c] = _number(row[c]) if numeric[c] else row[c]
            entries.append(Entry(where, path, row["subject_id"], (float(row["timepoint"]),), attrs))
        self._values = {c: sorted({e.attrs[c] for e in entries}, key=str) for c in attr_cols}
        self.label_columns = tuple(c for c in attr_cols if len(self._values[c]) <= 20)
        if self.counterfactual and len(self._values.get(self.counterfactual, [])) != 2:
            problems.append(f"{csv_path}: counterfactual column {self.counterfactual!r} has values "
                            f"{self._values.get(self.counterfactual)}; it needs exactly two")
        return entries

    def check(self) -> tuple[dict, list[str]]:
        summary, problems = super().check()
        if getattr(self, "_text_age", None):
            summary["age"] = (f"read as text, not numbers (e.g. {', '.join(map(repr, self._text_age))}): the "
                              "instruct editor and the age oracles refuse it; write ages in years")
        return summary, problems

    def caption(self, row: dict) -> str:
        cols = self.caption_columns
        if cols is None:
            cols = [c for c in row if c not in RESERVED]
        return ", ".join([self.caption_prefix, *(f"{c.replace('_', ' ')} {_fmt(row[c])}" for c in cols)])

    def counterfactual_row(self, row: dict) -> dict:
        if not self.counterfactual:
            raise UserError("manifest: set options.counterfactual to the two-valued attribute column to flip")
        values = self._values.get(self.counterfactual)
        if not values:
            values = sorted({v for v in [row[self.counterfactual]]}, key=str)
        if len(values) != 2 or row[self.counterfactual] not in values:
            raise UserError(f"manifest: cannot flip {self.counterfactual}={row[self.counterfactual]!r} "
                            f"(values {values}); prepare() the dataset first")
        a, b = values
        return {**row, self.counterfactual: b if row[self.counterfactual] == a else a}


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _number(value: str) -> int | float:
    x = float(value)
    return int(x) if x.is_integer() and "." not in value and "e" not in value.lower() else x


def _fmt(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


assert IMAGE_SUFFIXES  # the formats listed in the docstring
