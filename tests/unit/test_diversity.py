"""MS-SSIM diversity and memorization: known orderings, copies vs fresh samples, records and LD effects."""

import numpy as np
import pytest

from ldbench.metrics.diversity import (
    DiversityOptions,
    ImageSet,
    diversity_records,
    memorization_metrics,
    ms_ssim,
    msssim_diversity,
    nearest_distances,
)
from ldbench.metrics.scores import display_name, metric_info


def _blobs(n: int, seed: int, size: int = 64) -> np.ndarray:
    """Smooth random images in [0, 1]: a few Gaussian blobs each (a stand-in for slices)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, size, size))
    for k in range(n):
        for _ in range(4):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            out[k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(out / out.max(axis=(1, 2), keepdims=True), 0, 1)


def test_single_scale_equals_skimage_ssim():
    from skimage.metrics import structural_similarity

    a, b = _blobs(2, 0)
    b = np.clip(0.7 * b + 0.3 * a + np.random.default_rng(1).normal(0, 0.05, a.shape), 0, 1)
    ours = ms_ssim(a[None], b[None], DiversityOptions(scales=1))[0]
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ours == pytest.approx(ref, abs=1e-10)


def test_ms_ssim_bounds_and_scale_check():
    a = _blobs(3, 2)
    assert ms_ssim(a, a) == pytest.approx(np.ones(3))
    assert np.all(ms_ssim(a, a[::-1])[[0, 2]] < 1.0)
    with pytest.raises(ValueError, match="window"):
        ms_ssim(a, a, DiversityOptions(scales=5))  # 64 px / 16 = 4 px < 11 px window
    rgb = np.stack([a, a, a], axis=1)  # (n, C, H, W) is averaged over channels
    assert ms_ssim(rgb, rgb[::-1]) == pytest.approx(ms_ssim(a, a[::-1]))


def test_diversity_orders_identical_variants_and_noise():
    base = _blobs(1, 3)[0]
    rng = np.random.default_rng(4)
    identical = np.repeat(base[None], 12, axis=0)
    variants = np.clip(base[None] + rng.normal(0, 0.05, (12, 64, 64)), 0, 1)
    noise = rng.uniform(0, 1, (12, 64, 64))
    d_id, d_var, d_noise = (msssim_diversity(x)["value"] for x in (identical, variants, noise))
    assert d_id == pytest.approx(1.0)
    assert d_noise < 0.1 < d_var < d_id
    div = msssim_diversity(variants, DiversityOptions(rounds=3))
    assert len(div["pairs"]) == 36 and np.all(div["pairs"][:, 0] != div["pairs"][:, 1])
    assert np.all(np.bincount(div["pairs"].ravel()) == 6)  # every image in 2 * rounds pairs
    assert div["pseudo_values"].mean() == pytest.approx(div["value"])


def test_nearest_distances_plain_and_leave_one_out():
    pool = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    assert nearest_distances(np.array([[3.0, 4.0], [0.0, 2.0]]), pool) == pytest.approx([0.0, 1.0])
    assert nearest_distances(pool, pool, leave_one_out=True) == pytest.approx([1.0, np.sqrt(9 + 9), 1.0])


def test_copies_and_fresh_samples():
    rng = np.random.default_rng(5)
    train, heldout, fresh = (rng.normal(size=(n, 8)) for n in (300, 150, 150))
    copies = train[rng.choice(300, 150, replace=False)]
    opts = DiversityOptions(n_boot=100)
    ref_nn = nearest_distances(heldout, train)
    copied = memorization_metrics(nearest_distances(copies, train), ref_nn, opts)
    assert copied["copy_rate"][0] == 1.0 and copied["memorization_ratio"][0] < 1e-3
    new = memorization_metrics(nearest_distances(fresh, train), ref_nn, opts)
    ratio, ci, items = new["memorization_ratio"]
    assert ratio == pytest.approx(1.0, abs=0.1) and ci[0] <= ratio <= ci[1] and ci[0] < 1.0 < ci[1]
    assert items.mean() == pytest.approx(ratio)
    assert new["copy_rate"][0] < 0.15 and new["copy_rate"][2].mean() == pytest.approx(new["copy_rate"][0])


def test_diversity_records_and_items_feed_ld_effects():
    from ldbench.config import Evaluation
    from ldbench.drift import NO_DRIFT, Drift
    from ldbench.runner.effects import CellEvidence, ld_effects

    train_img, held_img, fresh_img = _blobs(60, 6), _blobs(30, 7), _blobs(30, 8)
    feats = {k: v.reshape(len(v), -1)[:, ::256] for k, v in
             (("train", train_img), ("held", held_img), ("fresh", fresh_img))}
    train, held = ImageSet(train_img, feats["train"]), ImageSet(held_img, feats["held"])
    opts = DiversityOptions(rounds=2, n_boot=50)
    fresh_recs, fresh_items = diversity_records(ImageSet(fresh_img, feats["fresh"]), train, held,
                                                extractor="domain", options=opts)
    copy_idx = np.arange(30)
    copy_recs, copy_items = diversity_records(ImageSet(train_img[copy_idx], feats["train"][copy_idx]), train, held,
                                              extractor="domain", options=opts)
    names = [r["metric"] for r in fresh_recs]
    assert names == ["msssim_diversity", "memorization_ratio:pixel", "copy_rate:pixel",
                     "memorization_ratio:feature", "copy_rate:feature"]
    for r in fresh_recs + copy_recs:
        assert set(r) >= {"metric", "value", "ci95", "n", "extractor"} and r["ci95"][0] <= r["value"] <= r["ci95"][1]
        assert fresh_items[f"mean__{r['metric']}"].mean() == pytest.approx(
            next(x for x in fresh_recs if x["metric"] == r["metric"])["value"])
        assert metric_info(r["metric"]).group == "diversity"
    by = {r["metric"]: r for r in copy_recs}
    assert by["copy_rate:pixel"]["value"] == 1.0 and by["memorization_ratio:feature"]["value"] < 1e-3
    assert by["memorization_ratio:pixel"]["extractor"] == "pixels" and by["copy_rate:feature"]["extractor"] == "domain"
    assert display_name("copy_rate:pixel", "pixels") == "Copy rate (pixel)"
    loo, _ = diversity_records(ImageSet(fresh_img), train, None, extractor="domain", options=opts)
    assert [r["metric"] for r in loo][1:] == ["memorization_ratio:pixel", "copy_rate:pixel"]
    assert loo[1]["reference"] == "train leave-one-out"

    def cell(drift, recs, items):
        return CellEvidence(dataset="d", method="m", editor="e", seed=0, drift=drift,
                            records=[{k: r[k] for k in ("metric", "value", "n", "extractor")} | {"details": {}}
                                     for r in recs], items=items, features=None, pairing="text2img")

    effects = ld_effects([cell(NO_DRIFT, fresh_recs, fresh_items),
                          cell(Drift(0.1, train="noise", sample="init"), copy_recs, copy_items)], Evaluation(bootstrap=100))
    by_effect = {e["metric"]: e for e in effects}
    assert set(by_effect) == set(names)
    assert by_effect["copy_rate:pixel"]["difference"] > 0.8 and by_effect["copy_rate:pixel"]["significant"]
    assert by_effect["memorization_ratio:pixel"]["significant"]
