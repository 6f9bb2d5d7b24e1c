"""Latent Drifting's effect on every metric: LD minus no-LD, its 95% CI, p-value and significance.

A cell with Latent Drifting is compared with the no-LD cell of the same dataset, method, editor and seed.
Which test (ldbench.metrics.significance):
  - per-item metrics (SSIM, PSNR, L1, CLD, oracle accuracy / MAE, composition, reversibility): bootstrap of
    the mean difference, paired over the same test items when both cells edited the same sources with the
    same targets, unpaired otherwise;
  - set metrics (FD / KD, FID / KID, FD∞ / FID∞): bootstrap of the difference, the statistic recomputed on each resample
    of the generated features (paired the same way), the reference fixed;
  - AUCs on the same test labels: DeLong's paired test (its CI from the DeLong covariance).
Metrics whose per-item evidence is not kept (FRD, PRDC) are left out, never approximated.

Multiple comparisons: the family is every LD effect of one run (all datasets, methods, editors, seeds, drifts
and metrics together). Each effect keeps its raw p_value and CI and gains p_adjusted (Holm by default,
evaluation.multiple_comparisons: holm | bh | none); `significant` is p_adjusted < 0.05, so a run that tests
forty effects does not report about two of them as significant by chance alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ldbench.config import Evaluation
from ldbench.drift import Drift
from ldbench.hashing import array_hash

# The store keys the effects on their evidence, not on this code: bump when a test's math changes.
EFFECTS_VERSION = "1"


@dataclass
class CellEvidence:
    """What one cell leaves for the comparison: its records and the per-item arrays behind them."""

    dataset: str
    method: str
    editor: str
    seed: int
    drift: Drift
    records: list[dict]
    items: dict[str, np.ndarray]  # "mean__<metric>", "auc_y__<metric>", "auc_score__<metric>"
    features: dict[str, np.ndarray]  # extractor name -> generated-set features of the realism metrics
    pairing: str  # equal for two cells whose i-th outputs come from the same source and target
    stats: dict = None  # extractor name -> the reference statistics the realism metrics used


def _set_statistic(metric: str, record: dict, stats, evaluation: Evaluation, seed: int
                   ) -> Callable[[np.ndarray], float] | None:
    from ldbench.metrics.math import kernel_inception_distance

    if metric in ("fd", "fid"):
        from ldbench.metrics.extrapolation import ReferenceFD

        return ReferenceFD(stats.mu, stats.sigma)  # the reference's square root once, an n x r SVD per resample
    if metric in ("fd_inf", "fid_inf"):
        from ldbench.metrics.extrapolation import fd_inf_statistic, options_from_details

        return fd_inf_statistic(stats.mu, stats.sigma, options_from_details(record.get("details", {}), seed))
    if metric in ("kd", "kid") and stats.features is not None:
        k = int(record["details"].get("kid_subset_size", evaluation.kid_subset_size))
        subsets = int(record["details"].get("kid_subsets", evaluation.kid_subsets))

        def kd(f: np.ndarray) -> float:
            return kernel_inception_distance(f, stats.features, min(k, len(f)), subsets, seed)[0]

        return kd
    return None


def compare_cells(ld: CellEvidence, base: CellEvidence, evaluation: Evaluation) -> list[dict]:
    from ldbench.metrics.significance import delong_test, paired_bootstrap_difference

    seed, B = ld.seed, evaluation.bootstrap
    paired = ld.pairing == base.pairing
    base_records = {(r["metric"], r["extractor"]): r for r in base.records}
    out = []
    for rec in ld.records:
        metric, extractor = rec["metric"], rec["extractor"]
        other = base_records.get((metric, extractor))
        if other is None:
            continue
        result = None
        keys = [k for k in (f"auc_score__{metric}", f"mean__{metric}") if k in ld.items and k in base.items]
        if keys and all(np.array_equal(ld.items[k], base.items[k]) for k in keys) and rec["value"] == other["value"]:
            continue  # the same evidence in both cells (e.g. the AUC protocol's shared real arm): nothing to test
        if f"auc_y__{metric}" in ld.items and f"auc_y__{metric}" in base.items:
            y_a, y_b = ld.items[f"auc_y__{metric}"], base.items[f"auc_y__{metric}"]
            two_classes = min(int(y_a.sum()), int((1 - y_a).sum())) >= 2
            if paired and np.array_equal(y_a, y_b) and two_classes:
                d = delong_test(y_a, ld.items[f"auc_score__{metric}"], base.items[f"auc_score__{metric}"])
                result = {"value": d["difference"], "ci95": list(d["ci95"]), "p_value": d["p_value"],
                          "significant": bool(d["ci95"][0] > 0 or d["ci95"][1] < 0), "test": "DeLong (paired)",
                          "B": None}
        elif f"mean__{metric}" in ld.items and f"mean__{metric}" in base.items:
            a, b = ld.items[f"mean__{metric}"], base.items[f"mean__{metric}"]
            same = paired and len(a) == len(b)
            result = paired_bootstrap_difference(lambda i, a=a: float(a[i].mean()), lambda i, b=b: float(b[i].mean()),
                                                 len(a), B, seed, n_b=None if same else len(b))
        elif extractor in ld.features and extractor in base.features:
            stat = _set_statistic(metric, rec, ld.stats[extractor], evaluation, seed)
            if stat is not None:
                fa, fb = ld.features[extractor], base.features[extractor]
                same = paired and len(fa) == len(fb)
                result = paired_bootstrap_difference(lambda i, s=stat, f=fa: s(f[i]), lambda i, s=stat, f=fb: s(f[i]),
                                                     len(fa), B, seed,
                                                     n_b=None if same else len(fb))
        if result is None:
            continue
        out.append({
            "dataset": ld.dataset, "method": ld.method, "editor": ld.editor, "seed": ld.seed,
            "drift": ld.drift.to_dict(), "baseline_drift": base.drift.to_dict(), "metric": metric,
            "extractor": rec["extractor"], "ld_value": rec["value"], "no_ld_value": other["value"],
            # the difference of the reported values (what the tables show); the test gives its CI and p
            "difference": float(rec["value"] - other["value"]), "ci95": [float(x) for x in result["ci95"]],
            "p_value": float(result["p_value"]), "significant": bool(result["significant"]),
            "test": result["test"], "B": result.get("B"), "n": rec["n"],
        })
    return out


ALPHA = 0.05  # significance level of the corrected p-values


def correct_effects(effects: list[dict], method: str) -> list[dict]:
    """Adds p_adjusted (over all of `effects`, one family), correction, family_size and
    significant = p_adjusted < ALPHA to each effect, in place; returns `effects`."""
    from ldbench.metrics.significance import adjust_p_values

    adjusted = adjust_p_values([e["p_value"] for e in effects], method)
    for e, p in zip(effects, adjusted, strict=True):
        e["p_adjusted"] = float(p)
        e["correction"] = method
        e["family_size"] = len(effects)
        e["significant"] = bool(p < ALPHA)
    return effects


def ld_effects(cells: list[CellEvidence], evaluation: Evaluation) -> list[dict]:
    """Every LD cell against the no-LD cell of the same dataset, method, editor and seed; p-values corrected
    over all of them (evaluation.multiple_comparisons)."""
    baselines = {(c.dataset, c.method, c.editor, c.seed): c for c in cells if not c.drift.uses_ld}
    effects = []
    for cell in cells:
        if not cell.drift.uses_ld:
            continue
        base = baselines.get((cell.dataset, cell.method, cell.editor, cell.seed))
        if base is not None:
            effects += compare_cells(cell, base, evaluation)
    return correct_effects(effects, getattr(evaluation, "multiple_comparisons", "holm"))


def evidence_digest(cells: list[CellEvidence]) -> str:
    """SHA-256 of everything compare_cells reads: each cell's identity, pairing, records' values and
    details, per-item arrays, generated features and the reference statistics they were scored against."""
    h, stats_hashes = hashlib.sha256(), {}
    for c in cells:
        head = {"cell": [c.dataset, c.method, c.editor, c.seed, c.drift.to_dict()], "pairing": c.pairing,
                "records": [{k: r.get(k) for k in ("metric", "extractor", "value", "n", "details")}
                            for r in c.records]}
        h.update(json.dumps(head, sort_keys=True, default=str).encode())
        for group in (c.items or {}, c.features or {}):
            for name in sorted(group):
                h.update(f"{name}:{array_hash(group[name])}".encode())
        for name, s in sorted((c.stats or {}).items()):
            if id(s) not in stats_hashes:  # one reference serves many cells: hash its 2048 x 2048 sigma once
                stats_hashes[id(s)] = array_hash(*(a for a in (s.mu, s.sigma, s.features) if a is not None))
            h.update(f"{name}:{stats_hashes[id(s)]}".encode())
    return h.hexdigest()


def stored_ld_effects(store, cells: list[CellEvidence], evaluation: Evaluation) -> list[dict]:
    """ld_effects through the artifact store, keyed on the evidence's digest and the evaluation settings: a
    run whose every stage is cached reads its effects instead of repeating thousands of bootstrap resamples."""
    config = {"evidence": evidence_digest(cells), "evaluation": evaluation.scoring_key()}

    def build(tmp) -> dict:
        effects = ld_effects(cells, evaluation)
        (tmp / "effects.json").write_text(json.dumps(effects))
        return {"n_effects": len(effects)}

    art = store.get_or_build("ld-effects", EFFECTS_VERSION, config, [], build)
    return json.loads(art.file("effects.json").read_text())
