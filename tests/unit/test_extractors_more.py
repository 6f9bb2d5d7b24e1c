"""inception-clean (clean-fid resize), radiomics (FRD), dinov2 and clip (local transformers weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ldbench.errors import UserError
from ldbench.metrics.extractors import (
    clean_resize_299,
    create_extractor,
    write_random_inception_weights,
)


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("inception-clean") / "random-inception.pth")


def test_inception_clean_resizes_like_clean_fid_and_is_batch_invariant(random_inception_weights):
    opts = {"weights_path": random_inception_weights, "allow_unverified": True}
    clean = create_extractor("inception-clean", **opts)
    plain = create_extractor("inception", **opts)
    assert clean.family == "inception" and clean.resize_policy == "clean-fid-pil-bicubic-299"
    assert clean.name == "inception-clean-unverified" and clean.fingerprint == plain.fingerprint
    x = np.random.default_rng(0).random((3, 48, 48))
    f1, f3 = clean.features(x, batch_size=1), clean.features(x, batch_size=3)
    np.testing.assert_allclose(f1, f3, rtol=1e-4, atol=1e-5)
    assert not np.allclose(f3, plain.features(x, batch_size=3), rtol=1e-3, atol=1e-4)
    # at 299 x 299 no resize happens: the trunk equals torch-fidelity's own forward
    u8 = torch.from_numpy(np.rint(np.random.default_rng(1).random((1, 299, 299)) * 255).astype(np.uint8))
    rgb = u8[:, None].expand(-1, 3, -1, -1).contiguous()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                         feature_extractor_weights_path=str(random_inception_weights)).eval()
    with torch.no_grad():
        (ref,) = theirs(rgb)
        mine = plain._trunk(u8[:, None].to(torch.float32))
    torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [32, 64, 301])
def test_inception_gray_path_equals_torch_fidelity_forward(random_inception_weights, size):
    """The one-channel resize and stem give torch-fidelity's forward of the gray image repeated to RGB."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    plain = create_extractor("inception", weights_path=random_inception_weights, allow_unverified=True)
    # a fresh torch-fidelity model from the same (test-made) file: no folded BatchNorm, no channels_last
    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                         feature_extractor_weights_path=str(random_inception_weights)).eval()
    u8 = torch.from_numpy(np.rint(np.random.default_rng(size).random((2, size, size)) * 255).astype(np.uint8))
    with torch.no_grad():
        (ref,) = theirs(u8[:, None].expand(-1, 3, -1, -1).contiguous())
        mine = plain._pool3_of_gray(u8[:, None])
    torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
    assert (ref - mine).abs().max() < 1e-4 * ref.abs().max()


def test_clean_resize_matches_clean_fid():
    from cleanfid.resize import build_resizer

    u8 = np.rint(np.random.default_rng(2).random((40, 40)) * 255).astype(np.uint8)
    theirs = build_resizer("clean")(np.stack([u8] * 3, axis=-1))
    np.testing.assert_array_equal(clean_resize_299(u8), theirs[..., 0])


def _texture_folders(root: Path, shifts: dict[str, float], n: int, seed: int) -> None:
    """Folders of n 32x32 8-bit PNGs: sinusoidal texture + a vertical ramp of the folder's shift + noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32] / 32
    for name, shift in shifts.items():
        (root / name).mkdir()
        for i in range(n):
            img = np.clip(0.4 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * xx) + shift * yy
                          + rng.normal(0, 0.05, xx.shape), 0, 1)
            Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(root / name / f"{i}.png")


def test_radiomics_frd_via_cli(tmp_path, capsys):
    pytest.importorskip("radiomics", reason="radiomics extractor not installed: pip install 'ldbench[radiomics]'")
    pytest.importorskip("frd_score", reason="frd-score not installed: pip install 'ldbench[radiomics]'")
    import json

    from ldbench.cli import main

    _texture_folders(tmp_path, {"a": 0.0, "b": 0.3}, n=6, seed=3)
    capsys.readouterr()
    assert main(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--extractor", "radiomics", "--json"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    assert rec["metric"] == "frd" and np.isfinite(rec["value"])
    assert "z-score" in rec["details"]["standardisation"]
    assert rec["provenance"]["extractor"]["family"] == "radiomics"


def _tiny_dinov2(path: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       patch_size=14, image_size=224)
    Dinov2Model(cfg).save_pretrained(path)
    return path


def _tiny_clip(path: Path) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8)
    CLIPVisionModel(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("name,make", [("dinov2", _tiny_dinov2), ("clip", _tiny_clip)])
def test_transformers_extractors_load_local_weights(name, make, tmp_path, monkeypatch):
    monkeypatch.delenv(f"LDBENCH_{name.upper()}_WEIGHTS", raising=False)
    with pytest.raises(UserError, match=f"weights_path.*LDBENCH_{name.upper()}_WEIGHTS"):
        create_extractor(name)
    path = make(tmp_path / name)
    ex = create_extractor(name, weights_path=path)
    assert ex.family == name and ex.dim == 32 and len(ex.fingerprint) == 64
    x = np.random.default_rng(0).random((4, 40, 40))
    f1, f4 = ex.features(x, batch_size=1), ex.features(x, batch_size=4)
    assert f4.shape == (4, 32) and np.all(np.isfinite(f4))
    np.testing.assert_allclose(f1, f4, rtol=1e-4, atol=1e-5)
    monkeypatch.setenv(f"LDBENCH_{name.upper()}_WEIGHTS", str(path))
    assert create_extractor(name).fingerprint == ex.fingerprint


def test_frd_equals_frd_score_on_the_same_images(tmp_path):
    """ldbench's FRD (radiomics extractor + z-scoring against the reference + log d_F^2) equals frd-score
    v1's compute_frd with the reference as its first (norm_ref=d1) distribution; frd-score casts features
    to float32 before normalising, hence the tolerance."""
    pytest.importorskip("radiomics", reason="radiomics extractor not installed: pip install 'ldbench[radiomics]'")
    frd = pytest.importorskip("frd_score.frd", reason="frd-score not installed: pip install 'ldbench[radiomics]'")
    from ldbench.metrics.compare import CompareOptions, compare

    _texture_folders(tmp_path, {"gen": 0.0, "ref": 0.3}, n=8, seed=5)
    theirs = frd.compute_frd([str(tmp_path / "ref"), str(tmp_path / "gen")], norm_ref="d1", num_workers=1)
    (ours,) = compare(tmp_path / "gen", tmp_path / "ref", create_extractor("radiomics"), CompareOptions())
    assert ours["metric"] == "frd"
    assert ours["value"] == pytest.approx(theirs, abs=1e-4)
