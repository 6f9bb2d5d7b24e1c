"""The report's figures kept on disk by a hash of what drew them, so a run whose stages all come from the
cache does not redraw them: matplotlib takes seconds per figure (a 16-panel δ sweep about 2 s on one core).

A figure's key hashes the drawing function's name, the source of ldbench/report/plots.py (any edit to a
figure's code draws afresh), the matplotlib and seaborn versions and every input value (arrays by dtype,
shape and bytes). A figure is written to a temporary file and renamed into place, so a killed run leaves no
half-written PNG. Figures are drawings, never numbers: the numbers of a report come from the store.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ldbench.hashing import array_hash

_DIRECTORIES: list[Path] = []  # the innermost directory of `figures_kept_in`, when inside one


@contextmanager
def figures_kept_in(directory: Path) -> Iterator[None]:
    """Within this block every `kept` figure is read from `directory` when it was drawn there before."""
    _DIRECTORIES.append(Path(directory))
    try:
        yield
    finally:
        _DIRECTORIES.pop()


class _Unhashable(TypeError):
    """An input the key cannot describe exactly: the figure is drawn, not kept."""


def _update(h, value) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"array:{array_hash(value, length=64)};".encode())
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            _update(h, k)
            _update(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _update(h, item)
        h.update(b"]")
    elif isinstance(value, np.generic):
        _update(h, value.item())
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise _Unhashable(type(value).__name__)


@functools.cache
def _drawing_code() -> bytes:
    from importlib.metadata import version  # the installed versions, without importing them (about 2 s)

    plots_source = (Path(__file__).parent / "plots.py").read_bytes()
    return plots_source + f"matplotlib {version('matplotlib')} seaborn {version('seaborn')}".encode()


def figure_key(name: str, args: tuple, kwargs: dict) -> str:
    h = hashlib.sha256(_drawing_code())
    _update(h, [name, list(args), kwargs])
    return h.hexdigest()[:24]


def kept(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """A figure function (inputs -> PNG bytes) whose PNG is kept inside `figures_kept_in`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> bytes:
        if not _DIRECTORIES:
            return draw(*args, **kwargs)
        try:
            key = figure_key(draw.__name__, args, kwargs)
        except _Unhashable:
            return draw(*args, **kwargs)
        path = _DIRECTORIES[-1] / f"{draw.__name__}-{key}.png"
        if path.is_file():
            return path.read_bytes()
        png = draw(*args, **kwargs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        return png

    return wrapper
