"""What every record carries so a number can be traced: versions, commit, device, date, threads."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess

import torch

from ldbench import __version__
from ldbench.paths import REPO_ROOT

PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "torch-fidelity", "numpy", "scipy",
            "scikit-learn", "nilearn", "safetensors")


def git_commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str = "cpu", precision: str = "fp32") -> dict:
    from ldbench.device import describe

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "ldbench_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **describe(device, precision),  # device (type), device_index, device_name, precision
        "torch_threads": torch.get_num_threads(),
        "packages": versions,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def new_run_id() -> str:
    """A run's id: UTC time and 8 random hex digits, e.g. 20250101T120000Z-1a2b3c4d."""
    import secrets
    import time

    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def base_model_notes(base_meta: dict) -> list[str]:
    """A base model with random weights (sd14-random) says so in every cell's notes."""
    if not base_meta.get("random_weights"):
        return []
    return [f"Base model {base_meta.get('source')}: its numbers measure nothing but the code's run; never "
            "report them as results"]


def base_model_provenance(base_meta: dict, notes: list[str] = ()) -> dict:
    """What every record made with a base model says about it: its source, whether its weights are random
    (sd14-random), and the notes (with base_model_notes)."""
    return {"base_model_source": base_meta.get("source", "embedded tiny latent diffusion model (pretrained by ldbench)"),
            "base_model_random_weights": bool(base_meta.get("random_weights")),
            "notes": list(notes) + base_model_notes(base_meta)}
