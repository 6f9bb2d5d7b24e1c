"""The data, model and generation stages' builds (declared in ldbench.runner.pipeline): dataset, base model,
latents, fine-tune, editor model, generate; and the loaders their artifacts are read back with.

Each build derives its store config from its node and reads its upstream artifacts by role; the store
keys the output on that config, the stage version and the upstream keys. Stage versions are part of every
cache key: bump one when its output for the same input changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ldbench.config import Component, build_options
from ldbench.data import ImageTable, create_dataset
from ldbench.data.base import Dataset
from ldbench.device import inference_precision
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditSettings, SamplingOptions, generate
from ldbench.hashing import sha256_file
from ldbench.methods import METHODS, TrainingOptions, method_options
from ldbench.models import Components, load_components
from ldbench.models.base_models import BASE_MODEL_VERSION, BASE_MODELS, external_model_artifact  # noqa: F401
from ldbench.models.probe import LatentProbe, ProbeSettings, probing
from ldbench.models.training import TrainData
from ldbench.runner.checkpoints import checkpoint_file
from ldbench.store import Artifact, Store

STAGE_VERSIONS = {
    "dataset": "1",
    "base-model": BASE_MODEL_VERSION,
    "finetune": "3",  # 2: a method's key holds its own options only; 3: latent statistics at checkpoints
    "generate": "3",  # 3: an editor's key holds its own options only
    "editor-model": "2",  # 2: instruct's key holds its own options only
    "reference-stats": "1",
    "metrics": "3",  # 3: intervals that contain their estimate, FID∞
    "latents": "1",
}


def latent_probe(evaluation) -> ProbeSettings:
    """The generated-latent statistics every fine-tune records (evaluation.latent_probe; ldbench.models.probe)."""
    return build_options(ProbeSettings, evaluation.latent_probe, "evaluation.latent_probe")


@dataclass
class Context:
    """Where and how stages run: the store, progress bars or not, the device and inference precision."""

    store: Store
    quiet: bool = False
    device: str = "cpu"  # where networks run: "cpu" or "cuda:N" (ldbench.device.resolve_device)
    precision: str = "fp32"  # inference precision of sampling and the autoencoder


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


def load_base(ctx: Context, base: Artifact) -> Components:
    return load_components(pipeline_dir(base), device=ctx.device)


# --- fine-tuning -----------------------------------------------------------------------------------


# Method options whose default means "train exactly as before the option existed" stay out of the cache key
# at that default, so adding them kept existing fine-tunes valid (any other value is in the key).
_NEUTRAL_DEFAULTS = {"mixed_precision": "no", "gradient_accumulation_steps": 1, "gradient_checkpointing": "auto"}


def build_finetune(rt, node, up: dict) -> Artifact:
    """A method trained on the dataset's train split from the base model, probed through training
    (ldbench.models.probe), or a checkpoint trained elsewhere, loaded (the method's `checkpoint` option)."""
    ctx, dataset, data_art, base, seed = rt.ctx, rt.dataset(node["dataset"]), up["dataset"], up["base"], node["seed"]
    method = METHODS.get(node["method"].name)
    options = method_options(node["method"])
    drift, probe_settings = node.get("checkpoint_drift", node["drift"]), latent_probe(rt.evaluation)
    train_drift = drift.for_training()
    checkpoint = checkpoint_file(method.name, options.checkpoint, drift)
    if checkpoint is not None:
        return loaded_checkpoint_stage(ctx, base, method, options, checkpoint)
    key_options = {k: v for k, v in dataclasses.asdict(options).items()
                   if not (k in _NEUTRAL_DEFAULTS and v == _NEUTRAL_DEFAULTS[k])}
    config = {"method": method.name, "options": key_options, "drift": train_drift.to_dict(), "seed": seed,
              "latent_probe": dataclasses.asdict(probe_settings)}

    def build(tmp: Path) -> dict:
        torch.manual_seed(seed)
        parts = load_base(ctx, base)
        train = load_table(data_art).split("train")
        pixels = torch.from_numpy(train.images)[:, None].repeat(1, 3, 1, 1) * 2 - 1
        captions = [dataset.caption(train.row(i)) for i in range(len(train))]
        data = TrainData.from_pixels(parts.vae, pixels, captions)
        prepare = getattr(method, "prepare", None)  # e.g. dreambooth's class-prior images, from the base model
        if prepare is not None:
            data = prepare(parts, data, options, seed, ctx.quiet)
            if data.prior is not None:
                save_file({"latent_mean": data.prior.latent_mean.contiguous(),
                           "latent_std": data.prior.latent_std.contiguous()}, str(tmp / "class_prior.safetensors"),
                          metadata={"captions": json.dumps(list(data.prior.captions))})
        with probing(LatentProbe(probe_settings, seed)) as probe:  # the generated latents at checkpoints
            trained, losses = method.train(parts, data, train_drift, options, seed, ctx.quiet)
        save_file({k: v.contiguous() for k, v in trained.items()}, str(tmp / "trained.safetensors"))
        if probe.steps:
            np.savez(tmp / "latent_probe.npz", **probe.arrays())
        (tmp / "losses.json").write_text(json.dumps(losses))
        return {"n_train": len(train), "loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:])),
                "options": dataclasses.asdict(options), "latent_probe": dataclasses.asdict(probe_settings)}

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


def load_finetuned(ctx: Context, base: Artifact, ft: Artifact, method_name: str) -> Components:
    parts = load_base(ctx, base)
    METHODS.get(method_name).apply(parts, load_file(str(ft.file("trained.safetensors"))))
    return parts


# --- generation ------------------------------------------------------------------------------------




def editor_options(editor_spec: Component) -> SamplingOptions:
    return EDITORS.options(editor_spec.name, editor_spec.options)


def editor_trains(editor_spec: Component) -> bool:
    """Whether an editor trains a model of its own (instruct's image-conditioned UNet) before generating."""
    return hasattr(EDITORS.get(editor_spec.name), "train")


def build_editor_model(rt, node, up: dict) -> Artifact:
    """The editor's own trained model (instruct: an image-conditioned UNet trained on longitudinal pairs of
    the train split, starting from the fine-tuned model, under the cell's training drift)."""
    ctx, ft, data_art = rt.ctx, up["finetune"], up["dataset"]
    editor_spec, train_drift, seed = node["editor"], node["drift"], node["seed"]
    editor, options = EDITORS.get(editor_spec.name), editor_options(editor_spec)
    config = {"editor": editor_spec.name, "options": dataclasses.asdict(options), "drift": train_drift.to_dict(),
              "seed": seed}

    def build(tmp: Path) -> dict:
        torch.manual_seed(seed)
        parts = load_finetuned(ctx, up["base"], ft, node.up("finetune")["method"].name)
        train = load_table(data_art).split("train")
        tensors, losses = editor.train(parts, rt.dataset(node.up("dataset")["dataset"]), train, train_drift, options,
                                       seed, ctx.quiet)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "editor.safetensors"))
        (tmp / "losses.json").write_text(json.dumps(losses))
        return {"loss_first": float(np.mean(losses[:20])), "loss_last": float(np.mean(losses[-20:])),
                "steps": len(losses)}

    return ctx.store.get_or_build("editor-model", STAGE_VERSIONS["editor-model"], config, [data_art, ft], build)


def load_editing_parts(ctx: Context, up: dict, method_name: str, editor_name: str) -> Components:
    """The cell's model as its editor uses it: the fine-tune on the base model, with the editor's own trained
    tensors installed where it has some. `up`: the artifacts by role (base, finetune, editor_model)."""
    parts = load_finetuned(ctx, up["base"], up["finetune"], method_name)
    if up.get("editor_model") is not None:
        EDITORS.get(editor_name).apply(parts, load_file(str(up["editor_model"].file("editor.safetensors"))))
    return parts


def build_generate(rt, node, up: dict) -> Artifact:
    """The editor's outputs for one split (the test split for evaluation; the train split for the AUC
    protocol's synthetic training set), with its plan: sources, intended attributes, true counterfactuals."""
    ctx, data_art, editor_spec = rt.ctx, up["dataset"], node["editor"]
    editor, options = EDITORS.get(editor_spec.name), editor_options(editor_spec)
    sample_drift, seed, split = node["drift"], node["seed"], node["split"]
    dataset = rt.dataset(node.up("dataset")["dataset"])
    config = {"editor": editor_spec.name, "options": dataclasses.asdict(options), "drift": sample_drift.to_dict(),
              "seed": seed, "split": split}

    def build(tmp: Path) -> dict:
        parts = load_editing_parts(ctx, up, node.up("finetune")["method"].name, editor_spec.name)
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

    upstream = [data_art, up["finetune"]] + ([up["editor_model"]] if up.get("editor_model") is not None else [])
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


# --- the shared stages' builds (ldbench.runner.pipeline) ------------------------------------------------


def build_dataset(rt, node, up: dict) -> Artifact:
    dataset = rt.dataset(node["dataset"])
    art = dataset_stage(rt.ctx, dataset)
    if rt.on_dataset is not None:
        rt.on_dataset(dataset, art)
    return art


def build_base_model(rt, node, up: dict) -> Artifact:
    return base_model_stage(rt.ctx, node["base_model"])


def build_latents(rt, node, up: dict) -> Artifact:
    return latents_stage(rt.ctx, up["dataset"], up["base"])

