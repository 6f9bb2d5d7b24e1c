"""Counterfactual evaluation stages: is an edit right, and is it useful?

    dataset ─▶ oracle (per attribute) ──────────────┐
    generate (test) ───────────────────────────────▶ counterfactual-metrics
    generate (train) ─▶ utility (AUC protocol) ◀── classifier (real arm, shared by every cell)

counterfactual-metrics: identity (SSIM/PSNR/L1 against the source, CLD), ground truth (SSIM/PSNR/L1/LPIPS
against the true counterfactual, and L1 toward it: L1 to the source minus L1 to the truth, per edit),
effectiveness (oracles read the intended attribute back), and the
axioms of Monteiro et al. 2023 as benchmarked by Melistas et al. 2024 (composition: null edits;
reversibility: there and back). utility: the paper's AUC protocol. Every number has a bootstrap 95% CI,
and each artifact keeps its per-item values (items.npz) for the LD-versus-no-LD tests in effects.py.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench.config import Evaluation, build_options
from ldbench.data.attributes import attribute_task, encode_targets, predictable_attributes
from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.models import Components
from ldbench.runner import stages
from ldbench.store import Artifact

STAGE_VERSIONS = {"oracle": "3", "counterfactual-metrics": "4", "classifier": "3", "utility": "3"}


def classifier_options(evaluation: Evaluation):
    from ldbench.classify import ClassifierOptions

    return build_options(ClassifierOptions, evaluation.classifier, "evaluation.classifier")


# --- oracles ----------------------------------------------------------------------------------------


def build_oracle(rt, node, up: dict) -> Artifact:
    """An oracle for one attribute: `evaluation.oracle_members` timm classifiers (binary) or regressors
    trained on the real train split (best epoch on val), each from its own seed (ldbench.classify.oracle),
    scored on the real test split so their accuracy is on record."""
    ctx, data_art, evaluation = rt.ctx, up["dataset"], rt.evaluation
    attribute, seed = node["attribute"], node["seed"]

    options = classifier_options(evaluation)
    config = {"attribute": attribute, "classifier": dataclasses.asdict(options), "seed": seed,
              "members": evaluation.oracle_members, "bootstrap": evaluation.bootstrap}

    def build(tmp: Path) -> dict:
        # imported to build only: it imports scikit-learn (about 1.9 s), which a cached oracle does not need
        from ldbench.classify.oracle import Oracle, read, train_oracle

        table = stages.load_table(data_art)
        if attribute not in table.attributes:
            raise UserError(f"oracle: the dataset has no attribute {attribute!r}; it has "
                            f"{', '.join(sorted(table.attributes))}")
        task, positive = attribute_task(table.attributes[attribute]) or (None, None)
        if task is None:
            raise UserError(f"oracle: attribute {attribute!r} is neither binary nor continuous")
        split = {s: table.split(s) for s in ("train", "val", "test")}
        y = {s: encode_targets(t.attributes[attribute], task, positive) for s, t in split.items()}
        # best epoch on val when val can score it (a binary val split needs both classes)
        usable = len(split["val"]) >= 2 and (task == "regression" or len(np.unique(y["val"])) == 2)
        val = (split["val"].images, y["val"]) if usable else None
        oracle = train_oracle((split["train"].images, y["train"]), task, options, seed, evaluation.oracle_members,
                              val=val, quiet=ctx.quiet)
        oracle.save(tmp)
        reading = read(oracle.predict(split["test"].images), y["test"], task, evaluation.bootstrap, seed)[0]
        held_out = {"metric": reading.metric, "value": reading.value,
                    "ci95": list(reading.ci95) if reading.ci95 else None, "members": reading.member_values}
        if task == "regression":
            held_out["mae_of_predicting_train_mean"] = float(np.mean(np.abs(y["test"] - y["train"].mean())))
        Oracle.load(tmp, evaluation.oracle_members)  # fail here, not later, if it does not round-trip
        return {"attribute": attribute, "task": task, "positive": positive, "model": options.model,
                "members": evaluation.oracle_members, "n_train": len(split["train"]), "n_test": len(split["test"]),
                "held_out_real_test": held_out}

    return ctx.store.get_or_build("oracle", STAGE_VERSIONS["oracle"], config, [data_art], build)


# --- counterfactual metrics ------------------------------------------------------------------------


def _record(metric: str, value: float, ci, n: int, extractor: str, **details) -> dict:
    return {"metric": metric, "value": float(value), "ci95": list(ci) if ci else None, "n": int(n),
            "extractor": extractor, **details}


def effectiveness_attributes(plan: dict, table: ImageTable) -> list[str]:
    """The attributes an edit sets; for text-to-image (no edit) every predictable attribute, since the
    prompt sets them all."""
    available = predictable_attributes(table)
    wanted = plan["changes"] or list(available)
    return [a for a in wanted if a in available]


def build_counterfactual_metrics(rt, node, up: dict) -> Artifact:
    """Every counterfactual metric of one generated test set. The cell's model is loaded only when the
    axioms need new edits (a cache hit never loads it)."""
    evaluation = rt.evaluation
    oracles = {role.split(":", 1)[1]: art for role, art in up.items() if role.startswith("oracle:")}
    config = {"evaluation": {k: getattr(evaluation, k) for k in (
                  "counterfactual", "effectiveness", "axiom_items", "null_edits", "bootstrap", "lpips_backbone",
                  "lpips_linear")},
              "editor": dataclasses.asdict(node["editor"]), "drift": node["drift"].to_dict(),
              "seed": node["seed"],
              # the LPIPS weights by content, so replacing a file at the same path recomputes
              "lpips_sha256": [sha256_file(Path(p)) if Path(p).is_file() else None
                               for p in (evaluation.lpips_backbone, evaluation.lpips_linear) if p]}

    def build(tmp: Path) -> dict:
        records, items, notes = compute_counterfactual_metrics(rt, node, up, oracles)
        (tmp / "metrics.json").write_text(json.dumps(records, indent=1, allow_nan=False))
        np.savez(tmp / "items.npz", **items)
        return {"n_metrics": len(records), "notes": notes}

    upstream = [up["dataset"], up["generate"], up["latents"]] + [oracles[a] for a in sorted(oracles)]
    return rt.ctx.store.get_or_build("counterfactual-metrics", STAGE_VERSIONS["counterfactual-metrics"], config,
                                     upstream, build)


@dataclass(frozen=True)
class EditContext:
    """How a cell edits images (for the axioms' extra edits): its editor and options, dataset, loaded model,
    sampling drift and seed."""

    editor: object
    options: object
    dataset: Dataset
    parts: Components
    drift: Drift
    seed: int
    quiet: bool = False


def compute_counterfactual_metrics(rt, node, up: dict, oracles: dict
                                   ) -> tuple[list[dict], dict[str, np.ndarray], list[str]]:
    from ldbench.device import current as current_device
    from ldbench.metrics.counterfactual_scores import image_similarity, lpips_from_config
    from ldbench.metrics.significance import mean_with_ci

    gen, data_art, test_latents, editor_spec = up["generate"], up["dataset"], up["latents"], node["editor"]
    evaluation, seed = rt.evaluation, node["seed"]
    generated = stages.load_generated(gen)
    plan = stages.load_plan(gen)
    test = stages.load_table(data_art).split("test")
    images, source_index = generated["images"], generated["source_index"]
    has_source = bool((source_index >= 0).all())
    truth = stages.truth_images(data_art, gen)
    B = evaluation.bootstrap
    records: list[dict] = []
    items: dict[str, np.ndarray] = {}
    notes: list[str] = []

    def add_mean(metric: str, values: np.ndarray, extractor: str, **details) -> None:
        value, ci = mean_with_ci(values, B, seed)
        records.append(_record(metric, value, ci, len(values), extractor,
                               bootstrap={"B": B, "seed": seed, "resampled": "items"}, **details))
        items[f"mean__{metric}"] = np.asarray(values, dtype=np.float64)

    if evaluation.counterfactual:
        if has_source:
            sources = test.images[source_index]
            for name, values in image_similarity(images, sources).items():
                add_mean(f"source_{name}", values, "pixels")
            records.extend(_cld_records(gen, test, plan, test_latents, evaluation, seed, items))
        else:
            notes.append(f"{editor_spec.name} has no source image: identity metrics and axioms do not apply")
        if truth is not None:
            for name, values in image_similarity(images, truth).items():
                add_mean(f"truth_{name}", values, "pixels", truth=plan["truth_table"])
            if has_source:  # > 0: the edit lies closer to the true counterfactual than to the image it edited
                add_mean("toward_truth_l1", items["mean__source_l1"] - items["mean__truth_l1"], "pixels",
                         truth=plan["truth_table"])
            lpips, note = lpips_from_config(evaluation.lpips_backbone or None, evaluation.lpips_linear or None,
                                            device=current_device())
            if lpips is None:
                notes.append(note)
            else:
                add_mean("truth_lpips", lpips(images, truth), "lpips", truth=plan["truth_table"])
        else:
            notes.append(f"{editor_spec.name}: no true counterfactual for these outputs; ground-truth metrics skipped")
        if has_source and evaluation.axiom_items > 0:
            from ldbench.generate import EDITORS

            parts = stages.load_editing_parts(rt.ctx, up, node.up("finetune")["method"].name, editor_spec.name)
            edits = EditContext(EDITORS.get(editor_spec.name), stages.editor_options(editor_spec),
                                rt.dataset(node.up("dataset")["dataset"]), parts, node["drift"], seed, rt.ctx.quiet)
            for metric, values in axiom_metrics(edits, test, generated, plan, evaluation).items():
                add_mean(metric, values, "pixels", items_used=len(values))
    if evaluation.effectiveness:
        records.extend(_effectiveness_records(images, plan, test, oracles, (B, seed), (items, notes)))
    return records, items, notes


def axiom_metrics(edits: EditContext, test: ImageTable, generated: dict, plan: dict, evaluation: Evaluation
                  ) -> dict[str, np.ndarray]:
    """Composition (L1 to the source after 1 and after `null_edits` null edits: the target is the source's
    own attributes) and reversibility (L1 to the source after editing to the target and back), on the
    first `axiom_items` outputs. An ideal editor scores 0 on both."""
    from ldbench.generate import EditRequest, EditSettings, run_edits
    from ldbench.metrics.counterfactual_scores import null_edit_drift, reversibility

    n = min(evaluation.axiom_items, len(generated["images"]))
    idx = generated["source_index"][:n]
    source_rows = [test.row(int(i)) for i in idx]
    target_rows = plan["target_rows"][:n]
    x = test.images[idx]

    def edit(images, sources, targets, seed: int, desc: str) -> np.ndarray:
        return run_edits(edits.editor, edits.parts, edits.dataset, EditRequest(images, sources, targets),
                         EditSettings(edits.drift, edits.options, seed), quiet=edits.quiet, desc=desc)[0]

    chain, current = [], x
    for k in range(1, evaluation.null_edits + 1):
        current = edit(current, source_rows, source_rows, edits.seed + k, f"null edit {k}/{evaluation.null_edits}")
        chain.append(current)
    back = edit(generated["images"][:n], target_rows, source_rows, edits.seed + evaluation.null_edits + 1, "edit back")
    out = {f"composition_l1:{k}": v for k, v in null_edit_drift(x, chain).items() if k in (1, evaluation.null_edits)}
    out["reversibility_l1"] = reversibility(x, back)
    return out


def _cld_records(gen: Artifact, test: ImageTable, plan: dict, test_latents: Artifact, evaluation: Evaluation,
                 seed: int, items: dict) -> list[dict]:
    """CLD in the autoencoder's latent space (frozen in every method, so the same for every cell): the
    sources, the outputs and the test split as reference, grouped by the one discrete attribute edited."""
    from ldbench.metrics.counterfactual_scores import counterfactual_latent_divergence
    from ldbench.metrics.significance import mean_with_ci

    changes = plan["changes"]
    task = attribute_task(test.attributes[changes[0]]) if len(changes) == 1 else None
    if task is None or task[0] != "binary":
        return []  # CLD groups by a discrete attribute; an age edit has none
    attr = changes[0]
    generated = stages.load_generated(gen)
    with np.load(test_latents.file("latents.npz"), allow_pickle=False) as z:
        flat = z["latents"].reshape(len(z["latents"]), -1).astype(np.float64)
    idx = generated["source_index"]
    reference_attr = np.asarray(test.attributes[attr])
    result = counterfactual_latent_divergence(
        flat[idx], generated["latents"].reshape(len(idx), -1).astype(np.float64), flat, reference_attr[idx],
        np.asarray([r[attr] for r in plan["target_rows"]]), reference_attr)
    values = np.asarray(result["cld"], dtype=np.float64)[np.asarray(result["valid"], dtype=bool)]
    value, ci = mean_with_ci(values, evaluation.bootstrap, seed)
    items["mean__cld"] = values
    return [_record("cld", value, ci, len(values), "vae-latents", attribute=attr, items_skipped=int(result["n_skipped"]),
                    reference="the test split's latents, grouped by the edited attribute",
                    bootstrap={"B": evaluation.bootstrap, "seed": seed, "resampled": "items"})]


def _effectiveness_records(images, plan, test, oracles, bootstrap: tuple[int, int], evidence: tuple[dict, list]
                           ) -> list[dict]:
    """The oracles' reading of the intended attributes off `images`; `bootstrap` = (B, seed), `evidence` =
    (per-item arrays, notes) that this adds to. Each record's CI resamples the oracle's members and the
    images (ldbench.metrics.ensemble); the per-item arrays for the LD-effect tests are the ensemble's."""
    from ldbench.classify.oracle import Oracle, read

    (B, seed), (items, notes) = bootstrap, evidence
    records = []
    for attr in effectiveness_attributes(plan, test):
        if attr not in oracles:
            continue
        art = oracles[attr]
        task, positive = art.meta["task"], art.meta["positive"]
        target = encode_targets([r[attr] for r in plan["target_rows"]], task, positive)
        predictions = Oracle.load(art.path, art.meta["members"]).predict(images)
        if task == "binary" and len(np.unique(target)) < 2:
            notes.append(f"effectiveness AUC for {attr}: every output has the same target; accuracy only")
        for r in read(predictions, target, task, B, seed):
            metric = f"effectiveness_{r.metric}:{attr}"
            records.append(_record(metric, r.value, r.ci95, len(target), "oracle", attribute=attr,
                                   oracle=art.meta["model"], oracle_members=art.meta["members"],
                                   member_values=r.member_values,
                                   oracle_held_out_real_test=art.meta["held_out_real_test"], oracle_artifact=art.key,
                                   bootstrap={"B": B, "seed": seed, "resampled": "oracle members and items"}))
            if r.metric == "auc":
                items[f"auc_y__{metric}"] = target
                items[f"auc_score__{metric}"] = r.per_item
            else:
                items[f"mean__{metric}"] = r.per_item
    return records


def collect_items(rt, node, art: Artifact, cell) -> None:
    """A counterfactual-metrics or utility artifact's records, per-item evidence and notes, into its cell."""
    cell.metrics += json.loads(art.file("metrics.json").read_text())
    cell.items.update(load_items(art))
    cell.notes += art.meta.get("notes", [])


def load_items(art: Artifact) -> dict[str, np.ndarray]:
    path = art.file("items.npz")
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
