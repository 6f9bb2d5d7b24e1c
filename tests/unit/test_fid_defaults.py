"""`ldbench fid A B --kid` with default settings equals torch_fidelity.calculate_metrics with its defaults
(same weights file), FID and KID alike: the KID subset seed defaults to torch-fidelity's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ldbench.cli import KID_DEFAULT_SEED, main

N, KID_SUBSET = 14, 8


def _pngs(folder, n: int, seed: int, shift: float):
    folder.mkdir()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48] / 48
    for i in range(n):
        img = 0.5 + 0.3 * np.sin(2 * np.pi * (rng.uniform(2, 6) * xx + rng.uniform())) + shift * (yy > 0.5)
        u8 = np.clip(np.rint((img + rng.normal(0, 0.05, img.shape)) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([u8] * 3, -1), "RGB").save(folder / f"{i:03d}.png")
    return folder


@pytest.mark.slow
def test_default_fid_and_kid_equal_torch_fidelity_defaults(tmp_path, capsys):
    import torch_fidelity

    from ldbench.metrics.extractors import write_random_inception_weights

    weights = write_random_inception_weights(tmp_path / "w.pth", seed=3)
    a, b = _pngs(tmp_path / "a", N, 1, 0.0), _pngs(tmp_path / "b", N - 2, 2, 0.2)
    assert main(["fid", str(a), str(b), "--kid", "--kid-subset-size", str(KID_SUBSET), "--json", "--no-cache",
                 "--inception-weights", str(weights), "--allow-unverified-weights"]) == 0
    ours = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, kid=True,
                                           kid_subset_size=KID_SUBSET, feature_extractor_weights_path=str(weights),
                                           cuda=False, cache=False, verbose=False)
    assert ours["fid"]["provenance"]["seeds"]["kid_subsets"] == KID_DEFAULT_SEED == 2020
    assert ours["fid"]["value"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert ours["kid"]["value"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert ours["kid"]["details"]["std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-5)
