"""The pipeline's stages. Each is a function of its config and upstream artifacts, cached in the Store.

    dataset ─▶ base-model ─▶ finetune ─▶ generate ─▶ metrics
       └──────────▶ reference-stats ───────────────────┘

Stage versions are part of every cache key: bump one when its output for the same input changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ldbench import __version__
from ldbench.config import Component, Evaluation
from ldbench.data import ImageTable, create_dataset
from ldbench.data.base import Dataset
from ldbench.device import inference_precision
from ldbench.drift import Drift
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditSettings, SamplingOptions, generate
from ldbench.hashing import sha256_file
from ldbench.methods import METHODS, TrainingOptions, method_options
from ldbench.models import load_components
from ldbench.models.base_models import BASE_MODELS, external_model_artifact  # noqa: F401 - re-exported
from ldbench.models.training import TrainData
from ldbench.paths import REFERENCE_STATS_DIR
from ldbench.runner.checkpoints import checkpoint_file
from ldbench.store import Artifact, Store

STAGE_VERSIONS = {
    "dataset": "1",
    "base-model": "1",
    "finetune": "1",
    "generate": "2",
    "editor-model": "1",
    "reference-stats": "1",
    "metrics": "3",  # 3: intervals that contain their estimate, FID∞
    "latents": "1",
}


@dataclass
class Context:
    store: Store
    quiet: bool = False
    device: str = "cpu"  # where networks run: "cpu" or "cuda:N" (ldbench.device.resolve_device)
    precision: str = "fp32"  # inference precision of sampling and the autoencoder
    # Where each artifact came from, for provenance: stage -> key -> description.
    notes: dict = field(default_factory=dict)


def context(store: Store | Path, quiet: bool = False, device: str = "cpu", precision: str = "fp32") -> Context:
    """A Context for `device` / `precision` on `store` (a Store, made with them, or a cache directory); the
    store's keys carry them (ldbench.device.key_fields)."""
    if not isinstance(store, Store):
        store = Store(store, device=device, precision=precision)
    return Context(store=store, quiet=quiet, device=device, precision=precision)


# --- dataset ---------------------------------------------------------------------------------------


def make_dataset(spec: Component) -> Dataset:
    try:
        return create_dataset(spec.name, **spec.options)
    except TypeError as exc:
        raise UserError(f"dataset {spec.name!r}: bad options {spec.options} ({exc})") from None


def dataset_stage(ctx: Context, dataset: Dataset) -> Artifact:
    def build(tmp: Path) -> dict:
        prepared = dataset.prepare()
        prepared.table.save(tmp / "table.npz")
        if prepared.counterfactuals is not None:
            prepared.counterfactuals.save(tmp / "counterfactuals.npz")
        test = prepared.table.split("test")
        return {
            "n_images": len(prepared.table),
            "content_hash": prepared.table.content_hash(),
            "test_content_hash": test.content_hash(),
            "n_test": len(test),
            "has_counterfactuals": prepared.counterfactuals is not None,
        }

    config = {"name": dataset.name, "version": dataset.version, "options": dataset.options()}
    return ctx.store.get_or_build("dataset", STAGE_VERSIONS["dataset"], config, [], build)


def load_table(art: Artifact, which: str = "table") -> ImageTable:
    return ImageTable.load(art.file(f"{which}.npz"))


# --- base model ------------------------------------------------------------------------------------


def base_model_stage(ctx: Context, spec: Component) -> Artifact:
    """The suite's base model through the BASE_MODELS registry (ldbench.models.base_models): the embedded
    tiny model or sd14-random (built and cached here), or a user's diffusers directory / hub id."""
    return BASE_MODELS.get(spec.name).artifact(ctx.store, spec.options, ctx.quiet)


def pipeline_dir(base: Artifact) -> Path | str:
    embedded = base.path / "pipeline"
    if embedded.is_dir():
        return embedded
    return base.path if base.path.exists() else str(base.path)


def load_base(ctx: Context, base: Artifact) -> dict:
    return load_components(pipeline_dir(base), device=ctx.device)


# --- fine-tuning -----------------------------------------------------------------------------------


def training_drift(drift: Drift) -> Drift:
    """The part of a drift that changes training. Cells that differ only in sampling share a model."""
    return drift.for_training()


# Method options whose default means "train exactly as before the option existed" stay out of the cache key
# at that default, so adding them kept existing fine-tunes valid (any other value is in the key).
_NEUTRAL_DEFAULTS = {"mixed_precision": "no", "gradient_accumulation_steps": 1, "gradient_checkpointing": "auto"}


def finetune_stage(ctx: Context, dataset: Dataset, data_art: Artifact, base: Artifact, method_spec: Component,
                   drift: Drift, seed: int) -> Artifact:
    method = METHODS.get(method_spec.name)
    options = method_options(method_spec)
    train_drift = training_drift(drift)
    checkpoint = checkpoint_file(method.name, options.checkpoint, drift)
    if checkpoint is not None:
        return loaded_checkpoint_stage(ctx, base, method, options, checkpoint)
    key_options = {k: v for k, v in dataclasses.asdict(options).items()
                   if not (k in _NEUTRAL_DEFAULTS and v == _NEUTRAL_DEFAULTS[k])}
    config = {"method": method.name, "options": key_options, "drift": train_drift.to_dict(), "seed": seed}

    def build(tmp: Path) -> dict:
        torch.manual_seed(seed)
        parts = load_base(ctx, base)
        train = load_table(data_art).split("train")
        pixels = torch.from_numpy(train.images)[:, None].repeat(1, 3, 1, 1) * 2 - 1
        captions = [dataset.caption(train.row(i)) for i in range(len(train))]
        data = TrainData.from_pixels(parts["vae"], pixels, captions)
        prepare = getattr(method, "prepare", None)  # e.g. dreambooth's class-prior images, from the base model
        if prepare is not None:
            data = prepare(parts, data, options, seed, ctx.quiet)
            if data.prior is not None:
                save_file({"latent_mean": data.prior.latent_mean.contiguous(),
                           "latent_std": data.prior.latent_std.contiguous()}, str(tmp / "class_prior.safetensors"),
                          metadata={"captions": json.dumps(list(data.prior.captions))})
        trained, losses = method.train(parts, data, train_drift, options, seed, ctx.quiet)
        save_file({k: v.contiguous() for k, v in trained.items()}, str(tmp / "trained.safetensors"))
        (tmp / "losses.json").write_text(json.dumps(losses))
        return {"n_train": len(train), "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:])),
                "options": dataclasses.asdict(options)}

    return ctx.store.get_or_build("finetune", STAGE_VERSIONS["finetune"], config, [data_art, base], build)


def loaded_checkpoint_stage(ctx: Context, base: Artifact, method, options: TrainingOptions, path: Path) -> Artifact:
    """A model trained elsewhere: its tensors, checked to load into this base model, keyed by their SHA-256
    (the same file gives the same artifact whatever the path or drift)."""
    digest = sha256_file(path)
    config = {"method": method.name, "checkpoint_sha256": digest}

    def build(tmp: Path) -> dict:
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
        try:
            method.apply(load_base(ctx, base), tensors)  # fails here, clearly, if it does not fit the base model
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: these weights do not fit method {method.name} on this base model "
                            f"({str(exc).splitlines()[0][:200]})") from None
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "trained.safetensors"))
        (tmp / "losses.json").write_text("[]")
        return {"loaded_from": str(path.resolve()), "checkpoint_sha256": digest, "n_tensors": len(tensors),
                "options": {**dataclasses.asdict(options), "checkpoint": str(path.resolve())}}

    return ctx.store.get_or_build("finetune", STAGE_VERSIONS["finetune"], config, [base], build)


def load_finetuned(ctx: Context, base: Artifact, ft: Artifact, method_name: str) -> dict:
    parts = load_base(ctx, base)
    METHODS.get(method_name).apply(parts, load_file(str(ft.file("trained.safetensors"))))
    return parts


# --- generation ------------------------------------------------------------------------------------


def sampling_drift(drift: Drift) -> Drift:
    return drift.for_sampling()


def editor_options(editor_spec: Component) -> SamplingOptions:
    return EDITORS.options(editor_spec.name, editor_spec.options)


def editor_model_stage(ctx: Context, dataset: Dataset, data_art: Artifact, base: Artifact, ft: Artifact,
                       method_name: str, editor_spec: Component, drift: Drift, seed: int) -> Artifact | None:
    """The editor's own trained model (instruct: an image-conditioned UNet trained on longitudinal pairs of
    the train split, starting from the fine-tuned model, under the cell's training drift); None for
    editors that use the fine-tuned model as it is."""
    editor = EDITORS.get(editor_spec.name)
    if not hasattr(editor, "train"):
        return None
    options = editor_options(editor_spec)
    train_drift = training_drift(drift)
    config = {"editor": editor_spec.name, "options": dataclasses.asdict(options), "drift": train_drift.to_dict(),
              "seed": seed}

    def build(tmp: Path) -> dict:
        torch.manual_seed(seed)
        parts = load_finetuned(ctx, base, ft, method_name)
        train = load_table(data_art).split("train")
        tensors, losses = editor.train(parts, dataset, train, train_drift, options, seed, ctx.quiet)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "editor.safetensors"))
        (tmp / "losses.json").write_text(json.dumps(losses))
        return {"loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:])),
                "steps": len(losses)}

    return ctx.store.get_or_build("editor-model", STAGE_VERSIONS["editor-model"], config, [data_art, ft], build)


def load_editing_parts(ctx: Context, base: Artifact, ft: Artifact, method_name: str, editor_name: str,
                       editor_model: Artifact | None) -> dict:
    parts = load_finetuned(ctx, base, ft, method_name)
    if editor_model is not None:
        EDITORS.get(editor_name).apply(parts, load_file(str(editor_model.file("editor.safetensors"))))
    return parts


def generate_stage(ctx: Context, dataset: Dataset, data_art: Artifact, base: Artifact, ft: Artifact,
                   method_name: str, editor_spec: Component, drift: Drift, seed: int,
                   editor_model: Artifact | None = None, split: str = "test") -> Artifact:
    """The editor's outputs for one split (the test split for evaluation; the train split for the AUC
    protocol's synthetic training set), with its plan: sources, intended attributes, true counterfactuals."""
    editor = EDITORS.get(editor_spec.name)
    options = editor_options(editor_spec)
    sample_drift = sampling_drift(drift)
    config = {"editor": editor_spec.name, "options": dataclasses.asdict(options), "drift": sample_drift.to_dict(),
              "seed": seed, "split": split}

    def build(tmp: Path) -> dict:
        parts = load_editing_parts(ctx, base, ft, method_name, editor_spec.name, editor_model)
        table = load_table(data_art).split(split)
        plan = editor.plan(dataset, table, bool(data_art.meta.get("has_counterfactuals")))
        with inference_precision(ctx.device, ctx.precision):
            out = generate(editor, parts, dataset, table, plan, EditSettings(sample_drift, options, seed), ctx.quiet)
        np.savez(tmp / "generated.npz", images=out.images.astype(np.float32), latents=out.latents.astype(np.float32),
                 source_index=plan.source_index, truth_index=plan.truth_index)
        (tmp / "prompts.json").write_text(json.dumps(list(out.prompts)))
        (tmp / "plan.json").write_text(json.dumps({"target_rows": list(plan.target_rows), "truth_table": plan.truth_table,
                                                   "changes": list(plan.changes)}))
        return {"n": len(out.images), "options": dataclasses.asdict(options), "split": split,
                "changes": list(plan.changes), "truth_table": plan.truth_table}

    upstream = [data_art, ft] + ([editor_model] if editor_model is not None else [])
    return ctx.store.get_or_build("generate", STAGE_VERSIONS["generate"], config, upstream, build)


def load_generated(art: Artifact) -> dict[str, np.ndarray]:
    with np.load(art.file("generated.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def load_plan(art: Artifact) -> dict:
    """{"target_rows": [...], "truth_table": str, "changes": [...]} of a generate artifact."""
    return json.loads(art.file("plan.json").read_text())


def truth_images(data_art: Artifact, gen: Artifact, split: str = "test") -> np.ndarray | None:
    """The true counterfactual of each output (aligned with the generated images), or None."""
    plan, idx = load_plan(gen), load_generated(gen)["truth_index"]
    if not plan["truth_table"] or (idx < 0).any():
        return None
    table = "counterfactuals" if plan["truth_table"] == "counterfactuals" else "table"
    return load_table(data_art, table).split(split).images[idx]


# --- latents for the report's channel-distribution figure ------------------------------------------


def latents_stage(ctx: Context, data_art: Artifact, base: Artifact, split: str = "test") -> Artifact:
    def build(tmp: Path) -> dict:
        from ldbench.models.sampling import encode_images

        parts = load_base(ctx, base)
        images = load_table(data_art).split(split).images
        with inference_precision(ctx.device, ctx.precision):
            z = encode_images(parts, torch.from_numpy(images)).float().cpu().numpy()
        np.savez(tmp / "latents.npz", latents=z.astype(np.float32))
        return {"n": len(z), "split": split}

    return ctx.store.get_or_build("latents", STAGE_VERSIONS["latents"], {"split": split}, [data_art, base], build)


# --- reference statistics --------------------------------------------------------------------------


def expected_stats_meta(dataset: Dataset, data_art: Artifact, split: str, extractor) -> dict:
    content = data_art.meta["test_content_hash"] if split == "test" else None
    if content is None:
        content = load_table(data_art).split(split).content_hash()
    return {
        "dataset": dataset.name,
        "dataset_version": dataset.version,
        "dataset_options": dataset.options(),
        "split": split,
        "content_hash": content,
        "extractor": extractor.describe(),
    }


def reference_stats_stage(ctx: Context, dataset: Dataset, data_art: Artifact, split: str, extractor,
                          batch_size: int) -> tuple[object, dict]:
    """Reference statistics of a split: the shipped file in reference_stats/ when one was made from the
    same images with the same extractor, else built once into the store. Either way the numbers are those
    of the same images and extractor; the record says which file was used and its SHA-256."""
    from ldbench.metrics.stats import (
        build_reference_stats,
        check_compatible,
        load_reference_stats,
        save_reference_stats,
    )

    expected = expected_stats_meta(dataset, data_art, split, extractor)
    for sidecar in sorted(REFERENCE_STATS_DIR.glob("*.json")):
        if sidecar.name == "manifest.json":
            continue
        try:
            meta = json.loads(sidecar.read_text())
            check_compatible(meta, expected)
        except (UserError, ValueError, KeyError):
            continue
        npz = sidecar.with_suffix(".npz")
        stats = load_reference_stats(npz)
        return stats, {"source": "shipped", "path": str(npz.relative_to(REFERENCE_STATS_DIR.parent)),
                       "sha256": sha256_file(npz)}

    def build(tmp: Path) -> dict:
        images = load_table(data_art).split(split).images
        stats = build_reference_stats(images, extractor, {**expected, "ldbench_version": __version__},
                                      keep_features=True, batch_size=batch_size)
        save_reference_stats(stats, tmp / "stats.npz")
        return {"n": int(stats.meta["n"])}

    config = {k: v for k, v in expected.items()}
    art = ctx.store.get_or_build("reference-stats", STAGE_VERSIONS["reference-stats"], config, [data_art], build)
    return load_reference_stats(art.file("stats.npz")), {
        "source": "built", "path": str(art.file("stats.npz")), "sha256": sha256_file(art.file("stats.npz"))}


# --- metrics ---------------------------------------------------------------------------------------


def metrics_stage(ctx: Context, gen: Artifact, stats, stats_source: dict, extractor, evaluation: Evaluation,
                  seed: int) -> Artifact:
    from ldbench.metrics.scores import distribution_metrics

    config = {"evaluation": dataclasses.asdict(evaluation), "extractor": extractor.describe(),
              "reference_stats_sha256": stats_source["sha256"], "seed": seed}

    def build(tmp: Path) -> dict:
        images = load_generated(gen)["images"]
        feats = extractor.features(images, batch_size=evaluation.batch_size)
        metrics = distribution_metrics(feats, stats, extractor, evaluation, seed)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        np.savez(tmp / "features.npz", features=np.asarray(feats, dtype=np.float64))  # for LD-effect tests
        return {"n_metrics": len(metrics)}

    return ctx.store.get_or_build("metrics", STAGE_VERSIONS["metrics"], config, [gen], build)
