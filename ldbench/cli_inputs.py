"""Command-line inputs checked before any work: KEY=VALUE options, model paths, writable directories."""

from __future__ import annotations

from pathlib import Path

from ldbench.errors import UserError
from ldbench.paths import resolve_cache_dir


def writable_dirs(out_dir: Path, cache_dir_arg) -> Path:
    """The output and cache directories are writable (checked before any work); returns the cache dir."""
    from ldbench.validate import writable_dir

    cache_dir = resolve_cache_dir(cache_dir_arg)
    writable_dir(out_dir, "output directory (--out)")
    writable_dir(cache_dir, "cache directory (--cache-dir or $LDBENCH_CACHE_DIR)")
    return cache_dir


def check_model_paths(args) -> None:
    """--base-model given as a local path, and --inception-weights, exist (a hub id is left to diffusers)."""
    base = getattr(args, "base_model", None)
    if base and (base.startswith(("/", ".", "~")) or Path(base).expanduser().exists()):
        path = Path(base).expanduser()
        if not (path / "model_index.json").is_file():
            raise UserError(f"--base-model {base}: not a diffusers Stable Diffusion directory (no model_index.json); "
                            "pass the directory holding model_index.json, or a hub id")
    weights = getattr(args, "inception_weights", None)
    if weights and not Path(weights).expanduser().is_file():
        raise UserError(f"--inception-weights {weights}: no such file; pass the torch-fidelity weights .pth file")


def key_values(pairs: list[str], flag: str) -> dict:
    from ldbench.yamlload import load_yaml_text

    out = {}
    for pair in pairs:
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise UserError(f"{flag} {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        out[key.strip()] = load_yaml_text(value, f"{flag} {pair[:80]!r}")
    return out
