"""Content-addressed artifact store: every stage output lives under a hash of what produced it.

key = sha256(stage, stage version, config, upstream keys[, device type and precision unless cpu / fp32]).
An entry is written to a temporary directory and renamed into place only when complete, with a manifest
of its files' SHA-256; a run killed at any moment leaves no half-written entry, and a corrupted entry is
detected and rebuilt, never used. A per-key file lock lets several runs share one store without doing the work twice.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ldbench.device import key_fields, peak_memory, reset_peak_memory, running_on
from ldbench.errors import UserError
from ldbench.hashing import canonical_json, sha256_file, stable_hash

MANIFEST = "artifact.json"
NETWORK_FREE_STAGES = frozenset({"dataset"})  # stages whose output no network computes (no device in the key)


@dataclass(frozen=True)
class Artifact:
    stage: str
    key: str
    path: Path
    meta: dict
    cached: bool  # True when this run found it complete in the store

    def file(self, name: str) -> Path:
        return self.path / name


class Store:
    def __init__(self, root: Path, read_only: bool = False, device: str = "cpu", precision: str = "fp32") -> None:
        self.root = Path(root)
        self.device = device
        # Device type and precision enter the key of every stage that runs a network (all but the dataset),
        # only when they are not cpu / fp32: keys made before --device existed stay the same.
        self.key_extra = key_fields(device, precision)
        self.root.mkdir(parents=True, exist_ok=True)
        self.events: list[dict] = []  # (stage, key, cached, seconds) of this process, for logs and tests
        # read_only: a missing entry is an error instead of a build (`ldbench report` re-renders from the
        # cache and must never quietly recompute a number).
        self.read_only = read_only
        # Called before this store's first build, then dropped: checks too costly for a run whose every stage
        # is cached (ldbench.suite_checks.check_before_building, set by ldbench.runner.run), which any run
        # that builds still passes before its work begins.
        self.before_first_build: Callable[[], None] | None = None

    def key(self, stage: str, version: str, config: object, upstream: list[str]) -> str:
        payload = {"stage": stage, "version": version, "config": config, "upstream": sorted(upstream)}
        if self.key_extra and stage not in NETWORK_FREE_STAGES:
            payload["device"] = self.key_extra
        return stable_hash(payload)

    def get_or_build(
        self,
        stage: str,
        version: str,
        config: object,
        upstream: list[Artifact],
        build: Callable[[Path], dict],
    ) -> Artifact:
        """Return the stored artifact for this input, building it with `build(tmp_dir) -> meta` if needed."""
        key = self.key(stage, version, config, [a.key for a in upstream])
        final = self.root / stage / key
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        with FileLock(str(lock_dir / f"{stage}-{key}.lock")):
            found = self._load(stage, key, final)
            if found is not None:
                self.events.append({"stage": stage, "key": key, "cached": True, "seconds": 0.0})
                return found
            if self.read_only:
                raise UserError(f"the cache {self.root} has no {stage} entry {key[:12]} for this run; "
                                "rerun it with `ldbench run` (same suite and --cache-dir)")
            if self.before_first_build is not None:
                self.before_first_build()
                self.before_first_build = None
            # Leftovers of a build of this key killed mid-way (we hold its lock, so none is running).
            for stale in (self.root / stage).glob(f".tmp-{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = self.root / stage / f".tmp-{key}-{os.getpid()}"
            tmp.mkdir(parents=True)
            reset_peak_memory(self.device)
            start = time.perf_counter()
            try:
                with running_on(self.device):  # classifiers, oracles, LPIPS: ldbench.device.current()
                    meta = build(tmp)
                files = {
                    str(p.relative_to(tmp)): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()
                }
                manifest = {"stage": stage, "version": version, "key": key, "config": json.loads(canonical_json(config)),
                            "upstream": {a.stage: a.key for a in upstream}, "meta": meta, "files": files}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
                meta = json.loads((tmp / MANIFEST).read_text())["meta"]  # as a later cache hit returns it
                if final.exists():  # a corrupt entry found by _load: replace it
                    shutil.rmtree(final)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            seconds = time.perf_counter() - start
            self.events.append({"stage": stage, "key": key, "cached": False, "seconds": round(seconds, 3),
                                **peak_memory(self.device)})
            return Artifact(stage, key, final, meta, cached=False)

    def _load(self, stage: str, key: str, final: Path) -> Artifact | None:
        manifest_path = final / MANIFEST
        if not manifest_path.exists():
            if final.exists():
                shutil.rmtree(final)  # no manifest: never completed
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            meta = manifest["meta"]
            intact = manifest["key"] == key and all(
                (final / name).is_file() and sha256_file(final / name) == digest
                for name, digest in manifest["files"].items()
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            intact = False
        if not intact:
            from ldbench.progress import console, escape

            console.print(f"[yellow]cache entry {escape(str(final))} is corrupt; rebuilding it[/yellow]")
            return None
        return Artifact(stage, key, final, meta, cached=True)
