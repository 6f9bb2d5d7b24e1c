"""Throughput of the image readers and of whole adapters (read + preprocess to 64 x 64), in images/s.

Writes fixture files of realistic sizes to a temporary directory (deleted afterwards), then times:
  reader rows:  ldbench.data.readers.read_image alone (decode to float64, NaN/Inf check)
  pipeline rows: read + default preprocessing policies (Pipeline.run) to image_size 64
  adapter rows: <adapter>.prepare() on a fixture tree in its layout (CSV parsing, checks, splits)
  "xN thr" rows: the same on N reader threads (readers.ordered_map; adapters' and ImageFolder's
                 `workers` option), next to the 1-thread row measured in the same run
  folder rows:   ldbench.data.images.ImageFolder.iter_batches (the `ldbench fid` reader), 64 per batch

Every rate is also printed as a ratio to an anchor (a fixed numpy workload timed in the same run,
in "units"/s), so runs on a contended or different CPU can be compared by the ratio column.

    python benchmarks/perf/bench_readers.py [--n 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ldbench.data import create_dataset
from ldbench.data.adapters import fixtures
from ldbench.data.images import ImageFolder
from ldbench.data.preprocess import Pipeline
from ldbench.data.readers import default_workers, ordered_map, read_image


def _files(tmp: Path, n: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(0)
    out: dict[str, list[Path]] = {k: [] for k in ("png 8-bit 512x512", "png 16-bit 512x512", "jpg 390x320",
                                                  "dicom 16-bit 512x512", "nifti.gz 96x112x96")}
    for i in range(n):
        img = fixtures.phantom_2d(rng, (512, 512))
        p = tmp / f"a{i}.png"
        fixtures.write_png(p, img)
        out["png 8-bit 512x512"].append(p)
        p = tmp / f"b{i}.png"
        fixtures.write_png(p, img, bits=16)
        out["png 16-bit 512x512"].append(p)
        p = tmp / f"c{i}.jpg"
        fixtures.write_jpg(p, fixtures.phantom_2d(rng, (390, 320)))
        out["jpg 390x320"].append(p)
        p = tmp / f"d{i}.dcm"
        fixtures.write_dicom(p, img)
        out["dicom 16-bit 512x512"].append(p)
        if i < max(4, n // 4):
            p = tmp / f"e{i}.nii.gz"
            fixtures.write_nifti(p, fixtures.phantom_volume(rng, (96, 112, 96)))
            out["nifti.gz 96x112x96"].append(p)
    return out


def _anchor() -> float:
    """Units/s of a fixed CPU workload (sort + FFT of a fixed 2**18-element array), best of 5."""
    x = np.random.default_rng(0).standard_normal(1 << 18)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.sort(x)
        np.fft.rfft(x)
        best = min(best, time.perf_counter() - t0)
    return 1.0 / best


def _rate(fn, items, workers: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in ordered_map(fn, items, workers):
        pass
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="files per 2-D format (NIfTI: n/4)")
    ap.add_argument("--workers", type=int, default=default_workers(),
                    help="reader threads for the xN rows (default min(4, CPUs))")
    args = ap.parse_args()
    w = args.workers
    pipe = Pipeline.build()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = _files(tmp, args.n)
        anchor = _anchor()
        print(f"anchor: {anchor:.1f} units/s (numpy sort + rfft of 2**18 floats, best of 5)")
        print(f"{'what':38s} {'images/s':>10s} {'x anchor':>10s}")

        def row(what: str, rate: float) -> None:
            print(f"{what:38s} {rate:10.1f} {rate / anchor:10.4f}")

        print(f"reader threads for the x{w} rows: {w} (CPUs: {os.cpu_count()})")
        for kind, paths in files.items():
            row("read  " + kind, _rate(read_image, paths))
            row("read+preprocess " + kind, _rate(lambda p: pipe.run(read_image(p), 64), paths))
            row(f"read+preprocess x{w} thr " + kind, _rate(lambda p: pipe.run(read_image(p), 64), paths, w))
        for kind in ("png 8-bit 512x512", "png 16-bit 512x512"):
            folder = tmp / ("folder " + kind)
            folder.mkdir()
            for p in files[kind]:
                (folder / p.name).symlink_to(p)
            for workers in (1, w):
                t0 = time.perf_counter()
                n = sum(len(b) for b in ImageFolder(folder, workers=workers).iter_batches(64))
                row(f"folder x{workers} thr " + kind, n / (time.perf_counter() - t0))
        for name, writer in fixtures.WRITERS.items():
            root = tmp / ("CheXpert-v1.0-small" if name == "chexpert" else name) / "root"
            kw = {"n_subjects": 12} if name == "manifest" else {"n_subjects": 10}
            writer(root, **kw)
            create_dataset(name, root=str(root), workers=1).prepare()  # warm-up: imports, page cache
            for workers in (1, w):
                t0 = time.perf_counter()
                table = create_dataset(name, root=str(root), workers=workers).prepare().table
                row(f"adapter x{workers} thr {name} ({len(table)})", len(table) / (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
