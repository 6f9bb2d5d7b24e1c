"""benchmarks/autoencoder_capacity.py: the recipe variants it trains, and its refusal of impossible ones."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from ldbench.models.tiny import build_components
from ldbench.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "autoencoder_capacity.py"


def _module():
    spec = importlib.util.spec_from_file_location("autoencoder_capacity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_greyed_turns_the_chosen_share_of_crops_grey_and_leaves_the_rest():
    greyed = _module().greyed
    images = torch.rand(400, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = greyed(images, 0.5)
    grey = (out[:, 0] == out[:, 1]).all(dim=(1, 2)) & (out[:, 1] == out[:, 2]).all(dim=(1, 2))
    assert 160 < int(grey.sum()) < 240
    assert torch.equal(out[~grey], images[~grey])
    luminance = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert torch.allclose(out[grey, 0], luminance[grey], atol=1e-6)
    assert torch.equal(greyed(images, 0.5), out)  # its own generator: the same crops every time
    assert torch.equal(greyed(images, 0.0), images)
    assert bool((greyed(images, 1.0)[:, 0] == greyed(images, 1.0)[:, 2]).all())


@pytest.mark.parametrize("args", [["--grey-fraction", "1.5"], ["--steps", "0"], ["--lr", "-1"],
                                  ["--crops-per-image", "0"], ["--refine-steps", "-1"]])
def test_an_impossible_recipe_is_refused_in_one_line_before_any_training(args):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("--grey-fraction in [0, 1]")


def test_refined_latents_decode_closer_to_the_scan_than_the_encoders(tmp_path):
    module = _module()
    torch.manual_seed(0)
    parts = build_components(tmp_path, seed=0, vae_width=8)  # untrained: far from any scan
    parts.vae.eval()
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    images = np.stack([(0.5 + 0.4 * np.sin(3 * xx + k) * np.cos(2 * yy)) for k in range(4)]).astype(np.float32)
    encoder_only = module.reconstructed(parts, images)
    assert np.array_equal(module.refined(parts, images, 0), encoder_only)
    refined = module.refined(parts, images, 40)
    assert refined.shape == images.shape and refined.min() >= 0 and refined.max() <= 1
    assert np.mean((refined - images) ** 2) < 0.75 * np.mean((encoder_only - images) ** 2)
