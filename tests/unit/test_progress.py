"""Progress in a log: plain lines for long loops, nothing for short ones or with --quiet."""

import io
import itertools

import pytest
from rich.console import Console

from ldbench import progress


@pytest.fixture
def log(monkeypatch):
    """A non-terminal console, as under CI or a batch job; returns its text so far."""
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, force_terminal=False, width=60))
    return buffer.getvalue


def clock(monkeypatch, step: float) -> None:
    """time.monotonic advancing by `step` seconds per call (one call per item, plus the start)."""
    ticks = itertools.count()
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(ticks) * step)


def test_a_long_loop_prints_a_line_a_minute_and_a_last_one(monkeypatch, log):
    clock(monkeypatch, 25.0)  # 10 items of 25 s: lines at 75, 150 and 225 s, then the end at 250 s
    assert list(progress.progress_bar(range(10), "train [bold]x[/bold]")) == list(range(10))
    lines = log().splitlines()
    assert lines == ["train [bold]x[/bold]: 3/10 (30%), 0:01:15 elapsed, eta 0:02:55",
                     "train [bold]x[/bold]: 6/10 (60%), 0:02:30 elapsed, eta 0:01:40",
                     "train [bold]x[/bold]: 9/10 (90%), 0:03:45 elapsed, eta 0:00:25",
                     "train [bold]x[/bold]: 10/10 (100%), 0:04:10 elapsed, eta 0:00:00"]


def test_short_loops_and_quiet_print_nothing(monkeypatch, log):
    clock(monkeypatch, 1.0)
    assert list(progress.progress_bar(range(50), "short")) == list(range(50))
    clock(monkeypatch, 100.0)
    assert list(progress.progress_bar(range(5), "quiet", quiet=True)) == list(range(5))
    assert log() == ""


def test_an_unknown_total_counts_what_is_done(monkeypatch, log):
    clock(monkeypatch, 40.0)
    assert list(progress.progress_bar(iter(range(3)), "stream")) == [0, 1, 2]
    assert log().splitlines() == ["stream: 2 done, 0:01:20 elapsed", "stream: 3 done, 0:02:00 elapsed"]


def test_a_cell_starts_on_one_line_of_a_narrow_log_with_an_eta_once_a_cell_is_done(monkeypatch):
    from types import SimpleNamespace

    from ldbench.runner import run

    buffer = io.StringIO()
    monkeypatch.setattr(run, "console", Console(file=buffer, force_terminal=False, width=40))
    cell = SimpleNamespace(dataset=SimpleNamespace(name="synth-cxr"), method=SimpleNamespace(name="dreambooth"),
                           drift=SimpleNamespace(label="LD δ=0.1 (noise/init)"), seed=0,
                           editor=SimpleNamespace(name="sdedit"))
    cells = run._CellProgress(3, quiet=False, in_process=True)
    cells.start(0, cell)
    cells.done(0)
    cells.start(1, cell)
    run._CellProgress(3, quiet=True, in_process=True).start(2, cell)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cell 1/3: synth-cxr · dreambooth · LD δ=0.1 (noise/init) · seed 0 · sdedit (elapsed")
    assert lines[1].startswith("cell 2/3: ") and "at the pace so far)" in lines[1]
