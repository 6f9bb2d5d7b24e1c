"""Benchmark: the bootstrap CIs of FID and KID with one BLAS thread (ldbench) against numpy's default threads.

    python benchmarks/perf/bench_bootstrap.py [--boot 200] [--busy-seconds 60]

The generated set: 120 rows of the shipped synth-brain Inception reference features, resampled and with
Gaussian noise (sd 0.05) added, against that reference (120 x 2048), the smoke suite's sizes. For FID
(ldbench.metrics.extrapolation.ReferenceFD: an n x r SVD per resample) and KID (50-image subsets, 100 of
them, torch-fidelity's draw) it times `bootstrap_values` (one BLAS thread, ldbench) and the same resamples
with numpy's default BLAS threads (the anchor), and checks that both give the same bits. It measures twice:
with the cores idle, and with a second process running torch matrix products on every core for at most
--busy-seconds (what a stage's torch threads or a second worker do to the bootstrap). Prints seconds and the
ratio anchor / ldbench (> 1: ldbench faster). Not a test: run by hand.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from ldbench.metrics.extrapolation import ReferenceFD
from ldbench.metrics.intervals import bootstrap_values
from ldbench.metrics.math import kernel_inception_distance

REFERENCE = Path(__file__).resolve().parents[2] / "reference_stats" / "synth-brain_test_inception.npz"


def _keep_cores_busy(seconds: float) -> None:
    import torch

    a = torch.randn(512, 512)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = torch.tanh(a @ a.T / 512)


def _default_threads(statistic, features: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The anchor: bootstrap_values' resamples, without its BLAS thread limit."""
    rng = np.random.default_rng(seed)
    n = len(features)
    return np.array([float(statistic(features[rng.integers(0, n, size=n)])) for _ in range(n_boot)])


def _time(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    values = fn()
    return time.perf_counter() - start, values


def measure(label: str, statistics: dict, features: np.ndarray, n_boot: int) -> bool:
    same = True
    for name, stat in statistics.items():
        t_anchor, v_anchor = _time(lambda s=stat: _default_threads(s, features, n_boot, 0))
        t_ours, v_ours = _time(lambda s=stat: bootstrap_values(s, features, n_boot, 0))
        identical = bool(np.array_equal(v_anchor, v_ours))
        same &= identical
        print(f"{label:>5} {name:>4}: default threads {t_anchor:7.2f} s, one BLAS thread {t_ours:6.2f} s, "
              f"ratio {t_anchor / t_ours:6.1f}x, values identical: {identical}")
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples (the smoke suite's 200)")
    ap.add_argument("--busy-seconds", type=float, default=120.0, help="limit on the competing process")
    args = ap.parse_args()

    with np.load(REFERENCE, allow_pickle=False) as z:
        ref = z["features"].astype(np.float64)
    rng = np.random.default_rng(0)
    generated = ref[rng.integers(0, len(ref), len(ref))] + rng.normal(0.0, 0.05, ref.shape)
    fd = ReferenceFD(ref.mean(axis=0), np.cov(ref, rowvar=False))
    statistics = {"FID": fd, "KID": lambda f: kernel_inception_distance(f, ref, 50, 100, 0)[0]}
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"{len(generated)} generated x {ref.shape[1]}-d against {len(ref)} reference rows, B = {args.boot}; "
          f"BLAS libraries (threads): {blas}")

    same = measure("idle", statistics, generated, args.boot)
    busy = mp.get_context("spawn").Process(target=_keep_cores_busy, args=(args.busy_seconds,))
    busy.start()
    time.sleep(5)  # its torch import
    try:
        same &= measure("busy", statistics, generated, args.boot)
    finally:
        busy.terminate()
        busy.join()
    if not same:
        raise SystemExit("the one-thread bootstrap gave other values than numpy's default threads")


if __name__ == "__main__":
    main()
