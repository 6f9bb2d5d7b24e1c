"""The paper's AUC protocol as stages: is a generated training set useful?

    dataset ─▶ classifier (real arm: real train split, shared by every cell of a dataset and seed)
    generate (train) ─▶ utility: classifiers trained on generated-only and 50% real + 50% generated images,
                        each scored on the real test split next to the real arm, with bootstrap CIs
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ldbench.config import Evaluation
from ldbench.data.attributes import NOT_ATTRIBUTES, attribute_task, encode_targets
from ldbench.data.base import Dataset, ImageTable
from ldbench.errors import UserError
from ldbench.runner import stages
from ldbench.runner.counterfactual_stages import STAGE_VERSIONS, _record, classifier_options
from ldbench.store import Artifact

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
            "seed": seed, "bootstrap": evaluation.bootstrap, "members": evaluation.utility_members}


def _labelled_splits(data_art: Artifact, evaluation: Evaluation, dataset: Dataset):
    """(label, positive value, train table, test table, train targets, test targets) of the AUC protocol."""
    table = stages.load_table(data_art)
    label, positive = _label(table, evaluation, dataset)
    train, test = table.split("train"), table.split("test")
    return (label, positive, train, test, encode_targets(train.attributes[label], "binary", positive),
            encode_targets(test.attributes[label], "binary", positive))


def _protocol_options(ctx, evaluation: Evaluation):
    from ldbench.classify import UtilityOptions

    return UtilityOptions(quiet=ctx.quiet, n_boot=evaluation.bootstrap, members=evaluation.utility_members)


def build_real_classifier(rt, node, up: dict) -> Artifact:
    """The AUC protocol's real arm (trained on the real train split, scored on the real test split): the
    same for every cell, so trained once per dataset, label, classifier options and seed."""
    ctx, dataset, data_art, evaluation, seed = rt.ctx, rt.dataset(node["dataset"]), up["dataset"], rt.evaluation, node["seed"]
    options = classifier_options(evaluation)
    config = _protocol_key(evaluation, seed)

    def build(tmp: Path) -> dict:
        from ldbench.classify import real_arm  # imports scikit-learn and timm: only to build

        label, positive, train, test, y_train, y_test = _labelled_splits(data_art, evaluation, dataset)
        arm = real_arm((train.images, y_train), (test.images, y_test), options, seed,
                       _protocol_options(ctx, evaluation))
        np.savez(tmp / "scores.npz", scores=arm["scores"], y=y_test)
        return {"auc": arm["auc"], "ci95": arm["ci95"], "member_aucs": arm["member_aucs"], "n_train": len(train),
                "label": label, "positive": positive, "history": arm["history"]}

    return ctx.store.get_or_build("classifier", STAGE_VERSIONS["classifier"], config, [data_art], build)


def build_utility(rt, node, up: dict) -> Artifact:
    """AUC of classifiers trained on (a) real, (b) generated-only, (c) 50% real + 50% generated images,
    each tested on the real test split. The generated training images are the editor's outputs for the
    train split (never the test split: no test information reaches training), labelled with their
    intended attribute."""
    ctx, data_art, gen_train, real_arm = rt.ctx, up["dataset"], up["generate"], up["classifier"]
    dataset, evaluation, seed = rt.dataset(node.up("dataset")["dataset"]), rt.evaluation, node["seed"]
    options = classifier_options(evaluation)
    config = _protocol_key(evaluation, seed)

    def build(tmp: Path) -> dict:
        from ldbench.classify import utility_protocol  # imports scikit-learn and timm: only to build

        label, positive, train, test, y_train, y_test = _labelled_splits(data_art, evaluation, dataset)
        plan = stages.load_plan(gen_train)
        synth_images = stages.load_generated(gen_train)["images"]
        synth_y = encode_targets([r[label] for r in plan["target_rows"]], "binary", positive)
        with np.load(real_arm.file("scores.npz"), allow_pickle=False) as z:
            real_result = {"auc": real_arm.meta["auc"], "ci95": real_arm.meta["ci95"], "scores": z["scores"],
                           "member_aucs": real_arm.meta["member_aucs"], "n_train": real_arm.meta["n_train"],
                           "n_train_synthetic": 0, "seed": seed, "history": real_arm.meta["history"]}
        results = utility_protocol((train.images, y_train), (synth_images, synth_y), (test.images, y_test), options,
                                   seed, _protocol_options(ctx, evaluation), real_result=real_result)
        records, arrays = [], {}
        for arm, res in results.items():
            metric = f"auc_{arm}"
            records.append(_record(metric, res["auc"], res["ci95"], len(y_test), "classifier", label=label,
                                   classifier=options.model, n_train=res["n_train"],
                                   n_train_synthetic=res["n_train_synthetic"], classifier_seed=seed,
                                   classifier_members=evaluation.utility_members, member_values=res["member_aucs"],
                                   bootstrap={"B": evaluation.bootstrap, "seed": seed, "stratified": True,
                                              "resampled": "classifier members and items"}))
            arrays[f"auc_y__{metric}"] = y_test
            arrays[f"auc_score__{metric}"] = np.asarray(res["scores"], dtype=np.float64)
        (tmp / "metrics.json").write_text(json.dumps(records, indent=1, allow_nan=False))
        np.savez(tmp / "items.npz", **arrays)
        return {"n_metrics": len(records), "n_synthetic": len(synth_images)}

    return ctx.store.get_or_build("utility", STAGE_VERSIONS["utility"], config, [data_art, gen_train, real_arm],
                                  build)
