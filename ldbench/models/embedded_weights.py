"""The embedded base model's weights, shipped with ldbench: a cold run loads them instead of pretraining.

`weights/embedded-base.safetensors` holds what `tiny.pretrain_components` makes from the default
TinyModelConfig: the autoencoder, text-encoder and UNet tensors (prefixed `vae.`, `text_encoder.`,
`unet.`), the scaled latents of 512 natural-image crops (`natural_latents`, for the report's latent
figure), and as JSON metadata the config and the pretraining summary. Its SHA-256 is pinned here and
checked on every load. The file was made by, and is remade by,

    ldbench pretrain-embedded --out embedded-base.safetensors

which pretrains on the CPU at a fixed thread count (PRETRAIN_THREADS: CPU kernels sum in a
thread-dependent order), prints how long it took, and says whether its file equals the shipped one.
Only the default config is shipped; any other `base_model: {name: embedded, options: ...}` is pretrained
in the run that needs it (and cached), exactly as before.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ldbench.errors import UserError
from ldbench.fsutil import atomic_write
from ldbench.hashing import sha256_file

WEIGHTS_FILE = Path(__file__).parent / "weights" / "embedded-base.safetensors"
WEIGHTS_SHA256 = "9fc57c379b299ee0981e26837b83c090c70c6d596bbc7c25d5d582735715c64b"
FORMAT = "ldbench-embedded-base-1"
PRETRAIN_THREADS = 2
SOURCE = "embedded tiny latent diffusion model (ldbench's shipped weights, SHA-256 {sha})"


def ships(config) -> bool:
    """True when `config` is the default TinyModelConfig, the one the shipped weights were pretrained with."""
    from ldbench.models.tiny import TinyModelConfig

    return dataclasses.asdict(config) == dataclasses.asdict(TinyModelConfig())


def write(path: Path, parts, natural_latents: torch.Tensor, config, summary: dict) -> None:
    """Write the three networks, the natural latents, the config and the summary to one safetensors file."""
    from safetensors.torch import save_file

    tensors = {f"{name}.{key}": value.detach().to("cpu", torch.float32).contiguous()
               for name, module in parts.networks().items() for key, value in module.state_dict().items()}
    tensors["natural_latents"] = natural_latents.detach().to("cpu", torch.float32).contiguous()
    # One metadata entry: safetensors writes a metadata mapping in arbitrary key order, which would make
    # two writes of the same weights differ byte for byte.
    description = {"format": FORMAT, "config": dataclasses.asdict(config), "summary": summary}
    metadata = {"ldbench": json.dumps(description, sort_keys=True)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load(tokenizer_dir: Path, config, path: Path = WEIGHTS_FILE, sha256: str | None = None):
    """(components, natural latents, summary) from a weights file written by `write`, after checking its
    SHA-256 (the pinned one for the shipped file) and that it was pretrained with `config`."""
    from safetensors import safe_open

    from ldbench.models.tiny import build_components

    expected = WEIGHTS_SHA256 if sha256 is None else sha256
    found = sha256_file(path) if Path(path).is_file() else "missing"
    if found != expected:
        raise UserError(f"{path}: SHA-256 {found[:16]}... is not the pinned {expected[:16]}...; the embedded "
                        "model's weights are damaged: reinstall ldbench, or remake them with "
                        "`ldbench pretrain-embedded`")
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("ldbench", "{}"))
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    if meta.get("format") != FORMAT or meta.get("config") != dataclasses.asdict(config):
        raise UserError(f"{path}: not the embedded model's weights for this config (format {meta.get('format')!r})")
    parts = build_components(tokenizer_dir, seed=config.seed, vae_width=config.vae_width)
    for name, module in parts.networks().items():
        prefix = f"{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        module.eval().requires_grad_(False)
    summary = meta["summary"]
    parts.vae.register_to_config(scaling_factor=summary["scaling_factor"])
    return parts, tensors["natural_latents"], {**summary, "source": SOURCE.format(sha=expected[:16]),
                                               "weights_sha256": expected}


def pretrain_to_file(out: Path, quiet: bool = False, config=None) -> dict:
    """Pretrain `config` (default: the default TinyModelConfig) at PRETRAIN_THREADS threads and write its
    weights file to `out`: {seconds, threads, sha256, shipped_sha256, identical, difference (from the shipped
    file, when the default config's remade file is not identical to it; else None)}."""
    import tempfile
    import time

    from ldbench.models.tiny import TinyModelConfig, pretrain_components

    config, threads = config or TinyModelConfig(), torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ldbench-tokenizer-") as tok:
            parts, natural_latents, summary = pretrain_components(Path(tok), config, quiet)
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    write(out, parts, natural_latents, config, summary)
    sha = sha256_file(out)
    identical = sha == WEIGHTS_SHA256
    shipped = not identical and ships(config) and WEIGHTS_FILE.is_file()
    return {"seconds": seconds, "threads": PRETRAIN_THREADS, "sha256": sha, "shipped_sha256": WEIGHTS_SHA256,
            "identical": identical, "difference": difference(out, WEIGHTS_FILE) if shipped else None}


def difference(path: Path, reference: Path) -> dict:
    """How the tensors of weights file `path` differ from `reference`'s: {tensors (in both), differ (how many
    are not equal), max_abs (largest |a - b| of any element), max_rel and worst (the largest ||a - b|| / ||b||
    and its tensor), only_in (names in one file only, or of another shape)}. A file remade with another torch
    version or thread count differs in the last bits (kernels sum in another order); this says by how much."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as a, safe_open(str(reference), framework="pt") as b:
        names_a, names_b = set(a.keys()), set(b.keys())
        only_in = sorted(names_a ^ names_b)
        result = {"tensors": 0, "differ": 0, "max_abs": 0.0, "max_rel": 0.0, "worst": None, "only_in": only_in}
        for name in sorted(names_a & names_b):
            x, y = a.get_tensor(name).double(), b.get_tensor(name).double()
            if x.shape != y.shape:
                only_in.append(name)
                continue
            result["tensors"] += 1
            if torch.equal(x, y):
                continue
            delta = x - y
            rel = float(delta.norm() / y.norm()) if y.norm() > 0 else float("inf")
            result["differ"] += 1
            result["max_abs"] = max(result["max_abs"], float(delta.abs().max()))
            if rel > result["max_rel"]:
                result["max_rel"], result["worst"] = rel, name
    return result
