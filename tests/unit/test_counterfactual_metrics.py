"""Counterfactual metrics: image similarity, CLD (against a literal loop of its definition), LPIPS, drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ldbench.errors import UserError
from ldbench.metrics.counterfactual_scores import (
    LPIPS_SKIPPED,
    PSNR_CAP_DB,
    Lpips,
    counterfactual_latent_divergence,
    image_similarity,
    lpips_from_config,
    null_edit_drift,
    reversibility,
)

DO_NOTHING_CLD = float(np.log(0.8 + 0.2 * np.e))  # div = 0: p1 = 0, p2 = 1


def _images(n: int = 3, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, size, size))


# --- image_similarity, drift -----------------------------------------------------------------------


def test_image_similarity_identical_images():
    x = _images()
    out = image_similarity(x, x.copy())
    np.testing.assert_allclose(out["ssim"], 1.0)
    assert np.all(out["psnr"] == PSNR_CAP_DB) and PSNR_CAP_DB == 100.0
    assert np.all(out["l1"] == 0.0)


def test_image_similarity_known_values():
    a = np.zeros((2, 8, 8))
    b = a.copy()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1, :4] = 1.0  # half the pixels differ by 1 -> MSE 0.5 -> 3.01 dB
    out = image_similarity(a, b)
    np.testing.assert_allclose(out["psnr"], [20.0, 10 * np.log10(2.0)])
    np.testing.assert_allclose(out["l1"], [0.1, 0.5])
    assert out["ssim"][1] < out["ssim"][0] <= 1.0


def test_image_similarity_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 8, 9\)"):
        image_similarity(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_similarity(np.zeros((1, 8, 8)), np.full((1, 8, 8), 2.0))
    with pytest.raises(ValueError, match="grayscale"):
        image_similarity(np.zeros((8, 8)), np.zeros((8, 8)))


def test_null_edit_drift_and_reversibility():
    x = np.full((2, 4, 4), 0.5)
    chain = [x + 0.01, x + 0.02, x + 0.10]
    drift = null_edit_drift(x, chain)
    assert sorted(drift) == [1, 2, 3]
    np.testing.assert_allclose(drift[1], [0.01, 0.01])
    np.testing.assert_allclose(drift[3], [0.10, 0.10])
    np.testing.assert_allclose(reversibility(x, x), [0.0, 0.0])
    with pytest.raises(ValueError, match="empty"):
        null_edit_drift(x, [])


# --- CLD -------------------------------------------------------------------------------------------


def _cld_loop(zf, zc, zr, fa, ca, ra):
    """The definition written out item by item (distance = mean |.| over latent dimensions)."""
    out = []
    for f, c, a_f, a_c in zip(zf, zc, fa, ca, strict=True):
        div = np.mean(np.abs(c - f))
        s_f = [np.mean(np.abs(r - f)) for r, a in zip(zr, ra, strict=True) if a == a_f]
        s_cf = [np.mean(np.abs(r - f)) for r, a in zip(zr, ra, strict=True) if a == a_c]
        p1 = np.mean(np.array(s_cf) <= div)
        p2 = np.mean(np.array(s_f) >= div)
        out.append(np.log(0.8 * np.exp(p1) + 0.2 * np.exp(p2)))
    return np.array(out)


def test_cld_matches_item_by_item_definition():
    rng = np.random.default_rng(0)
    zr = rng.normal(size=(40, 6))
    ra = rng.integers(0, 3, size=40)
    zf, fa = zr[:15], ra[:15]  # the reference code's setting: the factuals are the pool
    ca = (fa + 1) % 3
    zc = zf + rng.normal(scale=rng.uniform(0.1, 2.0, size=(15, 1)), size=(15, 6))
    out = counterfactual_latent_divergence(zf, zc, zr, fa, ca, ra)
    np.testing.assert_allclose(out["cld"], _cld_loop(zf, zc, zr, fa, ca, ra), rtol=0, atol=1e-12)
    assert out["mean"] == pytest.approx(np.mean(out["cld"]))
    assert out["n_skipped"] == 0 and out["valid"].all()
    assert np.all((out["cld"] >= 0.0) & (out["cld"] <= 1.0))


def test_cld_edit_that_changes_nothing_gets_documented_value():
    rng = np.random.default_rng(1)
    zr = rng.normal(size=(20, 4))
    ra = np.repeat([0, 1], 10)
    zf = zr[:5]
    out = counterfactual_latent_divergence(zf, zf.copy(), zr, ra[:5], np.ones(5, int), ra)
    np.testing.assert_allclose(out["p1"], 0.0)
    np.testing.assert_allclose(out["p2"], 1.0)
    np.testing.assert_allclose(out["cld"], DO_NOTHING_CLD)
    assert DO_NOTHING_CLD == pytest.approx(0.29539, abs=1e-5)


def test_cld_monotone_in_edit_size_beyond_own_class():
    # 1-D latents, f at 0; own-class reals at 0.1..0.5, target-class reals at 1..10.
    zr = np.concatenate([np.linspace(0.1, 0.5, 5), np.arange(1.0, 11.0)])[:, None]
    ra = np.array([0] * 5 + [1] * 10)
    steps = np.array([0.6, 1.5, 2.5, 4.5, 7.5, 10.5])
    n = len(steps)
    out = counterfactual_latent_divergence(
        np.zeros((n, 1)), steps[:, None], zr, np.zeros(n, int), np.ones(n, int), ra
    )
    np.testing.assert_allclose(out["p2"], 0.0)  # farther than every own-class real
    np.testing.assert_allclose(out["p1"], [0.0, 0.1, 0.2, 0.4, 0.7, 1.0])
    assert out["cld"][0] == pytest.approx(0.0, abs=1e-15)  # the best possible edit
    assert np.all(np.diff(out["cld"]) > 0)
    assert out["cld"][-1] == pytest.approx(np.log(0.8 * np.e + 0.2))
    # Inside the own class, a smaller edit keeps more own-class reals beyond it: p2 rises, CLD rises.
    small = counterfactual_latent_divergence(
        np.zeros((2, 1)), np.array([[0.45], [0.15]]), zr, np.zeros(2, int), np.ones(2, int), ra
    )
    np.testing.assert_allclose(small["p2"], [0.2, 0.8])
    assert small["cld"][1] > small["cld"][0]


def test_cld_skips_items_without_reference_group():
    zr = np.array([[0.0], [1.0], [2.0]])
    ra = np.array([0, 1, 1])
    out = counterfactual_latent_divergence(
        np.zeros((2, 1)), np.ones((2, 1)), zr, np.array([0, 0]), np.array([1, 7]), ra
    )
    assert out["valid"].tolist() == [True, False] and out["n_skipped"] == 1
    assert np.isnan(out["cld"][1]) and out["mean"] == pytest.approx(out["cld"][0])
    with pytest.raises(ValueError, match="no item"):
        counterfactual_latent_divergence(np.zeros((1, 1)), np.ones((1, 1)), zr, [5], [6], ra)
    with pytest.raises(ValueError, match="differs"):
        counterfactual_latent_divergence(np.zeros((2, 1)), np.ones((3, 1)), zr, [0, 0], [1, 1], ra)


# --- LPIPS -----------------------------------------------------------------------------------------


ALEX_CHANNELS = (64, 192, 384, 256, 256)


def _write_linear(path: Path, channels: tuple[int, ...] = ALEX_CHANNELS) -> Path:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(1)
    save_file({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(channels)}, str(path))
    return path


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory) -> tuple[Path, Path]:
    """Random alexnet features (torchvision key names) and random non-negative lpips linear layers."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    tmp = tmp_path_factory.mktemp("lpips")
    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()
        }
    gen = torch.Generator().manual_seed(0)
    backbone = tmp / "alexnet.safetensors"
    save_file(
        {f"features.{k}": 0.05 * torch.randn(s, generator=gen) for k, s in shapes.items()}, str(backbone)
    )
    return backbone, _write_linear(tmp / "alex_lin.safetensors")


def test_lpips_from_random_weights(lpips_files):
    backbone, linear = lpips_files
    model, message = lpips_from_config(str(backbone), str(linear))
    assert isinstance(model, Lpips) and "alex" in message
    x = _images(n=2, size=64, seed=1)
    y = _images(n=2, size=64, seed=2)
    assert np.all(model(x, x) == 0.0)
    d_xy, d_yx = model(x, y), model(y, x)
    assert d_xy.shape == (2,) and d_xy.dtype == np.float64
    assert np.all(d_xy > 0.0)
    np.testing.assert_allclose(d_xy, d_yx, rtol=1e-6)
    # A small perturbation is closer than an unrelated image.
    near = np.clip(x + 0.01, 0.0, 1.0)
    assert np.all(model(x, near) < d_xy)


def test_lpips_config_errors(lpips_files, tmp_path):
    assert lpips_from_config(None, None) == (None, LPIPS_SKIPPED)
    backbone, linear = lpips_files
    with pytest.raises(UserError, match="missing.safetensors"):
        lpips_from_config(str(tmp_path / "missing.safetensors"), str(linear))
    with pytest.raises(UserError, match="lpips_linear"):
        lpips_from_config(str(backbone), None)
    bad_linear = _write_linear(tmp_path / "bad.safetensors", (64, 192, 100, 256, 256))
    with pytest.raises(UserError, match=r"lin2\.model\.1\.weight.*\(1, 100, 1, 1\)"):
        Lpips.from_files(backbone, bad_linear)
    import torch

    torch.save({"foo": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match=r"foreign\.pth do not fit torchvision alexnet"):
        Lpips.from_files(tmp_path / "foreign.pth", linear)
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match=r"junk\.pth as a torch"):
        Lpips.from_files(tmp_path / "junk.pth", linear)
    with pytest.raises(UserError, match="torchvision vgg16"):
        Lpips.from_files(backbone, linear, net="vgg")
