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
from ldbench.config import Component, Evaluation, build_options
from ldbench.data import ImageTable, create_dataset
from ldbench.data.base import Dataset
from ldbench.drift import NO_DRIFT, Drift
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditorOptions
from ldbench.hashing import sha256_file, stable_hash
from ldbench.methods import METHODS, MethodOptions
from ldbench.methods.loop import TrainData
from ldbench.models import load_components
from ldbench.models.tiny import TinyModelConfig, pretrain_tiny_model
from ldbench.paths import REFERENCE_STATS_DIR
from ldbench.runner.store import Artifact, Store

STAGE_VERSIONS = {
    "dataset": "1",
    "base-model": "1",
    "finetune": "1",
    "generate": "1",
    "reference-stats": "1",
    "metrics": "1",
    "latents": "1",
}


@dataclass
class Context:
    store: Store
    quiet: bool = False
    device: str = "cpu"
    # Where each artifact came from, for provenance: stage -> key -> description.
    notes: dict = field(default_factory=dict)


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
    """The embedded tiny model (pretrained and cached here), or a user's diffusers directory / hub id."""
    if spec.name == "embedded":
        config = build_options(TinyModelConfig, spec.options, "base_model (embedded)")

        def build(tmp: Path) -> dict:
            return pretrain_tiny_model(tmp, config, quiet=ctx.quiet)

        return ctx.store.get_or_build(
            "base-model", STAGE_VERSIONS["base-model"], dataclasses.asdict(config), [], build
        )
    if spec.name == "diffusers":
        return external_model_artifact(str(spec.options.get("path", "")))
    raise UserError(f"unknown base_model {spec.name!r}; valid: embedded, diffusers (with options.path)")


def external_model_artifact(path_or_id: str) -> Artifact:
    """A model the user provides is not copied into the store; its key is the hash of its weights."""
    if not path_or_id:
        raise UserError("base model 'diffusers' needs a path: --base-model PATH_OR_ID")
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt"))
        if not (path / "model_index.json").exists():
            raise UserError(f"{path}: not a diffusers Stable Diffusion directory (no model_index.json)")
        digests = {str(p.relative_to(path)): sha256_file(p) for p in files}
        return Artifact("base-model", stable_hash(digests), path.resolve(), {"source": str(path.resolve()), "files": digests},
                        cached=True)
    if path.exists() or path_or_id.startswith((".", "/", "~")):
        raise UserError(f"--base-model {path_or_id}: no such directory")
    return Artifact("base-model", stable_hash({"hub_id": path_or_id}), Path(path_or_id),
                    {"source": f"hub:{path_or_id}", "files": "not hashed (hub id)"}, cached=True)


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
    if drift.is_zero or drift.train == "none":
        return NO_DRIFT
    return Drift(drift.delta, train=drift.train, sample="none")


def finetune_stage(ctx: Context, dataset: Dataset, data_art: Artifact, base: Artifact, method_spec: Component,
                   drift: Drift, seed: int) -> Artifact:
    method = METHODS.get(method_spec.name)
    options = build_options(MethodOptions, method_spec.options, f"method {method_spec.name}")
    train_drift = training_drift(drift)
    config = {"method": method.name, "options": dataclasses.asdict(options), "drift": train_drift.to_dict(), "seed": seed}

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


def load_finetuned(ctx: Context, base: Artifact, ft: Artifact, method_name: str) -> dict:
    parts = load_base(ctx, base)
    METHODS.get(method_name).apply(parts, load_file(str(ft.file("trained.safetensors"))))
    return parts


# --- generation ------------------------------------------------------------------------------------


def sampling_drift(drift: Drift) -> Drift:
    if drift.is_zero or drift.sample == "none":
        return NO_DRIFT
    return Drift(drift.delta, train="none", sample=drift.sample)


def generate_stage(ctx: Context, dataset: Dataset, data_art: Artifact, base: Artifact, ft: Artifact,
                   method_name: str, editor_spec: Component, drift: Drift, seed: int) -> Artifact:
    editor = EDITORS.get(editor_spec.name)
    options = build_options(EditorOptions, editor_spec.options, f"editor {editor_spec.name}")
    sample_drift = sampling_drift(drift)
    config = {"editor": editor_spec.name, "options": dataclasses.asdict(options), "drift": sample_drift.to_dict(), "seed": seed}

    def build(tmp: Path) -> dict:
        parts = load_finetuned(ctx, base, ft, method_name)
        test = load_table(data_art).split("test")
        out = editor(parts, dataset, test, sample_drift, options, seed, ctx.quiet)
        np.savez(tmp / "generated.npz", images=out.images.astype(np.float32), latents=out.latents.astype(np.float32),
                 source_index=out.source_index)
        (tmp / "prompts.json").write_text(json.dumps(list(out.prompts)))
        return {"n": len(out.images), "options": dataclasses.asdict(options)}

    return ctx.store.get_or_build("generate", STAGE_VERSIONS["generate"], config, [data_art, ft], build)


def load_generated(art: Artifact) -> dict[str, np.ndarray]:
    with np.load(art.file("generated.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --- latents for the report's channel-distribution figure ------------------------------------------


def latents_stage(ctx: Context, data_art: Artifact, base: Artifact, split: str = "test") -> Artifact:
    def build(tmp: Path) -> dict:
        from ldbench.generate.sampling import encode_images

        parts = load_base(ctx, base)
        images = load_table(data_art).split(split).images
        z = encode_images(parts, torch.from_numpy(images)).numpy()
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
        metrics = distribution_metrics(images, stats, extractor, evaluation, seed)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        return {"n_metrics": len(metrics)}

    return ctx.store.get_or_build("metrics", STAGE_VERSIONS["metrics"], config, [gen], build)
