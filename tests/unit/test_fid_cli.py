"""`ldbench fid A B`: folders and statistics files, image loading rules, errors, JSON records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldbench.cli import main
from ldbench.data.images import ImageFolder, read_image
from ldbench.metrics.extractors import create_extractor
from ldbench.metrics.stats import build_reference_stats, save_reference_stats

N = 24
KID = ["--kid", "--kid-subset-size", "10", "--kid-subsets", "20"]


def _write_pngs(folder: Path, n: int, seed: int, shift: float = 0.0, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    for i in range(n):
        img = 0.4 + 0.2 * np.sin(2 * np.pi * rng.uniform(2, 6) * xx) + shift * (yy > 0.5)
        img = np.clip(img + rng.normal(0, 0.05, (size, size)), 0, 1)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fid")
    return {"a": _write_pngs(root / "a", N, 1), "b": _write_pngs(root / "b", N, 2, shift=0.2), "root": root}


@pytest.fixture(scope="module")
def domain():
    return create_extractor("domain")


def _stats_file(folder: Path, extractor, target: Path, tamper: dict | None = None) -> Path:
    images = ImageFolder(folder).load()
    meta = {"dataset": "folder", "dataset_version": "1", "split": "test", "content_hash": "x", "ldbench_version": "0"}
    stats = build_reference_stats(images, extractor, meta, keep_features=True)
    if tamper:
        stats.meta["extractor"].update(tamper)
    save_reference_stats(stats, target)
    return target


def _json(capsys, argv: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_folder_vs_folder_table_and_json_records(folders, capsys):
    assert main(["fid", str(folders["a"]), str(folders["b"]), "--extractor", "domain", *KID]) == 0
    table = capsys.readouterr().out
    assert "FD" in table and "KD" in table
    records = _json(capsys, ["fid", str(folders["a"]), str(folders["b"]), "--extractor", "domain", *KID,
                             "--prdc", "--bootstrap", "5", "--json"])
    assert [r["metric"] for r in records] == ["fd", "kd", "precision", "recall", "density", "coverage"]
    for r in records:
        assert set(r) == {"metric", "value", "ci95", "n", "extractor", "details", "provenance"}
        assert r["extractor"] == "domain" and r["n"] == N
    fd, kd = records[0], records[1]
    assert fd["value"] > 0 and fd["ci95"][0] <= fd["ci95"][1]
    assert kd["details"]["kid_subset_size"] == 10
    prov = fd["provenance"]
    assert prov["inputs"]["a"]["content_sha256"] and prov["inputs"]["a"]["channel_policy"]
    assert prov["extractor"]["name"] == "domain" and prov["seeds"] == {"bootstrap": 2020, "kid_subsets": 2020}
    assert all(0.0 <= r["value"] <= 1.0 for r in records[2:] if r["metric"] != "density")


def test_folder_vs_stats_equals_folder_vs_folder(folders, domain, capsys, tmp_path):
    stats = _stats_file(folders["b"], domain, tmp_path / "b_domain.npz")
    base = ["--extractor", "domain", *KID, "--json"]
    by_folder = _json(capsys, ["fid", str(folders["a"]), str(folders["b"]), *base])
    by_stats = _json(capsys, ["fid", str(folders["a"]), str(stats), *base])
    assert by_stats[0]["value"] == pytest.approx(by_folder[0]["value"], rel=1e-9, abs=1e-12)
    assert by_stats[1]["value"] == pytest.approx(by_folder[1]["value"], rel=1e-12, abs=1e-15)
    assert by_stats[0]["provenance"]["inputs"]["b"]["kind"] == "reference-stats"


def test_mismatched_stats_are_refused_naming_the_field(folders, domain, capsys, tmp_path):
    stats = _stats_file(folders["b"], domain, tmp_path / "bad.npz", tamper={"fingerprint": "0" * 64})
    capsys.readouterr()
    assert main(["fid", str(folders["a"]), str(stats), "--extractor", "domain"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ldbench: error:") and "extractor.fingerprint" in err[0]


def test_16_bit_png_is_scaled_by_its_maximum_not_saturated(tmp_path):
    arr = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    x = read_image(tmp_path / "x.png")
    np.testing.assert_allclose(x, arr / 65535.0)
    assert 0.6 < x[1, 0] < 0.62  # an 8-bit path would give 1.0 (saturated) or 156/255


def test_rgb_becomes_gray_by_the_channel_mean(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 90
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    np.testing.assert_allclose(read_image(tmp_path / "c.png"), np.full((2, 2), 60 / 255))


def _one_line_error(capsys, argv: list[str], *needles: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ldbench: error:"), err
    for needle in needles:
        assert needle in err[0]


def test_bad_inputs_exit_2_with_one_line(folders, capsys, tmp_path):
    good = str(folders["b"])
    corrupt = _write_pngs(tmp_path / "corrupt", 3, 5)
    (corrupt / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _one_line_error(capsys, ["fid", str(corrupt), good, "--extractor", "domain"], "001.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ["fid", str(empty), good, "--extractor", "domain"], "no PNG or JPEG")
    mixed = _write_pngs(tmp_path / "mixed", 3, 6)
    _write_pngs(tmp_path / "big", 1, 7, size=80)
    (tmp_path / "big" / "000.png").rename(mixed / "zzz.png")
    _one_line_error(capsys, ["fid", str(mixed), good, "--extractor", "domain"], "zzz.png", "differs")
    _one_line_error(capsys, ["fid", str(folders["a"]), good, "--extractor", "domain", "--kid"], "subset size")
    _one_line_error(capsys, ["fid", str(folders["a"]), good, "--extractor", "nope"], "nope")


def test_folders_are_streamed_in_batches(folders, domain, monkeypatch):
    """Images go through the extractor one batch at a time; only features are kept."""
    from ldbench.metrics import compare

    seen: list[int] = []
    real = domain.features

    def spy(images, batch_size=64):
        seen.append(len(images))
        return real(images, batch_size)

    monkeypatch.setattr(domain, "features", spy)
    side = compare.folder_features(ImageFolder(folders["a"]), domain, batch_size=5)
    assert seen == [5, 5, 5, 5, 4] and side.features.shape == (N, domain.dim)
    np.testing.assert_allclose(side.mu, side.features.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(side.sigma, np.cov(side.features, rowvar=False), atol=1e-10)


def test_prdc_metrics_records():
    from ldbench.metrics.scores import METRICS, prdc_metrics

    rng = np.random.default_rng(0)
    recs = prdc_metrics(rng.normal(size=(40, 4)), rng.normal(size=(50, 4)), k=5)
    assert [r["metric"] for r in recs] == ["precision", "recall", "density", "coverage"]
    assert all(METRICS[r["metric"]].higher_is_better for r in recs)
    assert recs[0]["n"] == 40 and recs[0]["n_reference"] == 50 and recs[0]["k"] == 5


def test_fid_help_documents_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["fid", "--help"])
    text = capsys.readouterr().out
    assert "--kid-subset-size" in text and "reference statistics" in text and "16-bit" in text


@pytest.mark.parametrize("n1,n2,d", [(30, 40, 64), (300, 200, 16), (20, 25, 512)])
def test_frechet_from_features_equals_the_covariance_route(n1, n2, d):
    from ldbench.metrics.math import frechet_distance, frechet_distance_from_features, gaussian_stats

    rng = np.random.default_rng(n1)
    a, b = rng.normal(size=(n1, d)), rng.normal(0.2, 1.3, size=(n2, d))
    expected = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-9)


def test_folder_features_are_cached_by_content_hash(folders, capsys, tmp_path):
    """Second scoring of the same files extracts nothing (cache hit, same numbers); a changed file or
    --no-cache computes again."""
    cache = tmp_path / "cache"
    argv = ["fid", str(folders["a"]), str(folders["b"]), "--extractor", "domain", "--json", "--cache-dir", str(cache)]
    first = _json(capsys, argv)
    assert first[0]["provenance"]["inputs"]["a"]["features"]["cache"] == "computed"
    second = _json(capsys, argv)
    assert second[0]["provenance"]["inputs"]["a"]["features"]["cache"] == "hit"
    assert second[0]["provenance"]["inputs"]["b"]["features"]["cache"] == "hit"
    assert second[0]["value"] == first[0]["value"]
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in sorted(folders["a"].iterdir()):
        (copy / p.name).write_bytes(p.read_bytes())
    img = np.asarray(Image.open(copy / "000.png")).copy()
    img[0, 0] = 255 - img[0, 0]
    Image.fromarray(img).save(copy / "000.png")
    changed = _json(capsys, ["fid", str(copy), str(folders["b"]), "--extractor", "domain", "--json", "--cache-dir",
                             str(cache)])
    assert changed[0]["provenance"]["inputs"]["a"]["features"]["cache"] == "computed"
    off = _json(capsys, argv + ["--no-cache"])
    assert "features" not in off[0]["provenance"]["inputs"]["a"] and off[0]["value"] == first[0]["value"]
