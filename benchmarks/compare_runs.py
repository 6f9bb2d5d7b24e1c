"""Are two runs' numbers identical? Exact comparison of two results.json files, record by record.

    python benchmarks/compare_runs.py RUN_A RUN_B      # each a run's --out directory or its results.json

Every record is keyed as `ldbench check` keys it (dataset, method, drift, seed, editor, extractor, metric);
its value, 95% CI and n must be equal bit for bit, and so must every LD effect (estimate, CI, p-values).
Provenance is not compared (it names the code, dates and cache keys). Exit 0 when identical, 1 otherwise.
Used to show that a change to the code moves no number (`ldbench check` compares within tolerances).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ldbench.regression import record_key

RECORD_FIELDS = ("value", "ci95", "n")


def _load(path: str) -> dict:
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        print(f"compare_runs: {p}: not a readable results.json ({type(exc).__name__}); give a run's --out "
              "directory", file=sys.stderr)
        raise SystemExit(2) from None


def differences(a: dict, b: dict) -> list[str]:
    out = []
    ra = {record_key(r): r for r in a["records"]}
    rb = {record_key(r): r for r in b["records"]}
    for key in sorted(set(ra) | set(rb)):
        if key not in ra or key not in rb:
            out.append(f"only in {'B' if key not in ra else 'A'}: {key}")
            continue
        for field in RECORD_FIELDS:
            if ra[key].get(field) != rb[key].get(field):
                out.append(f"{key}: {field} {ra[key].get(field)!r} != {rb[key].get(field)!r}")
    ea = sorted(json.dumps(e, sort_keys=True) for e in a.get("ld_effects", []))
    eb = sorted(json.dumps(e, sort_keys=True) for e in b.get("ld_effects", []))
    if ea != eb:
        out.append(f"LD effects differ: {len(set(ea) ^ set(eb))} of {len(ea)} / {len(eb)}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = (_load(p) for p in argv)
    diff = differences(a, b)
    for line in diff[:50]:
        print(line)
    print(f"{len(a['records'])} / {len(b['records'])} records, {len(a.get('ld_effects', []))} LD effects: "
          + ("identical" if not diff else f"{len(diff)} differences"))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
