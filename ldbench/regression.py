"""Regression checks of a run's results against a committed baseline (for CI benches).

A metric has *changed* when it moves by more than its tolerance, max(abs, rel · |baseline|), in either
direction: "regressed" in its bad direction (from the metric's `higher_is_better`), "improved" in its
good one. Both fail the check (exit 1), as do records missing from the run and records the baseline does
not have ("new"): a baseline that no longer describes the code is news to refresh deliberately with
`ldbench check DIR --baseline FILE --update`. Tolerances are stated per metric in the baseline file,
because CPU arithmetic differs slightly across machines while runs on one machine are bit-identical.

A record is keyed by dataset, method, drift, seed, editor, extractor and metric: realism is reported on
several extractors at once, and the real held-out floor has its own records (method `real`, editor
`held-out`), checked like any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ldbench.errors import UserError
from ldbench.fsutil import atomic_write_text
from ldbench.hashing import canonical_json
from ldbench.metrics.scores import metric_info

SCHEMA = "ldbench.baseline/1"
# A metric's tolerance: its own entry ("effectiveness_auc:diagnosis"), else its family's (the name before
# ':'), else "*". Runs on one machine are bit-identical; across CPUs the arithmetic differs in the last
# bits. Through sampling chains and Fréchet distances that moved every deterministic metric of the smoke
# suite by at most 7e-5 relative across three machines (KID the most; the metrics under "*" 3e-5, and "*"
# allows 1e-3). Classifiers trained in the run (oracles, the AUC protocol) amplify those bits into another
# training trajectory: their readings move like another training seed's, and that is what their tolerances
# allow (on a third machine the smoke suite's age error of the text-to-image samples read 20.6 against 18.7
# years, within its 40%). Measured on the smoke suite's
# generations with two 5-member oracle ensembles of disjoint seeds: the diagnosis AUC 0.906 / 0.857 (SDEdit)
# and 0.831 / 0.831 (text-to-image), the age error 12.9 / 10.5 and 18.7 / 12.5 years. The counterfactual
# suite's AUC protocol on two machines: AUC synthetic moved by up to 0.032, AUC real by 0.004.
DEFAULT_TOLERANCES = {
    "fid": {"abs": 0.5, "rel": 0.05}, "kid": {"abs": 0.002, "rel": 0.10},
    "fd": {"abs": 0.02, "rel": 0.10}, "kd": {"abs": 0.002, "rel": 0.25},
    "effectiveness_auc": {"abs": 0.08}, "effectiveness_acc": {"abs": 0.08}, "effectiveness_mae": {"rel": 0.4},
    "auc_real": {"abs": 0.05}, "auc_synthetic": {"abs": 0.08}, "auc_mixed": {"abs": 0.08},
    "*": {"abs": 1e-9, "rel": 1e-3},
}
KEY_FIELDS = ("dataset", "method", "drift", "seed", "editor", "extractor", "metric")
FAILING = ("regressed", "improved", "missing", "new")  # verdicts that make `ldbench check` exit 1


@dataclass(frozen=True)
class Finding:
    key: str
    metric: str
    baseline: float | None
    value: float | None
    tolerance: float
    verdict: str  # "regressed", "improved" (both: changed beyond tolerance), "ok", "missing", "new"


def record_key(r: dict) -> str:
    return canonical_json({k: r[k] for k in KEY_FIELDS})


def _check_entries(entries, src: str, what: str, fix: str) -> list[dict]:
    """Each entry a mapping with every key field and a finite numeric value; no key twice."""
    if not isinstance(entries, list):
        raise UserError(f"{src}: {what} must be a list of records; {fix}")
    seen: set[str] = set()
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or any(k not in e for k in KEY_FIELDS):
            missing = [k for k in KEY_FIELDS if not isinstance(e, dict) or k not in e]
            raise UserError(f"{src}: {what}[{i}] lacks {', '.join(missing)}; {fix}")
        value = e.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(f"{src}: {what}[{i}] ({e['metric']} of {e['method']} · {e['editor']}) has value "
                            f"{value!r}, not a finite number; {fix}")
        try:
            key = record_key(e)
        except (TypeError, ValueError):
            raise UserError(f"{src}: {what}[{i}] has key fields that are not plain JSON values; {fix}") from None
        if key in seen:
            raise UserError(f"{src}: {what}[{i}] repeats the key of an earlier one ({e['metric']}, {e['method']}, "
                            f"{e['editor']}, {e['extractor']}, seed {e['seed']}); {fix}")
        seen.add(key)
    return entries


def load_results(directory: Path) -> list[dict]:
    path = Path(directory) / "results.json"
    fix = "rerun `ldbench run` to write it again"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable ldbench results file ({exc})") from None
    if not isinstance(data, dict) or "records" not in data:
        raise UserError(f"{path}: not an ldbench results file (no records); {fix}")
    return _check_entries(data["records"], str(path), "records", fix)


def _check_tolerances(tolerances, path: Path) -> dict:
    example = 'e.g. "tolerances": {"fd": {"abs": 0.02, "rel": 0.1}}'
    if not isinstance(tolerances, dict):
        raise UserError(f"{path}: 'tolerances' must map metric names to {{abs, rel}}, got {tolerances!r}; {example}")
    for metric, spec in tolerances.items():
        if not isinstance(spec, dict) or set(spec) - {"abs", "rel"}:
            raise UserError(f"{path}: tolerances.{metric} must be a mapping with abs and/or rel; {example}")
        for k, x in spec.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
                raise UserError(f"{path}: tolerances.{metric}.{k} must be a finite number >= 0, got {x!r}")
    return tolerances


def load_baseline(path: Path) -> dict:
    fix = f"create one with `ldbench check DIR --baseline {path} --update`"
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read baseline ({exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        schema = data.get("schema") if isinstance(data, dict) else None
        raise UserError(f"{path}: not an ldbench baseline (schema {schema!r}, expected {SCHEMA!r}); {fix}")
    if "entries" not in data:
        raise UserError(f"{path}: the baseline has no entries; {fix}")
    _check_entries(data["entries"], str(path), "entries", fix)
    _check_tolerances(data.get("tolerances", {}), Path(path))
    return data


def tolerance_of(metric: str, value: float, tolerances: dict) -> float:
    """max(abs, rel · |value|) of the metric's own tolerance, else its family's, else "*" (0 without any)."""
    spec = next((tolerances[name] for name in (metric, metric.split(":", 1)[0], "*") if name in tolerances), {})
    return max(spec.get("abs", 0.0), spec.get("rel", 0.0) * abs(value))


def compare(records: list[dict], baseline: dict) -> list[Finding]:
    tolerances = {**DEFAULT_TOLERANCES, **baseline.get("tolerances", {})}
    current = {record_key(r): r for r in records}
    findings = []
    for entry in baseline["entries"]:
        key, metric = record_key(entry), entry["metric"]
        tolerance = tolerance_of(metric, entry["value"], tolerances)
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
    suites = sorted({r["provenance"]["suite"] for r in records
                     if isinstance(r.get("provenance"), dict) and "suite" in r["provenance"]})
    data = {"schema": SCHEMA, "suites": suites, "tolerances": tolerances, "entries": entries}
    atomic_write_text(Path(path), json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
