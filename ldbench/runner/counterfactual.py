"""Counterfactual evaluation stages: is an edit right, and is it useful?

    dataset ─▶ oracle (per attribute) ──────────────┐
    generate (test) ───────────────────────────────▶ counterfactual-metrics
    generate (train) ─▶ utility (AUC protocol) ◀── classifier (real arm, shared by every cell)

counterfactual-metrics: identity (SSIM/PSNR/L1 against the source, CLD), ground truth (SSIM/PSNR/L1/LPIPS
against the true counterfactual), effectiveness (oracles read the intended attribute back), and the
axioms of Monteiro et al. 2023 as benchmarked by Melistas et al. 2024 (composition: null edits;
reversibility: there and back). utility: the paper's AUC protocol. Every number has a bootstrap 95% CI,
and each artifact keeps its per-item values (items.npz) for the LD-versus-no-LD tests in effects.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ldbench.config import Component, Evaluation, build_options
from ldbench.data.attributes import NOT_ATTRIBUTES, attribute_task, encode_targets, predictable_attributes
from ldbench.data.base import Dataset, ImageTable
from ldbench.drift import Drift
from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.runner import stages
from ldbench.store import Artifact

STAGE_VERSIONS = {"oracle": "1", "counterfactual-metrics": "1", "classifier": "1", "utility": "1"}


def classifier_options(evaluation: Evaluation):
    from ldbench.classify import ClassifierOptions

    return build_options(ClassifierOptions, evaluation.classifier, "evaluation.classifier")


# --- oracles ----------------------------------------------------------------------------------------


def oracle_stage(ctx: stages.Context, data_art: Artifact, attribute: str, evaluation: Evaluation,
                 seed: int) -> Artifact:
    """An oracle for one attribute: a timm classifier (binary) or regressor trained on the real train
    split (best epoch on val), scored on the real test split so its own accuracy is on record."""
    from ldbench.classify import TrainedClassifier, train_classifier
    from ldbench.metrics.significance import auc_with_ci, mean_with_ci

    options = classifier_options(evaluation)
    config = {"attribute": attribute, "classifier": dataclasses.asdict(options), "seed": seed,
              "bootstrap": evaluation.bootstrap}

    def build(tmp: Path) -> dict:
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
        model = train_classifier(split["train"].images, y["train"], task, options, seed, quiet=ctx.quiet, val=val)
        model.save(tmp / "model.safetensors")
        pred = model.predict(split["test"].images)
        if task == "binary":
            value, ci = auc_with_ci(y["test"], pred, evaluation.bootstrap, seed)
            held_out = {"metric": "auc", "value": value, "ci95": list(ci) if ci else None}
        else:
            value, ci = mean_with_ci(np.abs(pred - y["test"]), evaluation.bootstrap, seed)
            baseline = float(np.mean(np.abs(y["test"] - y["train"].mean())))
            held_out = {"metric": "mae", "value": value, "ci95": list(ci) if ci else None,
                        "mae_of_predicting_train_mean": baseline}
        TrainedClassifier.load(tmp / "model.safetensors")  # fail here, not later, if it does not round-trip
        return {"attribute": attribute, "task": task, "positive": positive, "model": options.model,
                "n_train": len(split["train"]), "n_test": len(split["test"]), "held_out_real_test": held_out}

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


def counterfactual_metrics_stage(ctx: stages.Context, dataset: Dataset, data_art: Artifact, gen: Artifact,
                                 test_latents: Artifact, load_parts: Callable[[], dict], editor_spec: Component,
                                 drift: Drift, evaluation: Evaluation, oracles: dict[str, Artifact],
                                 seed: int) -> Artifact:
    """Every counterfactual metric of one generated test set. `load_parts` loads the cell's model only when
    the axioms need new edits (a cache hit never loads it)."""
    config = {"evaluation": {k: getattr(evaluation, k) for k in (
                  "counterfactual", "effectiveness", "axiom_items", "null_edits", "bootstrap", "lpips_backbone",
                  "lpips_linear")},
              "editor": dataclasses.asdict(editor_spec), "drift": stages.sampling_drift(drift).to_dict(),
              "seed": seed,
              # the LPIPS weights by content, so replacing a file at the same path recomputes
              "lpips_sha256": [sha256_file(Path(p)) if Path(p).is_file() else None
                               for p in (evaluation.lpips_backbone, evaluation.lpips_linear) if p]}

    def build(tmp: Path) -> dict:
        records, items, notes = compute_counterfactual_metrics(
            dataset, data_art, gen, test_latents, load_parts, editor_spec, drift, evaluation, oracles, seed, ctx.quiet)
        (tmp / "metrics.json").write_text(json.dumps(records, indent=1, allow_nan=False))
        np.savez(tmp / "items.npz", **items)
        return {"n_metrics": len(records), "notes": notes}

    upstream = [data_art, gen, test_latents] + [oracles[a] for a in sorted(oracles)]
    return ctx.store.get_or_build("counterfactual-metrics", STAGE_VERSIONS["counterfactual-metrics"], config,
                                  upstream, build)


def compute_counterfactual_metrics(dataset, data_art, gen, test_latents, load_parts, editor_spec, drift, evaluation,
                                   oracles, seed, quiet) -> tuple[list[dict], dict[str, np.ndarray], list[str]]:
    from ldbench.device import current as current_device
    from ldbench.metrics.counterfactual import image_similarity, lpips_from_config
    from ldbench.metrics.significance import mean_with_ci

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

            editor, options = EDITORS.get(editor_spec.name), stages.editor_options(editor_spec)
            for metric, values in axiom_metrics(editor, options, dataset, test, generated, plan, load_parts(),
                                                stages.sampling_drift(drift), evaluation, seed, quiet).items():
                add_mean(metric, values, "pixels", items_used=len(values))
    if evaluation.effectiveness:
        records.extend(_effectiveness_records(images, plan, test, oracles, B, seed, items, notes))
    return records, items, notes


def axiom_metrics(editor, options, dataset, test: ImageTable, generated: dict, plan: dict, parts: dict,
                  sample_drift: Drift, evaluation: Evaluation, seed: int, quiet: bool) -> dict[str, np.ndarray]:
    """Composition (L1 to the source after 1 and after `null_edits` null edits: the target is the source's
    own attributes) and reversibility (L1 to the source after editing to the target and back), on the
    first `axiom_items` outputs. An ideal editor scores 0 on both."""
    from ldbench.generate import EditRequest, EditSettings, run_edits
    from ldbench.metrics.counterfactual import null_edit_drift, reversibility

    n = min(evaluation.axiom_items, len(generated["images"]))
    idx = generated["source_index"][:n]
    source_rows = [test.row(int(i)) for i in idx]
    target_rows = plan["target_rows"][:n]
    x = test.images[idx]
    chain, current = [], x
    for k in range(1, evaluation.null_edits + 1):
        current, _, _ = run_edits(editor, parts, dataset, EditRequest(current, source_rows, source_rows),
                                  EditSettings(sample_drift, options, seed + k), quiet=quiet,
                                  desc=f"null edit {k}/{evaluation.null_edits}")
        chain.append(current)
    back, _, _ = run_edits(editor, parts, dataset, EditRequest(generated["images"][:n], target_rows, source_rows),
                           EditSettings(sample_drift, options, seed + evaluation.null_edits + 1), quiet=quiet,
                           desc="edit back")
    out = {f"composition_l1:{k}": v for k, v in null_edit_drift(x, chain).items() if k in (1, evaluation.null_edits)}
    out["reversibility_l1"] = reversibility(x, back)
    return out


def _cld_records(gen: Artifact, test: ImageTable, plan: dict, test_latents: Artifact, evaluation: Evaluation,
                 seed: int, items: dict) -> list[dict]:
    """CLD in the autoencoder's latent space (frozen in every method, so the same for every cell): the
    sources, the outputs and the test split as reference, grouped by the one discrete attribute edited."""
    from ldbench.metrics.counterfactual import counterfactual_latent_divergence
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


def _effectiveness_records(images, plan, test, oracles, B, seed, items, notes) -> list[dict]:
    from ldbench.classify import TrainedClassifier
    from ldbench.metrics.significance import auc_with_ci, mean_with_ci

    records = []
    for attr in effectiveness_attributes(plan, test):
        if attr not in oracles:
            continue
        art = oracles[attr]
        model = TrainedClassifier.load(art.file("model.safetensors"))
        task, positive = art.meta["task"], art.meta["positive"]
        target = encode_targets([r[attr] for r in plan["target_rows"]], task, positive)
        pred = model.predict(images)
        details = {"attribute": attr, "oracle": art.meta["model"], "oracle_held_out_real_test": art.meta["held_out_real_test"],
                   "oracle_artifact": art.key, "bootstrap": {"B": B, "seed": seed}}
        if task == "binary":
            if len(np.unique(target)) == 2:
                value, ci = auc_with_ci(target, pred, B, seed)
                records.append(_record(f"effectiveness_auc:{attr}", value, ci, len(pred), "oracle", **details))
                items[f"auc_y__effectiveness_auc:{attr}"] = target
                items[f"auc_score__effectiveness_auc:{attr}"] = pred
            else:
                notes.append(f"effectiveness AUC for {attr}: every output has the same target; accuracy only")
            correct = ((pred >= 0.5) == (target == 1)).astype(np.float64)
            value, ci = mean_with_ci(correct, B, seed)
            records.append(_record(f"effectiveness_acc:{attr}", value, ci, len(pred), "oracle", **details))
            items[f"mean__effectiveness_acc:{attr}"] = correct
        else:
            err = np.abs(pred - target).astype(np.float64)
            value, ci = mean_with_ci(err, B, seed)
            records.append(_record(f"effectiveness_mae:{attr}", value, ci, len(pred), "oracle", **details))
            items[f"mean__effectiveness_mae:{attr}"] = err
    return records


# --- the AUC protocol ------------------------------------------------------------------------------


def _label(table: ImageTable, evaluation: Evaluation, dataset: Dataset) -> tuple[str, object]:
    label = evaluation.utility_label or flipped_attribute(dataset, table)
    if label not in table.attributes:
        raise UserError(f"evaluation.utility_label={label!r}: the dataset has no such attribute; it has "
                        f"{', '.join(sorted(a for a in table.attributes if a not in NOT_ATTRIBUTES))}")
    task = attribute_task(table.attributes[label])
    if task is None or task[0] != "binary":
        raise UserError(f"evaluation.utility_label={label!r} is not a binary attribute; the AUC protocol needs one")
    return label, task[1]


def flipped_attribute(dataset: Dataset, table: ImageTable) -> str:
    """The attribute the dataset's counterfactuals change (the AUC protocol's default label)."""
    row = table.row(0)
    changed = [k for k, v in dataset.counterfactual_row(row).items() if row.get(k) != v]
    if len(changed) != 1:
        raise UserError(f"dataset {dataset.name}: its counterfactuals change {changed or 'nothing'}; "
                        "set evaluation.utility_label to the binary attribute the AUC protocol should classify")
    return changed[0]


def _protocol_key(evaluation: Evaluation, seed: int) -> dict:
    """What both AUC-protocol stages depend on besides their upstream artifacts."""
    return {"label": evaluation.utility_label, "classifier": dataclasses.asdict(classifier_options(evaluation)),
            "seed": seed, "bootstrap": evaluation.bootstrap}


def _labelled_splits(data_art: Artifact, evaluation: Evaluation, dataset: Dataset):
    """(label, positive value, train table, test table, train targets, test targets) of the AUC protocol."""
    table = stages.load_table(data_art)
    label, positive = _label(table, evaluation, dataset)
    train, test = table.split("train"), table.split("test")
    return (label, positive, train, test, encode_targets(train.attributes[label], "binary", positive),
            encode_targets(test.attributes[label], "binary", positive))


def real_classifier_stage(ctx: stages.Context, dataset: Dataset, data_art: Artifact, evaluation: Evaluation,
                          seed: int) -> Artifact:
    """The AUC protocol's real arm (trained on the real train split, scored on the real test split): the
    same for every cell, so trained once per dataset, label, classifier options and seed."""
    from ldbench.classify import train_classifier
    from ldbench.metrics.significance import auc_with_ci

    options = classifier_options(evaluation)
    config = _protocol_key(evaluation, seed)

    def build(tmp: Path) -> dict:
        label, positive, train, test, y_train, y_test = _labelled_splits(data_art, evaluation, dataset)
        model = train_classifier(train.images, y_train, "binary", options, seed, quiet=ctx.quiet)
        scores = model.predict(test.images)
        auc, ci = auc_with_ci(y_test, scores, evaluation.bootstrap, seed)
        np.savez(tmp / "scores.npz", scores=scores, y=y_test)
        return {"auc": auc, "ci95": list(ci) if ci else None, "n_train": len(train), "label": label,
                "positive": positive, "history": model.history}

    return ctx.store.get_or_build("classifier", STAGE_VERSIONS["classifier"], config, [data_art], build)


def utility_stage(ctx: stages.Context, dataset: Dataset, data_art: Artifact, gen_train: Artifact, real_arm: Artifact,
                  evaluation: Evaluation, seed: int) -> Artifact:
    """AUC of classifiers trained on (a) real, (b) generated-only, (c) 50% real + 50% generated images,
    each tested on the real test split. The generated training images are the editor's outputs for the
    train split (never the test split: no test information reaches training), labelled with their
    intended attribute."""
    from ldbench.classify import utility_protocol

    options = classifier_options(evaluation)
    config = _protocol_key(evaluation, seed)

    def build(tmp: Path) -> dict:
        label, positive, train, test, y_train, y_test = _labelled_splits(data_art, evaluation, dataset)
        plan = stages.load_plan(gen_train)
        synth_images = stages.load_generated(gen_train)["images"]
        synth_y = encode_targets([r[label] for r in plan["target_rows"]], "binary", positive)
        with np.load(real_arm.file("scores.npz"), allow_pickle=False) as z:
            real_result = {"auc": real_arm.meta["auc"], "ci95": real_arm.meta["ci95"], "scores": z["scores"],
                           "n_train": real_arm.meta["n_train"], "n_train_synthetic": 0, "seed": seed,
                           "history": real_arm.meta["history"]}
        results = utility_protocol((train.images, y_train), (synth_images, synth_y), (test.images, y_test), options,
                                   seed, quiet=ctx.quiet, n_boot=evaluation.bootstrap, real_result=real_result)
        records, arrays = [], {}
        for arm, res in results.items():
            metric = f"auc_{arm}"
            records.append(_record(metric, res["auc"], res["ci95"], len(y_test), "classifier", label=label,
                                   classifier=options.model, n_train=res["n_train"],
                                   n_train_synthetic=res["n_train_synthetic"], classifier_seed=seed,
                                   bootstrap={"B": evaluation.bootstrap, "seed": seed, "stratified": True}))
            arrays[f"auc_y__{metric}"] = y_test
            arrays[f"auc_score__{metric}"] = np.asarray(res["scores"], dtype=np.float64)
        (tmp / "metrics.json").write_text(json.dumps(records, indent=1, allow_nan=False))
        np.savez(tmp / "items.npz", **arrays)
        return {"n_metrics": len(records), "n_synthetic": len(synth_images)}

    return ctx.store.get_or_build("utility", STAGE_VERSIONS["utility"], config, [data_art, gen_train, real_arm],
                                  build)


def load_items(art: Artifact) -> dict[str, np.ndarray]:
    path = art.file("items.npz")
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
