"""Which realism numbers rest on an extractor that passed the disturbance test on their dataset.

`ldbench extractors validate` results are kept in benchmarks/extractor-validation/EXTRACTOR/DATASET/
validation.json. A run marks every realism record with the verdict of the result made with the same
extractor (name and weights fingerprint) on the same dataset: `details.extractor_validation` is
"passed", "failed" or "not validated"; tables flag a failed one, and the report lists the verdicts.
"""

from __future__ import annotations

import json

from ldbench.metrics.scores import metric_info
from ldbench.paths import VALIDATION_DIR


def shipped_validations() -> dict[tuple[str, str], dict]:
    """(dataset, extractor fingerprint) -> {passed, floor, path} of every kept validation result."""
    out = {}
    for path in sorted(VALIDATION_DIR.glob("*/*/validation.json")):
        if path.parent.parent.name == "before":
            continue  # superseded weights, kept for the record
        try:
            result = json.loads(path.read_text())
            key = (str(result["dataset"]), str(result["extractor"]["fingerprint"]))
            out[key] = {"passed": bool(result["passed"]), "floor": result.get("floor"), "n": result.get("n"),
                        "extractor": result["extractor"]["name"], "dataset": key[0],
                        "path": str(path.relative_to(VALIDATION_DIR.parent.parent))}
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def mark_validation(records: list[dict], fingerprints: dict[str, str]) -> None:
    """Set details.extractor_validation (and the result's path) on every realism record; `fingerprints`:
    extractor name -> weights SHA-256."""
    known = shipped_validations()
    for r in records:
        info = metric_info(r["metric"])
        if info is None or info.group != "realism" or r["extractor"] not in fingerprints:
            continue
        found = known.get((r["dataset"], fingerprints[r["extractor"]]))
        details = r.setdefault("details", {})
        details["extractor_validation"] = "not validated" if found is None else (
            "passed" if found["passed"] else "failed")
        details["extractor_validation_source"] = "" if found is None else found["path"]


def validation_rows(records: list[dict]) -> list[dict]:
    """One row per (dataset, extractor) of the marked records: the report's verdict table."""
    rows = {}
    for r in records:
        verdict = r.get("details", {}).get("extractor_validation")
        if verdict:
            rows[(r["dataset"], r["extractor"])] = {"dataset": r["dataset"], "extractor": r["extractor"],
                                                    "verdict": verdict,
                                                    "source": r["details"].get("extractor_validation_source", "")}
    return [rows[k] for k in sorted(rows)]
