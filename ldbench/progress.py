"""Progress bars on long work (rich), silenced by --quiet or when the output is not a terminal log."""

from __future__ import annotations

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


def progress_bar(items: Iterable[T], desc: str, quiet: bool = False, total: int | None = None) -> Iterator[T]:
    if quiet:
        yield from items
        return
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
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
