"""Regression checks of a run's results against a committed baseline (for CI benches).

A metric regresses when it moves in its bad direction (from the metric's `higher_is_better`) by more
than its tolerance: max(abs, rel · |baseline|). Tolerances are stated per metric in the baseline file,
because CPU arithmetic differs slightly across machines while runs on one machine are bit-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ldbench.errors import UserError
from ldbench.fsutil import atomic_write_text
from ldbench.hashing import canonical_json
from ldbench.metrics.scores import metric_info

SCHEMA = "ldbench.baseline/1"
DEFAULT_TOLERANCES = {
    "fid": {"abs": 0.5, "rel": 0.05}, "kid": {"abs": 0.002, "rel": 0.10},
    "fd": {"abs": 0.02, "rel": 0.10}, "kd": {"abs": 0.002, "rel": 0.25},
}
KEY_FIELDS = ("dataset", "method", "drift", "seed", "editor", "metric")


@dataclass(frozen=True)
class Finding:
    key: str
    metric: str
    baseline: float | None
    value: float | None
    tolerance: float
    verdict: str  # "regressed", "improved", "ok", "missing", "new"


def record_key(r: dict) -> str:
    return canonical_json({k: r[k] for k in KEY_FIELDS})


def load_results(directory: Path) -> list[dict]:
    path = Path(directory) / "results.json"
    try:
        return json.loads(path.read_text())["records"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not a readable ldbench results file ({exc})") from None


def load_baseline(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read baseline ({exc}); create one with `ldbench check DIR --baseline {path} --update`") from None
    if data.get("schema") != SCHEMA:
        raise UserError(f"{path}: not an ldbench baseline (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    return data


def compare(records: list[dict], baseline: dict) -> list[Finding]:
    tolerances = {**DEFAULT_TOLERANCES, **baseline.get("tolerances", {})}
    current = {record_key(r): r for r in records}
    findings = []
    for entry in baseline["entries"]:
        key, metric = record_key(entry), entry["metric"]
        tol_spec = tolerances.get(metric, {"abs": 0.0, "rel": 0.0})
        tolerance = max(tol_spec.get("abs", 0.0), tol_spec.get("rel", 0.0) * abs(entry["value"]))
        r = current.pop(key, None)
        if r is None:
            findings.append(Finding(key, metric, entry["value"], None, tolerance, "missing"))
            continue
        higher_better = metric_info(metric).higher_is_better if metric_info(metric) else False
        worse_by = (entry["value"] - r["value"]) if higher_better else (r["value"] - entry["value"])
        verdict = "regressed" if worse_by > tolerance else ("improved" if -worse_by > tolerance else "ok")
        findings.append(Finding(key, metric, entry["value"], r["value"], tolerance, verdict))
    for key, r in current.items():
        findings.append(Finding(key, r["metric"], None, r["value"], 0.0, "new"))
    return findings


def write_baseline(records: list[dict], path: Path, previous: dict | None = None) -> None:
    entries = [{**{k: r[k] for k in KEY_FIELDS}, "value": r["value"]} for r in records]
    tolerances = (previous or {}).get("tolerances", DEFAULT_TOLERANCES)
    suites = sorted({r["provenance"]["suite"] for r in records if "provenance" in r})
    data = {"schema": SCHEMA, "suites": suites, "tolerances": tolerances, "entries": entries}
    atomic_write_text(Path(path), json.dumps(data, indent=1, sort_keys=True) + "\n")
