"""A method's checkpoint option: the safetensors file of weights trained elsewhere, for one cell's δ."""

from __future__ import annotations

from pathlib import Path

from ldbench.drift import Drift
from ldbench.errors import UserError


def checkpoint_file(method_name: str, checkpoint: str | dict, drift: Drift) -> Path | None:
    """The weights file a cell loads instead of training (TrainingOptions.checkpoint), or None."""
    if not checkpoint:
        return None
    if isinstance(checkpoint, dict):
        delta = drift.delta if isinstance(drift.delta, tuple) else float(drift.delta)
        matches = [v for k, v in checkpoint.items() if _same_delta(k, delta)]
        if not matches:
            raise UserError(f"method {method_name}: options.checkpoint has no entry for δ={drift.label} "
                            f"(keys: {', '.join(map(str, checkpoint))}); add one, e.g. '{delta}': PATH")
        checkpoint = matches[0]
    path = Path(str(checkpoint)).expanduser()
    if path.is_dir():
        for candidate in (path / "unet" / "diffusion_pytorch_model.safetensors", path / "diffusion_pytorch_model.safetensors"):
            if candidate.is_file():
                return candidate
        raise UserError(f"{path}: no unet/diffusion_pytorch_model.safetensors in this directory; give the "
                        "method's .safetensors file or a diffusers pipeline / UNet directory")
    if not path.is_file():
        raise UserError(f"method {method_name}: checkpoint {path} does not exist")
    if path.suffix != ".safetensors":
        raise UserError(f"{path}: checkpoints are read as .safetensors only (no pickle); convert it first")
    return path


def _same_delta(key: object, delta) -> bool:
    try:
        if isinstance(delta, tuple):
            return tuple(float(x) for x in str(key).strip("()[] ").split(",")) == delta
        return float(key) == delta
    except ValueError:
        return False
