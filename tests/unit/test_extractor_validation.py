"""ldbench.metrics.disturbances / validation and `ldbench extractors validate`: the disturbance test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from ldbench.cli import main
from ldbench.errors import UserError
from ldbench.metrics import validation
from ldbench.metrics.disturbances import DISTURBANCES, disturb
from ldbench.metrics.extractors import EXTRACTORS
from ldbench.metrics.validation import (
    ValidationOptions,
    ValidationSets,
    judge,
    markdown_table,
    validate_extractor,
)


def _smooth(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Smooth random images in [0, 1] with a bright disc: stand-ins for real scans."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.random((n, size, size)), sigma=(0, 3, 3))
    x = (x - x.min()) / (x.max() - x.min())
    yy, xx = np.mgrid[:size, :size] - size / 2
    return np.clip(0.3 * x + 0.6 * (yy**2 + xx**2 < (size / 3) ** 2), 0, 1)


OTHER = np.linspace(0.5, 1, 10)[:, None, None] * np.linspace(0, 1, 48)[None, None]  # another "dataset" and size


@pytest.mark.parametrize("name", list(DISTURBANCES))
def test_disturbance_is_seeded_keeps_shape_and_range_and_grows_with_level(name):
    x = _smooth(8, seed=1)
    levels = DISTURBANCES[name].levels
    assert len(levels) >= 4 and list(levels) == sorted(set(levels))
    a, b = disturb(name, x, 3, seed=5, other=OTHER), disturb(name, x, 3, seed=5, other=OTHER)
    np.testing.assert_array_equal(a, b)
    distances = []
    for level in range(len(levels) + 1):
        y = disturb(name, x, level, seed=5, other=OTHER)
        assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
        distances.append(float(np.abs(y - x).mean()))
    assert distances[0] == 0.0
    assert all(q > p for p, q in zip(distances, distances[1:], strict=False)), distances
    assert np.array_equal(x, _smooth(8, seed=1))  # the input is not modified


def test_random_disturbances_depend_on_the_seed():
    x = _smooth(8, seed=2)
    for name in ("gaussian_noise", "black_rectangles", "swirl", "salt_and_pepper", "contamination"):
        assert not np.array_equal(disturb(name, x, 2, seed=0, other=OTHER), disturb(name, x, 2, seed=1, other=OTHER))


def test_judge_needs_a_strict_rise_and_all_but_the_first_level_above_the_floor():
    assert judge([0.5, 2.0, 3.0, 4.0], floor=1.0)["passed"]  # the mildest level may sit under the floor
    assert not judge([0.5, 0.9, 3.0, 4.0], floor=1.0)["passed"]  # level 2 under the floor
    assert not judge([2.0, 3.0, 3.0, 4.0], floor=1.0)["passed"]  # not strictly increasing
    assert not judge([4.0, 3.0, 2.0, 1.5], floor=1.0)["passed"]


class _Fake:
    """Features from a function of the images; describe() as the real extractors."""

    family = "fake"
    fingerprint = "0" * 64
    resize_policy = "none"
    channel_policy = "gray"

    def __init__(self, name: str, fn) -> None:
        self.name, self._fn = name, fn
        self.dim = fn(np.zeros((1, 8, 8))).shape[1]

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return self._fn(np.asarray(images, dtype=np.float64))

    def describe(self) -> dict:
        return {"name": self.name, "family": self.family, "fingerprint": self.fingerprint, "dim": self.dim}


def _high_frequency(x: np.ndarray) -> np.ndarray:
    lap = np.abs(x[:, 1:-1, 1:-1] * 4 - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return np.stack([np.log(lap.mean(axis=(1, 2)) + 1e-3), np.log((lap > 0.2).mean(axis=(1, 2)) + 1e-3)], axis=1)


def _mean_intensity(x: np.ndarray) -> np.ndarray:
    m = x.mean(axis=(1, 2))
    return np.stack([m, m**2], axis=1)


def _bright(n: int, seed: int, offset: float = 0.0) -> np.ndarray:
    """Bright smooth images of varying brightness. Zero-mean noise, clipped, and salt-and-pepper pull their
    mean intensity towards 0.5: a mean-intensity extractor then sees noisy held-out images (brighter than the
    reference by `offset`) as *closer* to the reference than the clean ones."""
    return 0.5 + 0.3 * _smooth(n, seed) + np.random.default_rng(seed).uniform(0, 0.1, (n, 1, 1)) + offset


GOOD = _Fake("hf", _high_frequency)
NOISE_ONLY = ["gaussian_noise", "salt_and_pepper"]


def test_an_extractor_whose_distance_rises_passes_and_a_blind_one_fails():
    ref, held = _bright(16, seed=3), _bright(16, seed=4, offset=0.05)
    sets = ValidationSets(ref, held, OTHER)
    good = validate_extractor(GOOD, sets, ValidationOptions(seed=0, disturbances=NOISE_ONLY, dataset="unit"))
    assert good["passed"] and good["n"] == 16 and good["extractor"]["name"] == "hf"
    assert set(good["disturbances"]) == set(NOISE_ONLY)
    noise_only = ValidationOptions(seed=0, disturbances=NOISE_ONLY)
    blind = validate_extractor(_Fake("mean", _mean_intensity), sets, noise_only)
    assert not blind["passed"]
    constant = validate_extractor(_Fake("const", lambda x: np.ones((len(x), 2))), sets, noise_only)
    assert not constant["passed"]
    assert "FAIL" in markdown_table(blind) and "PASS" in markdown_table(good)
    json.dumps(good, allow_nan=False)


@pytest.fixture
def fake_cli(monkeypatch):
    """The validate command on small synthetic splits, two fake extractors and the noise disturbances only."""
    from ldbench import commands_extractors

    images = {("synth-brain", "test"): _bright(20, 5), ("synth-brain", "val"): _bright(14, 6, 0.05),
              ("synth-cxr", "test"): OTHER}
    monkeypatch.setattr(commands_extractors, "_split_images", lambda ctx, name, split: images[(name, split)])

    def sets(ctx, name, n):  # the val split (14) topped up to the test split's size (20), as floor_images does
        test, held = images[(name, "test")], np.concatenate([images[(name, "val")], _bright(6, 7, 0.05)])
        if n is not None and n > len(test):
            raise UserError(f"--n must be in 2..{len(test)}, got {n}")
        held = held[: len(test) if n is None else n]
        return test, held, "val + rendered"

    monkeypatch.setattr(commands_extractors, "_validation_sets", sets)
    monkeypatch.setattr(validation, "DISTURBANCES", {k: DISTURBANCES[k] for k in NOISE_ONLY})
    monkeypatch.setitem(EXTRACTORS._items, "fake-good", lambda: GOOD)
    monkeypatch.setitem(EXTRACTORS._items, "fake-mean", lambda: _Fake("mean", _mean_intensity))


@pytest.mark.parametrize(("extractor", "code"), [("fake-good", 0), ("fake-mean", 1)])
def test_cli_writes_three_files_and_exits_by_the_verdict(fake_cli, tmp_path, capsys, extractor, code):
    out = tmp_path / "v"
    assert main(["extractors", "validate", "--dataset", "synth-brain", "--extractor", extractor,
                 "--out", str(out), "--seed", "1"]) == code
    result = json.loads((out / "validation.json").read_text())
    assert result["n"] == 20 and result["n_reference"] == 20 and result["seed"] == 1
    assert result["splits"]["heldout_images"] == "val + rendered"
    assert result["dataset"] == "synth-brain" and result["passed"] == (code == 0)
    assert (out / "validation.md").read_text().count("\n| ") == 1 + len(NOISE_ONLY)
    assert (out / "validation.png").read_bytes()[:4] == b"\x89PNG"
    assert ("PASS" if code == 0 else "FAIL") in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--dataset", "nope"], ["--dataset", "synth-brain", "--extractor", "nope"],
                                  ["--dataset", "synth-brain", "--n", "1"],
                                  ["--dataset", "synth-brain", "--n", "21", "--extractor", "fake-good"]])
def test_cli_bad_input_is_one_line_and_exit_2(fake_cli, tmp_path, capsys, args):
    assert main(["extractors", "validate", "--out", str(tmp_path / "v"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ldbench: error:") and "\n" not in err


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["synth-brain", "synth-cxr"])
def test_shipped_domain_extractor_passes_the_disturbance_test(dataset, tmp_path):
    assert main(["extractors", "validate", "--dataset", dataset, "--out", str(tmp_path)]) == 0
