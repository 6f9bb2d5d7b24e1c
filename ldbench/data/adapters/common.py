"""What every real-data adapter shares: CSV parsing with problem collection, path checks, image loading
through the preprocessing pipeline, subject splits, and the `datasets check` summary.

An adapter subclasses `RealDataset` and implements `_entries(problems)`: parse its index files into
`Entry`s (one per image: file, subject, a sortable visit key, attribute values). Every problem is
collected as one line naming the file and row, what is wrong and how to fix it; `prepare()` raises a
UserError listing them (nothing is returned, so nothing is cached), `check()` returns them all.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import numbers
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ldbench.data.base import SPLITS, ImageTable, PreparedDataset
from ldbench.data.pairs import longitudinal_pairs
from ldbench.data.preprocess import KINDS, Pipeline
from ldbench.data.readers import IMAGE_SUFFIXES, ImageError, check_workers, ordered_map, read_image
from ldbench.data.splits import check_fractions, subject_splits
from ldbench.errors import UserError

MAX_PROBLEMS_IN_ERROR = 5


@dataclass
class Entry:
    where: str  # "ADNIMERGE.csv row 12"
    path: Path
    subject: str
    order: tuple  # sortable visit key (days, months, date+time, ...)
    attrs: dict = field(default_factory=dict)


@dataclass
class Scan:
    """The outcome of reading a dataset copy: the table (None when nothing could be read), every problem,
    rows skipped on purpose (reason -> count), and raw-image statistics."""

    table: ImageTable | None
    problems: list[str]
    skipped: Counter
    raw_min: float = math.inf
    raw_max: float = -math.inf
    shapes: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)


def is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv(path: Path, required: dict[str, Sequence[str]], problems: list[str], fix: str = "",
             optional: dict[str, Sequence[str]] | None = None) -> tuple[list[dict], dict[str, str]] | None:
    """Rows of a CSV (dicts, values stripped) and {canonical name: column found} for `required` and
    `optional` (each canonical name maps to the accepted column names, first match wins). None, with a
    problem recorded, when the file is missing or unreadable or lacks a required column."""
    if not path.is_file():
        problems.append(f"{path}: file not found; {fix or 'put it at the dataset root'}")
        return None
    try:
        with open_text(path) as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
        problems.append(f"{path}: not a readable CSV ({exc}); re-export it as UTF-8 CSV")
        return None
    found: dict[str, str] = {}
    missing = []
    for canonical, names in {**required, **(optional or {})}.items():
        hit = next((n for n in names if n in header), None)
        if hit is not None:
            found[canonical] = hit
        elif canonical in required:
            missing.append(" or ".join(repr(n) for n in names))
    if missing:
        problems.append(f"{path}: missing column(s) {', '.join(missing)} (header has: {', '.join(header) or 'nothing'}); "
                        f"add them or rename the columns")
        return None
    return rows, found


def inside(root: Path, relative: str, where: str, problems: list[str]) -> Path | None:
    """root / relative if it stays inside root; else a problem and None."""
    if not relative:
        problems.append(f"{where}: empty image path; fill in the path column")
        return None
    candidate = Path(relative)
    resolved = (root / candidate).resolve()
    if candidate.is_absolute() or not resolved.is_relative_to(root.resolve()):
        problems.append(f"{where}: path {relative!r} points outside the dataset root {root}; "
                        f"give paths relative to the root, without '..'")
        return None
    return resolved


def parse_float(value: str, where: str, column: str, problems: list[str], required: bool = True) -> float | None:
    if value == "" and not required:
        return math.nan
    try:
        out = float(value)
    except ValueError:
        out = math.nan
    if not math.isfinite(out):
        problems.append(f"{where}: {column} = {value!r} is not a number; fix the value"
                        + ("" if required else " or leave it empty"))
        return None
    return out


def duplicates(entries: list[Entry], problems: list[str]) -> list[Entry]:
    """Entries with a file or a (subject, visit) already taken are problems (the first one is kept)."""
    seen_path: dict[Path, str] = {}
    seen_visit: dict[tuple, str] = {}
    out = []
    for e in entries:
        if e.path in seen_path:
            problems.append(f"{e.where}: duplicate row: file {_short(e.path)} already listed at {seen_path[e.path]}; "
                            f"remove one of the two rows")
            continue
        key = (e.subject, e.order)
        if key in seen_visit:
            problems.append(f"{e.where}: duplicate row: subject {e.subject} visit {e.order} already listed at "
                            f"{seen_visit[key]}; remove one of the two rows or fix the visit")
            continue
        seen_path[e.path] = e.where
        seen_visit[key] = e.where
        out.append(e)
    return out


def _short(path: Path) -> str:
    return "/".join(path.parts[-3:])


def _problem_order(problem: str) -> tuple:
    """Problems sorted by file, then row number (problems without a row first)."""
    m = re.match(r"^(.*?) row (\d+):", problem)
    return (m.group(1), int(m.group(2))) if m else ("", -1)


def _column(values: list) -> np.ndarray:
    if all(is_int(v) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray([str(v) for v in values])


class RealDataset:
    """Base of the real-data adapters (see the module docstring). Options common to all adapters:

    root: the dataset directory. image_size: output side in pixels (default 64). seed: split seed.
    split_fractions: (train, val, test) fractions of subjects. orientation / slice / channels /
    intensity / resize: preprocessing policies (ldbench.data.preprocess), a name or {name: ..., params}.
    workers: reader threads (default min(4, CPUs)); results are in row order whatever the number, so it
    is not part of the cache key.
    """

    name = "real"
    version = "1"
    needs = ""
    label_columns: tuple[str, ...] = ()
    pipeline_defaults: dict = {}

    def __init__(self, root: str | Path | None = None, image_size: int = 64, seed: int = 0,
                 split_fractions: Sequence[float] = (0.7, 0.1, 0.2), workers: int | None = None,
                 **policies) -> None:
        # policies: orientation / slice / channels / intensity / resize (preprocess.KINDS), each a name or
        # {name: ..., params}; any other name is refused as an unknown keyword is, for the callers that
        # report a dataset's bad options from the TypeError
        unknown = [k for k in policies if k not in KINDS]
        if unknown:
            raise TypeError(f"{RealDataset.__init__.__qualname__}() got an unexpected keyword argument {unknown[0]!r}")
        if root is None or str(root) == "":
            raise UserError(f"{self.name}: needs options.root (the dataset directory): {self.needs}")
        if not is_int(image_size) or not 16 <= image_size <= 1024:
            raise UserError(f"{self.name}: image_size must be an integer in 16..1024, got {image_size!r}")
        if not is_int(seed) or seed < 0:
            raise UserError(f"{self.name}: seed must be a non-negative integer, got {seed!r}")
        if isinstance(split_fractions, (str, bytes)) or not isinstance(split_fractions, Sequence):
            raise UserError(f"{self.name}: split_fractions must be three numbers, got {split_fractions!r}")
        self.workers = check_workers(workers, self.name)
        self.root = Path(root).expanduser().resolve()
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.split_fractions = check_fractions(split_fractions, f"{self.name}: split_fractions")
        chosen = {**self.pipeline_defaults, **{k: v for k, v in policies.items() if v is not None}}
        self.pipeline = Pipeline.build(**chosen)

    # --- for subclasses -----------------------------------------------------------------------------

    def index_files(self) -> list[Path]:
        """The CSV files whose content is part of the cache key."""
        return []

    def _entries(self, problems: list[str], skipped: Counter) -> list[Entry]:
        raise NotImplementedError

    def _extra_options(self) -> dict:
        return {}

    # --- the Dataset protocol -----------------------------------------------------------------------

    def options(self) -> dict:
        digest = hashlib.sha256()
        for p in self.index_files():
            digest.update(p.name.encode())
            digest.update(p.read_bytes() if p.is_file() else b"<missing>")
        return {
            "root": str(self.root),
            "index_sha256": digest.hexdigest(),
            "images_fingerprint": self._images_fingerprint(),
            "image_size": self.image_size,
            "seed": self.seed,
            "split_fractions": list(self.split_fractions),
            "preprocess": self.pipeline.spec(),
            **self._extra_options(),
        }

    def _images_fingerprint(self) -> str:
        """SHA-256 over (relative path, size, mtime) of every image file under the root: an image replaced,
        added or removed under an unchanged CSV changes the cache key (stat only; no file is read)."""
        digest = hashlib.sha256()
        if self.root.is_dir():
            for p in sorted(self.root.rglob("*")):
                if p.name.lower().endswith(IMAGE_SUFFIXES) and p.is_file():
                    st = p.stat()
                    digest.update(f"{p.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def prepare(self) -> PreparedDataset:
        scan = self.scan()
        if scan.problems:
            shown = "; ".join(scan.problems[:MAX_PROBLEMS_IN_ERROR])
            more = len(scan.problems) - MAX_PROBLEMS_IN_ERROR
            raise UserError(
                f"{self.name} at {self.root}: {len(scan.problems)} problem(s): {shown}"
                + (f"; ... and {more} more" if more > 0 else "")
                + f" (`ldbench datasets check {self.name} --root {self.root}` lists them all)")
        assert scan.table is not None
        return PreparedDataset(name=self.name, version=self.version, table=scan.table, counterfactuals=None)

    # --- reading --------------------------------------------------------------------------------------

    def scan(self) -> Scan:
        problems: list[str] = []
        skipped: Counter = Counter()
        if not self.root.is_dir():
            return Scan(None, [f"{self.root}: no such directory; {self.name} needs {self.needs}"], skipped)
        entries = duplicates(self._entries(problems, skipped), problems)
        scan = Scan(None, problems, skipped)
        images, kept, positions = [], [], []
        for e, loaded in zip(entries, ordered_map(self._load, entries, self.workers), strict=True):
            if isinstance(loaded, str):
                problems.append(loaded)
                continue
            raw_min, raw_max, fmt, outputs = loaded
            scan.raw_min = min(scan.raw_min, raw_min)
            scan.raw_max = max(scan.raw_max, raw_max)
            scan.formats[fmt] += 1
            for pos, shape2d, img in outputs:
                scan.shapes[shape2d] += 1
                images.append(img)
                kept.append(e)
                positions.append(math.nan if pos is None else pos)
        if not kept and not problems:
            why = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no rows"
            problems.append(f"{self.root}: empty dataset: no usable images ({why}); {self.needs}")
        if kept:
            scan.table = self._table(np.stack(images), kept, positions if self.pipeline.multi_slice else None)
        problems.sort(key=_problem_order)
        return scan

    def _load(self, e: Entry) -> tuple[float, float, str, list[tuple[float | None, tuple, np.ndarray]]] | str:
        """One entry's file read and preprocessed: (raw min, raw max, format, [(slice position, 2-D shape,
        image)]), or the problem line when the file is not a usable image. Only small results leave this
        function (never the raw volume), so that several can run at once without holding every volume."""
        try:
            raw = read_image(e.path)
            outputs = [(pos, flat.shape, self.pipeline.finish(flat, self.image_size, raw.bit_depth))
                       for pos, flat in self.pipeline.to_2d_all(raw)]
        except ImageError as exc:
            return f"{e.where}: {self._rel(e.path)}: {exc}"
        fmt = f"{raw.format}" + (f" {raw.bit_depth}-bit" if raw.bit_depth else "")
        return float(raw.data.min()), float(raw.data.max()), fmt, outputs

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def _table(self, images: np.ndarray, entries: list[Entry], positions: list[float] | None = None) -> ImageTable:
        """The table, sorted subject-major, visit-minor (then by slice position). `entries` has one item
        per image: an entry repeats once per slice when `positions` (the multi-slice policies' `slice`
        attribute) is given. `visit` is the rank of the entry's visit within its subject, so all slices
        of one volume share a visit, and, like `split`, all rows of a subject share a split."""
        subjects = np.asarray([e.subject for e in entries])
        visit_orders: dict[str, set] = defaultdict(set)
        for e in entries:
            visit_orders[e.subject].add(e.order)
        rank = {s: {o: r for r, o in enumerate(sorted(orders))} for s, orders in visit_orders.items()}
        visit = np.asarray([rank[e.subject][e.order] for e in entries], dtype=np.int64)
        keys = list(entries[0].attrs)
        attrs = {
            "subject": subjects,
            "visit": visit,
            "split": subject_splits(subjects, self.split_fractions, self.seed),
            **{k: _column([e.attrs[k] for e in entries]) for k in keys},
        }
        if positions is None:
            order = np.lexsort((visit, subjects))  # subject-major, visit-minor, like synth-brain
        else:
            attrs["slice"] = np.asarray(positions, dtype=np.float64)
            order = np.lexsort((attrs["slice"], visit, subjects))
        return ImageTable(images, attrs).select(order)

    # --- `ldbench datasets check` ---------------------------------------------------------------------

    def check(self) -> tuple[dict, list[str]]:
        """(summary, problems): the summary describes what could be read even when there are problems."""
        scan = self.scan()
        summary: dict = {"dataset": self.name, "root": str(self.root)}
        if scan.skipped:
            summary["skipped rows"] = dict(scan.skipped)
        table = scan.table
        if table is None:
            return summary, scan.problems
        subjects = table.attributes["subject"]
        visits = set(zip(subjects.tolist(), table.attributes["visit"].tolist(), strict=True))
        visits_per = Counter(s for s, _ in visits)  # distinct visits: a volume may give several slices
        summary.update({
            "subjects": len(visits_per),
            "images": len(table),
            "visits per subject": f"min {min(visits_per.values())}, max {max(visits_per.values())}, "
                                  f"{sum(v > 1 for v in visits_per.values())} subjects with >= 2",
            "longitudinal pairs": len(longitudinal_pairs(table)),
            "raw intensity range": f"[{scan.raw_min:g}, {scan.raw_max:g}]",
            "raw resolution": ", ".join(f"{h}x{w} ({n})" for (h, w), n in scan.shapes.most_common(5))
                              + (" ..." if len(scan.shapes) > 5 else ""),
            "formats": ", ".join(f"{k} ({n})" for k, n in scan.formats.most_common()),
            "prepared": f"{len(table)} x {self.image_size}x{self.image_size} float32 in "
                        f"[{float(table.images.min()):.3g}, {float(table.images.max()):.3g}]",
        })
        if self.pipeline.multi_slice:
            summary["axial slices per volume"] = f"{len(self.pipeline.slice_positions())} at " + ", ".join(
                f"{p:g}" for p in self.pipeline.slice_positions())
        per_split = {}
        for split in SPLITS:
            part = table.split(split)
            counts = {"subjects": len(set(part.attributes["subject"].tolist())), "images": len(part)}
            for col in self.label_columns:
                if col in part.attributes:
                    counts[col] = dict(sorted(Counter(part.attributes[col].tolist()).items(), key=lambda kv: str(kv[0])))
            per_split[split] = counts
        summary["splits"] = per_split
        return summary, scan.problems


def csv_rows(rows: Iterable[dict], csv_name: str):
    """(where, row) with 'FILE row N' where N is the line number in the file (header = line 1)."""
    for i, row in enumerate(rows):
        yield f"{csv_name} row {i + 2}", row
