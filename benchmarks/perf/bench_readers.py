"""Throughput of the image readers and of whole adapters (read + preprocess to 64 x 64), in images/s.

Writes fixture files of realistic sizes to a temporary directory (deleted afterwards), then times:
  reader rows:  ldbench.data.readers.read_image alone (decode to float64, NaN/Inf check)
  pipeline rows: read + default preprocessing policies (Pipeline.run) to image_size 64
  adapter rows: <adapter>.prepare() on a fixture tree in its layout (CSV parsing, checks, splits)

    python benchmarks/perf/bench_readers.py [--n 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ldbench.data import create_dataset
from ldbench.data.adapters import fixtures
from ldbench.data.preprocess import Pipeline
from ldbench.data.readers import read_image


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


def _rate(fn, items) -> float:
    t0 = time.perf_counter()
    for x in items:
        fn(x)
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="files per 2-D format (NIfTI: n/4)")
    args = ap.parse_args()
    pipe = Pipeline.build()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = _files(tmp, args.n)
        print(f"{'what':38s} {'images/s':>10s}")
        for kind, paths in files.items():
            print(f"{'read  ' + kind:38s} {_rate(read_image, paths):10.1f}")
            print(f"{'read+preprocess ' + kind:38s} {_rate(lambda p: pipe.run(read_image(p), 64), paths):10.1f}")
        for name, writer in fixtures.WRITERS.items():
            root = tmp / ("CheXpert-v1.0-small" if name == "chexpert" else name) / "root"
            kw = {"n_subjects": 12} if name == "manifest" else {"n_subjects": 10}
            writer(root, **kw)
            t0 = time.perf_counter()
            table = create_dataset(name, root=str(root)).prepare().table
            rate = len(table) / (time.perf_counter() - t0)
            print(f"{'adapter ' + name + f' ({len(table)} images)':38s} {rate:10.1f}")


if __name__ == "__main__":
    main()
