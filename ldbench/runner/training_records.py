"""What each fine-tune itself says, once per fine-tune (cells that share one share these records):
how far its generated latents still move late in training (ldbench.metrics.latent_stability).

The records have the fine-tune's own (training) drift and editor `fine-tune`; their LD effect compares an
LD-trained fine-tune with the no-LD one of the same dataset, method and seed, sample by sample (both are
probed with the same noise), in the run's one family of LD effects.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ldbench.runner.effects import CellEvidence
from ldbench.store import Artifact

TRAINING_EDITOR = "fine-tune"  # the editor column of a fine-tune's own records
PROBE_FILE = "latent_probe.npz"


def load_probe(ft: Artifact) -> dict[str, np.ndarray] | None:
    """The probe's arrays of a fine-tune (steps, channel_mean, channel_mean_square), or None (a checkpoint
    trained elsewhere, or a method whose training was not probed)."""
    path = ft.file(PROBE_FILE)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def training_records(suite, generated: list[dict], run_env: tuple) -> tuple[list[dict], list[CellEvidence]]:
    """Records and LD-effect evidence of every distinct probed fine-tune of the run's cells (`generated`:
    per cell {cell, dataset, finetune, ...}); `run_env` = (environment, torch threads)."""
    from ldbench.metrics.latent_stability import latent_instability
    from ldbench.metrics.significance import mean_with_ci

    records, evidence, seen = [], [], set()
    for g in generated:
        ft, cell = g.get("finetune"), g["cell"]
        probe = None if ft is None or ft.key in seen else load_probe(ft)
        if probe is None:
            continue
        seen.add(ft.key)
        values = latent_instability(probe["channel_mean"], probe["steps"])
        value, ci = mean_with_ci(values, suite.evaluation.bootstrap, cell.seed)
        drift = cell.drift.for_training()
        record = {
            "dataset": g["dataset"].name, "method": cell.method.name, "drift": drift.to_dict(), "seed": cell.seed,
            "editor": TRAINING_EDITOR, "metric": "latent_instability", "value": value,
            "ci95": list(ci) if ci else None, "n": len(values), "extractor": "latents",
            "details": {"checkpoint_steps": probe["steps"].tolist(), "probe": ft.meta.get("latent_probe"),
                        "bootstrap": {"B": suite.evaluation.bootstrap, "seed": cell.seed, "resampled": "samples"}},
            "provenance": _provenance(suite, g, drift, run_env),
        }
        records.append(record)
        evidence.append(CellEvidence(
            dataset=record["dataset"], method=cell.method.name, editor=TRAINING_EDITOR, seed=cell.seed, drift=drift,
            records=[record], items={"mean__latent_instability": values}, features={},
            pairing="latent-probe"))  # every probe starts from the same noise and captions: paired
    return records, evidence


def _provenance(suite, generated: dict, drift, run_env: tuple) -> dict:
    from ldbench.runner.provenance import base_model_provenance

    (env, threads), cell, ft, base = run_env, generated["cell"], generated["finetune"], generated["base"]
    return {"suite": suite.name,
            "fine_tune": {"dataset": dataclasses.asdict(cell.dataset), "method": dataclasses.asdict(cell.method),
                          "drift": drift.to_dict(with_note=True), "seed": cell.seed},
            "resolved_config": suite.to_dict(), "seeds": {"train": cell.seed, "probe": cell.seed,
                                                          "bootstrap": cell.seed},
            "method_options": ft.meta.get("options"), "artifacts": {"finetune": ft.key, "base_model": base.key},
            "environment": env, "torch_threads": threads, **base_model_provenance(base.meta)}
