"""The content-addressed store: cache hits, keys, atomic entries, corruption, concurrent builders."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from ldbench.errors import UserError
from ldbench.store import MANIFEST, Store


class Builder:
    """A build function that counts its calls and writes two files."""

    def __init__(self, payload: str = "hello") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, tmp: Path) -> dict:
        self.calls += 1
        (tmp / "a.txt").write_text(self.payload)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(bytes(range(256)))
        return {"n": 3, "shape": (2, 3), "payload": self.payload}


def leftovers(root: Path) -> list[str]:
    """Everything under the store except lock files and (empty) stage directories."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if ".locks" not in p.parts and not (p.is_dir() and not any(p.iterdir())))


def test_builds_once_then_cache_hit(tmp_path):
    store = Store(tmp_path)
    build = Builder()
    first = store.get_or_build("stage", "1", {"x": 1}, [], build)
    assert first.cached is False
    assert build.calls == 1
    assert first.file("a.txt").read_text() == "hello"
    assert first.file("sub/b.bin").read_bytes() == bytes(range(256))
    assert (first.path / MANIFEST).is_file()

    second = store.get_or_build("stage", "1", {"x": 1}, [], build)
    assert build.calls == 1  # not called again
    assert second.cached is True
    assert second.key == first.key and second.path == first.path
    assert second.meta == first.meta == {"n": 3, "shape": [2, 3], "payload": "hello"}  # same types either way
    assert [e["cached"] for e in store.events] == [False, True]

    # a fresh Store on the same root (another run) finds it too
    third = Store(tmp_path).get_or_build("stage", "1", {"x": 1}, [], build)
    assert third.cached is True and build.calls == 1


def test_before_first_build_runs_once_before_any_build_and_never_for_a_hit(tmp_path):
    build = Builder()
    Store(tmp_path).get_or_build("stage", "1", {"x": 1}, [], build)
    store, calls = Store(tmp_path), []
    store.before_first_build = lambda: calls.append(build.calls)
    assert store.get_or_build("stage", "1", {"x": 1}, [], build).cached and calls == []  # a hit: no check
    store.get_or_build("stage", "1", {"x": 2}, [], build)
    store.get_or_build("stage", "1", {"x": 3}, [], build)
    assert calls == [1] and build.calls == 3  # once, before the second build began

    def refuse() -> None:
        raise UserError("unknown classifier model 'resnet181'")

    failing = Store(tmp_path / "other")
    failing.before_first_build = refuse
    with pytest.raises(UserError, match="resnet181"):
        failing.get_or_build("stage", "1", {"x": 1}, [], build)
    assert build.calls == 3 and leftovers(tmp_path / "other") == []  # refused before any work


def test_key_depends_on_stage_version_config_and_upstream(tmp_path):
    store = Store(tmp_path)
    key = store.key("s", "1", {"a": 1, "b": [1, 2]}, ["u1", "u2"])
    assert store.key("s", "1", {"b": [1, 2], "a": 1}, ["u2", "u1"]) == key  # canonical: order does not matter
    assert store.key("t", "1", {"a": 1, "b": [1, 2]}, ["u1", "u2"]) != key
    assert store.key("s", "2", {"a": 1, "b": [1, 2]}, ["u1", "u2"]) != key
    assert store.key("s", "1", {"a": 2, "b": [1, 2]}, ["u1", "u2"]) != key
    assert store.key("s", "1", {"a": 1, "b": [1, 2]}, ["u1", "u3"]) != key
    assert store.key("s", "1", {"a": 1, "b": [1, 2]}, ["u1"]) != key


def test_changed_config_version_or_upstream_rebuilds(tmp_path):
    store = Store(tmp_path)
    build = Builder()
    base = store.get_or_build("s", "1", {"a": 1}, [], build)
    up = store.get_or_build("up", "1", {}, [], Builder())
    up2 = store.get_or_build("up", "1", {"other": True}, [], Builder())
    variants = [
        store.get_or_build("s", "1", {"a": 2}, [], build),
        store.get_or_build("s", "2", {"a": 1}, [], build),
        store.get_or_build("s", "1", {"a": 1}, [up], build),
        store.get_or_build("s", "1", {"a": 1}, [up2], build),
    ]
    assert build.calls == 5
    assert not any(v.cached for v in variants)
    assert len({base.key, *(v.key for v in variants)}) == 5
    manifest = json.loads((variants[2].path / MANIFEST).read_text())
    assert manifest["upstream"] == {"up": up.key}
    assert manifest["config"] == {"a": 1} and manifest["version"] == "1"


def test_failed_build_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path)

    def failing(tmp: Path) -> dict:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.get_or_build("s", "1", {}, [], failing)
    assert leftovers(tmp_path) == []
    assert store.events == []

    build = Builder()
    art = store.get_or_build("s", "1", {}, [], build)  # the next attempt builds normally
    assert art.cached is False and build.calls == 1


def test_unserialisable_meta_leaves_nothing_behind(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(TypeError):
        store.get_or_build("s", "1", {}, [], lambda tmp: {"bad": object()})
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["a.txt", "sub/b.bin"])
def test_tampered_file_is_detected_and_rebuilt(tmp_path, target):
    store = Store(tmp_path)
    build = Builder()
    art = store.get_or_build("s", "1", {}, [], build)
    path = art.file(target)
    data = bytearray(path.read_bytes())
    data[0] ^= 0x01  # flip one bit
    path.write_bytes(bytes(data))

    again = store.get_or_build("s", "1", {}, [], build)
    assert build.calls == 2
    assert again.cached is False
    assert again.path == art.path
    assert again.file("a.txt").read_text() == "hello"
    assert again.file("sub/b.bin").read_bytes() == bytes(range(256))
    assert store.get_or_build("s", "1", {}, [], build).cached is True


def test_deleted_file_is_detected_and_rebuilt(tmp_path):
    store = Store(tmp_path)
    build = Builder()
    art = store.get_or_build("s", "1", {}, [], build)
    art.file("a.txt").unlink()
    assert store.get_or_build("s", "1", {}, [], build).cached is False
    assert build.calls == 2 and art.file("a.txt").read_text() == "hello"


@pytest.mark.parametrize("manifest_text", ["{not json", "[]", '{"files": []}', '{"meta": {}, "files": {}}'])
def test_corrupt_manifest_is_rebuilt(tmp_path, manifest_text):
    store = Store(tmp_path)
    build = Builder()
    art = store.get_or_build("s", "1", {}, [], build)
    (art.path / MANIFEST).write_text(manifest_text)
    again = store.get_or_build("s", "1", {}, [], build)
    assert again.cached is False and build.calls == 2
    assert json.loads((art.path / MANIFEST).read_text())["key"] == art.key


def test_entry_without_manifest_is_ignored_and_rebuilt(tmp_path):
    store = Store(tmp_path)
    key = store.key("s", "1", {"k": 1}, [])
    partial = tmp_path / "s" / key  # as if killed after writing files but before the manifest
    partial.mkdir(parents=True)
    (partial / "a.txt").write_text("partial garbage")
    (partial / "stray.txt").write_text("never finished")

    build = Builder()
    art = store.get_or_build("s", "1", {"k": 1}, [], build)
    assert art.cached is False and build.calls == 1
    assert art.key == key
    assert art.file("a.txt").read_text() == "hello"
    assert not art.file("stray.txt").exists()


def test_threads_asking_for_the_same_key_build_once(tmp_path):
    calls = []
    lock = threading.Lock()

    def slow_build(tmp: Path) -> dict:
        with lock:
            calls.append(threading.get_ident())
        time.sleep(0.2)
        (tmp / "x.txt").write_text("x")
        return {}

    results = []

    def worker() -> None:
        results.append(Store(tmp_path).get_or_build("s", "1", {"same": True}, [], slow_build))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1
    assert len(results) == 4
    assert sorted(r.cached for r in results) == [False, True, True, True]
    assert len({r.path for r in results}) == 1


def _process_worker(root: str, counter: str, queue) -> None:
    def slow_build(tmp: Path) -> dict:
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(0.3)
        (tmp / "x.txt").write_text("x")
        return {"ok": True}

    art = Store(Path(root)).get_or_build("s", "1", {"same": True}, [], slow_build)
    queue.put((art.key, art.cached))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_processes_asking_for_the_same_key_build_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    counter = tmp_path / "counter.txt"
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_worker, args=(str(tmp_path / "store"), str(counter), queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert counter.read_text().splitlines() == ["built"]
    assert len({key for key, _ in results}) == 1
    assert sorted(cached for _, cached in results) == [False, True, True]
