"""Are two runs' numbers identical? Exact comparison of two results.json files, record by record.

    python benchmarks/compare_runs.py RUN_A RUN_B [--new-records-ok]   # each a run's --out or results.json

Every record is keyed as `ldbench check` keys it (dataset, method, drift, seed, editor, extractor, metric);
its value, 95% CI and n must be equal bit for bit, and so must every LD effect (estimate, CI, p-values).
Provenance is not compared (it names the code, dates and cache keys). Exit 0 when identical, 1 otherwise.
Used to show that a change to the code moves no number (`ldbench check` compares within tolerances).

--new-records-ok: B may add records and LD effects (a version that measures more); every record and effect
of A must still be in B, equal bit for bit. An effect's Holm / BH-adjusted p-value depends on how many
effects the run tests, so when B tests more, effects are compared on their estimate, CI, raw p-value,
test and n, and the adjusted p-values are not compared.
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


FAMILY_FIELDS = ("p_adjusted", "family_size", "significant")  # depend on how many effects the run tests
EFFECT_KEY = ("dataset", "method", "editor", "seed", "drift", "metric", "extractor")


def _effect_key(e: dict) -> str:
    return json.dumps([e.get(k) for k in EFFECT_KEY], sort_keys=True)


def differences(a: dict, b: dict, new_ok: bool = False) -> tuple[list[str], list[str]]:
    """(differences, what only B has when new_ok)."""
    out, new = [], []
    ra = {record_key(r): r for r in a["records"]}
    rb = {record_key(r): r for r in b["records"]}
    for key in sorted(set(ra) | set(rb)):
        if key not in ra or key not in rb:
            (new if new_ok and key not in ra else out).append(f"only in {'B' if key not in ra else 'A'}: {key}")
            continue
        for field in RECORD_FIELDS:
            if ra[key].get(field) != rb[key].get(field):
                out.append(f"{key}: {field} {ra[key].get(field)!r} != {rb[key].get(field)!r}")
    ea = {_effect_key(e): e for e in a.get("ld_effects", [])}
    eb = {_effect_key(e): e for e in b.get("ld_effects", [])}
    family_grew = new_ok and len(eb) > len(ea)
    for key in sorted(set(ea) | set(eb)):
        if key not in ea or key not in eb:
            (new if new_ok and key not in ea else out).append(f"LD effect only in {'B' if key not in ea else 'A'}: {key}")
            continue
        skip = FAMILY_FIELDS if family_grew else ()
        fields = sorted((set(ea[key]) | set(eb[key])) - set(skip))
        changed = [f for f in fields if ea[key].get(f) != eb[key].get(f)]
        if changed:
            out.append(f"LD effect {key}: {', '.join(changed)} differ")
    return out, new


def main(argv: list[str]) -> int:
    new_ok = "--new-records-ok" in argv
    paths = [a for a in argv if a != "--new-records-ok"]
    if len(paths) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    a, b = (_load(p) for p in paths)
    diff, new = differences(a, b, new_ok)
    for line in diff[:50]:
        print(line)
    if new:
        print(f"B adds {len(new)} records / LD effects A does not have, e.g. {new[0]}")
    common = len(a["records"]) - sum(line.startswith("only in A") for line in diff)
    print(f"{len(a['records'])} / {len(b['records'])} records, {len(a.get('ld_effects', []))} / "
          f"{len(b.get('ld_effects', []))} LD effects: "
          + (f"identical ({common} records in both)" if not diff else f"{len(diff)} differences"))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
