"""SIGKILL a real run at several points; rerunning finishes with the numbers of an uninterrupted run and
recomputes only what was unfinished."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.test_smoke_pipeline import TOY

pytestmark = pytest.mark.slow


def _cmd(cache, out):
    args = [sys.executable, "-m", "ldbench.cli", "run", "--suite", "smoke", "--cache-dir", str(cache),
            "--out", str(out), "--quiet"]
    for o in TOY:
        args += ["--set", o]
    return args


def _stage_events(out):
    path = out / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if '"event": "stage"' in line]


def _values(out):
    return [(r["metric"], r["editor"], r["drift"]["delta"], r["value"], r["ci95"])
            for r in json.loads((out / "results.json").read_text())["records"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    subprocess.run(_cmd(root / "cache", root / "out"), check=True, capture_output=True)
    return root


@pytest.mark.parametrize("kill_after_stages", [1, 4])
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, reference, kill_after_stages):

    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = subprocess.Popen(_cmd(cache, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(_stage_events(out)) < kill_after_stages and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(_stage_events(out))
    assert not (out / "results.json").exists() or done_before >= kill_after_stages

    subprocess.run(_cmd(cache, out), check=True, capture_output=True)
    assert _values(out) == _values(reference / "out")
    # nothing half-written survives in the store
    assert not list(cache.rglob(".tmp-*"))
    for entry in cache.glob("*/*"):
        if entry.is_dir() and not entry.name.startswith("."):
            assert (entry / "artifact.json").exists()
