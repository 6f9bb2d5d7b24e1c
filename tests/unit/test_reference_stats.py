"""ldbench.metrics.stats: self-describing reference statistics, compatibility checks, manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ldbench.errors import UserError
from ldbench.metrics.stats import (
    ReferenceStats,
    build_reference_stats,
    check_compatible,
    load_reference_stats,
    save_reference_stats,
    verify_manifest,
    write_manifest,
)


class BlockMeans:
    """A tiny deterministic extractor: means of 4 x 4 blocks of the image (16-d)."""

    name = "block-means"
    family = "domain"
    fingerprint = "f" * 64
    resize_policy = "none"
    channel_policy = "gray"
    dim = 16
    calls: list[int]

    def __init__(self) -> None:
        self.calls = []

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        self.calls.append(len(images))
        n, h, w = images.shape
        blocks = images.reshape(n, 4, h // 4, 4, w // 4).mean(axis=(2, 4))
        return blocks.reshape(n, 16).astype(np.float64)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "fingerprint": self.fingerprint,
            "resize_policy": self.resize_policy,
            "channel_policy": self.channel_policy,
            "dim": self.dim,
            "dtype": "float64",
        }


META_BASE = {
    "dataset": "synth-brain",
    "dataset_version": "1",
    "split": "test",
    "content_hash": "0123456789abcdef",
    "ldbench_version": "0.1.0",
}


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, size=(40, 16, 16)).astype(np.float32)


@pytest.fixture
def stats(images) -> ReferenceStats:
    return build_reference_stats(images, BlockMeans(), META_BASE, keep_features=True, batch_size=8)


def test_build_fills_in_the_description(stats, images):
    m = stats.meta
    assert m["n"] == 40 and m["dtype"] == "float64" and m["split"] == "test"
    assert m["extractor"]["fingerprint"] == "f" * 64 and m["extractor"]["resize_policy"] == "none"
    assert stats.features.shape == (40, 16) and stats.mu.shape == (16,) and stats.sigma.shape == (16, 16)
    np.testing.assert_allclose(stats.sigma, np.cov(stats.features, rowvar=False), rtol=1e-12)


def test_streaming_build_gives_the_same_moments(stats, images):
    ex = BlockMeans()
    streamed = build_reference_stats(images, ex, META_BASE, keep_features=False, batch_size=2)
    assert streamed.features is None
    assert len(ex.calls) > 1  # processed in chunks
    np.testing.assert_allclose(streamed.mu, stats.mu, rtol=1e-12)
    np.testing.assert_allclose(streamed.sigma, stats.sigma, rtol=1e-9, atol=1e-15)


def test_save_load_round_trip(stats, tmp_path: Path):
    path = tmp_path / "ref.npz"
    save_reference_stats(stats, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.json", "ref.npz"]  # no temp files left
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert json.loads((tmp_path / "ref.json").read_text()) == stats.meta
    loaded = load_reference_stats(path)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.testing.assert_array_equal(loaded.features, stats.features)
    assert loaded.meta == stats.meta


def test_round_trip_without_features(images, tmp_path: Path):
    s = build_reference_stats(images, BlockMeans(), META_BASE, keep_features=False)
    save_reference_stats(s, tmp_path / "ref.npz")
    assert load_reference_stats(tmp_path / "ref.npz").features is None


def test_check_compatible_accepts_the_same_origin(stats):
    check_compatible(stats.meta, {**META_BASE, "extractor": BlockMeans().describe()})


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("extractor.fingerprint", lambda e: {**e, "extractor": {**e["extractor"], "fingerprint": "a" * 64}}),
        (
            "extractor.resize_policy",
            lambda e: {**e, "extractor": {**e["extractor"], "resize_policy": "bicubic"}},
        ),
        ("content_hash", lambda e: {**e, "content_hash": "fedcba9876543210"}),
    ],
)
def test_check_compatible_names_the_differing_field(stats, field, change):
    expected = change({**META_BASE, "extractor": BlockMeans().describe()})
    with pytest.raises(UserError) as exc:
        check_compatible(stats.meta, expected, source="reference_stats/x.npz")
    msg = str(exc.value)
    assert field in msg and "reference_stats/x.npz" in msg and "ldbench stats build" in msg
    assert "\n" not in msg


def test_check_compatible_names_every_differing_field(stats):
    expected = {**META_BASE, "split": "val", "extractor": {**BlockMeans().describe(), "name": "domain"}}
    with pytest.raises(UserError) as exc:
        check_compatible(stats.meta, expected)
    assert "split=test" in str(exc.value) and "split=val" in str(exc.value)
    assert "extractor.name=block-means" in str(exc.value)


def test_corrupt_npz_is_a_user_error_naming_the_file(stats, tmp_path: Path):
    path = tmp_path / "ref.npz"
    save_reference_stats(stats, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="ref.npz"):
        load_reference_stats(path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(UserError, match="ref.npz"):
        load_reference_stats(path)


def test_missing_or_mismatched_sidecar_is_a_user_error(stats, tmp_path: Path):
    path = tmp_path / "ref.npz"
    save_reference_stats(stats, path)
    side = tmp_path / "ref.json"
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "n": 39}))
    with pytest.raises(UserError, match="does not match"):
        load_reference_stats(path)
    side.unlink()
    with pytest.raises(UserError, match="sidecar"):
        load_reference_stats(path)
    with pytest.raises(UserError, match="not found"):
        load_reference_stats(tmp_path / "absent.npz")


def test_shapes_inconsistent_with_meta_are_a_user_error(stats, tmp_path: Path):
    path = tmp_path / "ref.npz"
    save_reference_stats(stats, path)
    # an npz from elsewhere (no embedded description) whose arrays disagree with the sidecar
    np.savez(path, mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(UserError, match="extractor.dim=16"):
        load_reference_stats(path)
    np.savez(path, mu=stats.mu, sigma=stats.sigma, features=stats.features[:10])
    with pytest.raises(UserError, match="n=40"):
        load_reference_stats(path)


def test_manifest_detects_modified_missing_and_extra_files(stats, tmp_path: Path):
    save_reference_stats(stats, tmp_path / "a.npz")
    save_reference_stats(stats, tmp_path / "b.npz")
    write_manifest(tmp_path)
    listed = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(listed) == ["a.json", "a.npz", "b.json", "b.npz"]
    assert verify_manifest(tmp_path) == []

    side = tmp_path / "a.json"
    side.write_text(side.read_text().replace('"test"', '"val"'))
    (tmp_path / "b.npz").unlink()
    (tmp_path / "c.json").write_text("{}")
    problems = verify_manifest(tmp_path)
    assert any(p.startswith("a.json") and "SHA-256" in p for p in problems)
    assert any(p.startswith("b.npz") and "missing" in p for p in problems)
    assert any(p.startswith("c.json") and "not listed" in p for p in problems)
    assert len(problems) == 3


def test_missing_manifest_is_a_problem(tmp_path: Path):
    assert len(verify_manifest(tmp_path)) == 1
