"""Where ldbench keeps its cache: --cache-dir, else $LDBENCH_CACHE_DIR, else the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_STATS_DIR = REPO_ROOT / "reference_stats"
SUITES_DIR = REPO_ROOT / "benchmarks" / "suites"
VALIDATION_DIR = REPO_ROOT / "benchmarks" / "extractor-validation"  # `ldbench extractors validate` results


def resolve_cache_dir(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("LDBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("ldbench"))
