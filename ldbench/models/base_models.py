"""The base-model registry: how a suite's `base_model: {name, options}` becomes a stored model.

    embedded     the tiny latent diffusion model pretrained on natural images (ldbench.models.tiny); its
                 default config loads the weights ldbench ships (ldbench.models.embedded_weights)
    diffusers    a user's diffusers Stable Diffusion directory or hub id (options.path)
    sd14-random  Stable Diffusion v1.4's architecture with seeded random weights (ldbench.models.sd14):
                 for tests and timings only, never results

Each entry checks its options at suite load time (`check`, a one-line UserError) and gives the base-model
artifact (`artifact`): built once into the store (the options are the cache key) or, for a user's model,
keyed by the hash of its weights. Every artifact's directory loads through ldbench.models.load_components.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ldbench import validate as v
from ldbench.errors import UserError
from ldbench.hashing import sha256_file, stable_hash
from ldbench.registry import Registry


@dataclass(frozen=True)
class BaseModel:
    description: str
    check: Callable[[dict], None]  # options -> None, or a one-line UserError
    artifact: Callable  # (store, options, quiet) -> Artifact
    random_weights: bool = False
    # options -> pretraining steps at batch 16, for the cost model (ldbench suites); None: nothing is trained
    pretrain_steps: Callable[[dict], float] | None = None


BASE_MODELS: Registry[BaseModel] = Registry("base_model")


BASE_MODEL_VERSION = "2"  # the base-model stage's version (part of its cache key; the runner reads it here)


def _stage_version() -> str:
    return BASE_MODEL_VERSION


def _options(cls, options: dict, name: str):
    from ldbench.config import build_options

    return build_options(cls, options, name)


# --- embedded ---------------------------------------------------------------------------------------


def check_tiny_config(config) -> None:
    v.seed(config.seed, "seed")
    v.int_in(config.image_size, "image_size", 16, 1024, example=64)
    if config.image_size % 8:
        raise UserError(f"image_size must be a multiple of 8, got {config.image_size}; e.g. image_size: 64")
    v.int_in(config.vae_crop, "vae_crop", 8, config.image_size, example=32)
    v.int_in(config.vae_width, "vae_width", 8, 512, example=32)
    if config.vae_width % 8:
        raise UserError(f"vae_width must be a multiple of 8 (the autoencoder's group norm), got {config.vae_width}")
    for name in ("vae_steps", "unet_steps"):
        v.int_in(getattr(config, name), name, 0, example=400)
    for name in ("batch_size", "crops_per_image"):
        v.positive_int(getattr(config, name), name)
    for name in ("vae_lr", "unet_lr"):
        v.positive_float(getattr(config, name), name, example=1e-3)


def _check_embedded(options: dict) -> None:
    from ldbench.models.tiny import TinyModelConfig

    check_tiny_config(_options(TinyModelConfig, options, "embedded"))


def _embedded_artifact(store, options: dict, quiet: bool):
    from ldbench.models.tiny import TinyModelConfig, build_tiny_model

    config = _options(TinyModelConfig, options, "base_model (embedded)")
    return store.get_or_build("base-model", _stage_version(), dataclasses.asdict(config), [],
                              lambda tmp: build_tiny_model(tmp, config, quiet=quiet))


def _embedded_pretrain_steps(options: dict) -> float:
    """Pretraining steps at batch 16, an autoencoder step weighted by its width's cost (~(w/16)^1.5: a
    width-32 step measured 2.7x a width-16 one); 0 when the config's weights are shipped and only loaded."""
    from ldbench.models import embedded_weights
    from ldbench.models.tiny import TinyModelConfig

    config = _options(TinyModelConfig, options, "base_model (embedded)")
    if embedded_weights.ships(config):
        return 0.0
    return (config.vae_steps * (config.vae_width / 16) ** 1.5 + config.unet_steps) * config.batch_size / 16


BASE_MODELS.add("embedded", BaseModel("tiny latent diffusion model pretrained on natural images (offline, default; "
                                      "ships pretrained, other options pretrain in the run)",
                                      _check_embedded, _embedded_artifact, pretrain_steps=_embedded_pretrain_steps))


# --- diffusers --------------------------------------------------------------------------------------


def _check_diffusers(options: dict) -> None:
    path = options.get("path", "")
    if not isinstance(path, str) or not path:
        raise UserError(f"diffusers needs options.path (a directory or hub id), got {path!r}")
    if set(options) - {"path"}:
        raise UserError(f"diffusers: unknown option(s) {', '.join(sorted(map(str, set(options) - {'path'})))}; "
                        "valid: path")


def external_model_artifact(path_or_id: str):
    """A model the user provides is not copied into the store; its key is the hash of its weights."""
    from ldbench.store import Artifact

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


BASE_MODELS.add("diffusers", BaseModel("a diffusers Stable Diffusion directory or hub id (options.path)",
                                       _check_diffusers,
                                       lambda store, options, quiet: external_model_artifact(str(options.get("path", "")))))


# --- sd14-random ------------------------------------------------------------------------------------


def _sd14_config(options: dict):
    from ldbench.models.sd14 import NAME, SD14Config

    config = _options(SD14Config, options, NAME)
    config.check()
    return config


def _sd14_artifact(store, options: dict, quiet: bool):
    from ldbench.models.sd14 import NAME, save_sd14_random

    config = _sd14_config(options)
    return store.get_or_build("base-model", _stage_version(), {"model": NAME, **dataclasses.asdict(config)}, [],
                              lambda tmp: save_sd14_random(tmp, config))


BASE_MODELS.add("sd14-random", BaseModel(
    "Stable Diffusion v1.4's architecture and CLIP tokenizer with seeded RANDOM weights: for tests and "
    "timings only, not results (options: seed, width_divisor, text_layers, image_size)",
    lambda options: _sd14_config(options) and None, _sd14_artifact, random_weights=True))


def random_weights(name: str) -> bool:
    return name in BASE_MODELS and BASE_MODELS.get(name).random_weights
