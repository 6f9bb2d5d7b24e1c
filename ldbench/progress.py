"""Progress on long work: rich bars on a terminal, plain lines in a log, nothing with --quiet.

A log (CI, a batch job, `nohup`, a SLURM worker's output file) cannot show a live bar, so there a loop
prints a line once it has run LOG_EVERY_S seconds, then one every LOG_EVERY_S, and a last one when it ends;
work shorter than that prints nothing, so a log holds the hour-long loops and not the many short ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True)  # messages with markup: escape user text (paths, names) with `escape`
LOG_EVERY_S = 60.0  # seconds between two progress lines in a log


def progress_bar(items: Iterable[T], desc: str, quiet: bool = False, total: int | None = None) -> Iterator[T]:
    if quiet:
        yield from items
        return
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    if not console.is_terminal:
        yield from _logged(items, desc, total)
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(desc), total=total)  # the bar's text column reads markup
        for item in items:
            yield item
            progress.advance(task)


def _logged(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    """`items`, printing a progress line every LOG_EVERY_S seconds and a last one if any was printed."""
    start = last = time.monotonic()
    done, printed = 0, False
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            _line(desc, done, total, now - start)
            last, printed = now, True
    if printed and last != now:  # the end, unless the last item's line just said it
        _line(desc, done, total, now - start)


def _line(desc: str, done: int, total: int | None, elapsed: float) -> None:
    if total:
        eta = elapsed / done * (total - done) if done else 0.0
        text = f"{desc}: {done}/{total} ({100 * done / total:.0f}%), {_clock(elapsed)} elapsed, eta {_clock(eta)}"
    else:
        text = f"{desc}: {done} done, {_clock(elapsed)} elapsed"
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    """H:MM:SS, as the terminal bar shows it."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
