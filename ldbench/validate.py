"""Shared input checks: each returns the checked value or raises a one-line UserError that names the
value, the limit and what to write instead. Used by the suite loader, the option dataclasses and the
commands, so every input is checked before any work starts."""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

from ldbench.errors import UserError

SEED_MAX = 2**32 - 1  # numpy / torch generators take seeds in [0, 2**32 - 1]


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_in(value: Any, name: str, low: int | None = None, high: int | None = None, example: Any = None) -> int:
    """An integer in [low, high] (either bound optional)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            limit = f"an integer in [{low}, {high}]"
        elif low is not None:
            limit = f"an integer >= {low}"
        else:
            limit = f"an integer <= {high}" if high is not None else "an integer"
        raise UserError(f"{name} must be {limit}, got {value!r}{_example(name, example, low)}")
    return int(value)


def positive_int(value: Any, name: str, example: Any = None) -> int:
    return int_in(value, name, 1, example=example)


def non_negative_int(value: Any, name: str, example: Any = None) -> int:
    return int_in(value, name, 0, example=example)


def finite_float(value: Any, name: str, low: float | None = None, high: float | None = None,
                 low_open: bool = False, example: Any = None) -> float:
    """A finite real number in [low, high] ((low, high] with low_open)."""
    ok = is_real(value) and math.isfinite(float(value))
    if ok and low is not None:
        ok = float(value) > low if low_open else float(value) >= low
    if ok and high is not None:
        ok = float(value) <= high
    if not ok:
        parts = []
        if low is not None:
            parts.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            parts.append(f"<= {high:g}")
        limit = "a finite number" + (f" {' and '.join(parts)}" if parts else "")
        raise UserError(f"{name} must be {limit}, got {value!r}{_example(name, example, low)}")
    return float(value)


def positive_float(value: Any, name: str, example: Any = None) -> float:
    return finite_float(value, name, 0.0, low_open=True, example=example)


def probability(value: Any, name: str) -> float:
    return finite_float(value, name, 0.0, 1.0)


def seed(value: Any, name: str = "seed") -> int:
    return int_in(value, name, 0, SEED_MAX, example=0)


def one_of(value: Any, name: str, choices: tuple | list) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string, got {value!r}")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{name} must be true or false, got {value!r}")
    return value


def _example(name: str, example: Any, low: Any) -> str:
    shown = example if example is not None else low
    if shown is None:
        return ""
    key = name.split(" ")[-1]
    return f"; e.g. {key}: {shown}"


# --- file system ------------------------------------------------------------------------------------


def writable_dir(path: Path, what: str) -> Path:
    """`path` is a directory this process can write into, or can be created as one; checked without
    creating it (a probe file in the nearest existing directory is made and removed at once)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a directory; pass a directory path")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path}: {existing} is a file, not a directory; pass a directory path")
    if not os.access(existing, os.W_OK | os.X_OK) or not _probe(existing):
        raise UserError(f"{what} {path} is not writable ({existing} is read-only); pass a writable directory")
    return path


def _probe(directory: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".ldbench-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True
