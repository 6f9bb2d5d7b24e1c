"""`ldbench fid A B`: distribution metrics between an image folder and a folder or reference statistics.

Images are streamed through the extractor in batches: only the features (N x d) and the running
moments (d x d) are held, never the whole image set. Records have the same keys as results.json
(metric, value, ci95, n, extractor, details, provenance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldbench.data.images import ImageFolder
from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.metrics.math import RunningMoments
from ldbench.metrics.scores import (
    DistanceOptions,
    FeatureSet,
    feature_distance_metrics,
    prdc_metrics,
    standardise_like_frd,
)


@dataclass
class CompareOptions:
    kid: bool = False
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    prdc: bool = False
    prdc_k: int = 5
    bootstrap: int = 0
    seed: int = 0
    batch_size: int = 64
    # Features of image folders are cached here, keyed by the SHA-256 of the files' bytes and the
    # extractor's description (weights hash, resize and channel policy): scoring the same folder again
    # (another metric, another reference) extracts nothing. None: no cache.
    cache_dir: Path | None = None


def folder_features(folder: ImageFolder, extractor, batch_size: int = 64) -> FeatureSet:
    """Stream `folder` through `extractor` one batch at a time; mean/covariance via RunningMoments."""
    if len(folder) < 2:
        raise UserError(f"{folder.path}: at least 2 images are needed, found {len(folder)}")
    feats = np.empty((len(folder), extractor.dim), dtype=np.float64)
    moments = RunningMoments(extractor.dim)
    s = 0
    for batch in folder.iter_batches(batch_size):
        f = extractor.features(batch, batch_size=batch_size)
        feats[s : s + len(f)] = f
        moments.update(f)
        s += len(f)
    return FeatureSet(feats, moments.mean(), moments.covariance(), len(folder),
                      {"kind": "image-folder", **folder.describe()})


def stats_features(path: Path, extractor) -> FeatureSet:
    """Reference statistics from `ldbench stats build`, refused unless made with this extractor."""
    from ldbench.metrics.stats import check_compatible, load_reference_stats

    stats = load_reference_stats(path)
    desc = extractor.describe()
    expected = {"extractor": {k: desc[k] for k in ("name", "fingerprint", "resize_policy", "channel_policy")}}
    check_compatible(stats.meta, expected, path)
    source = {"kind": "reference-stats", "path": str(Path(path).resolve()), "sha256": sha256_file(path),
              "meta": stats.meta}
    return FeatureSet(stats.features, stats.mu, stats.sigma, int(stats.meta["n"]), source)


def cached_folder_features(folder: ImageFolder, extractor, batch_size: int, cache_dir: Path) -> FeatureSet:
    """folder_features through the content-addressed store: the key is the folder's content hash (the
    names and bytes of its files, in order) and the extractor's description, so the same files in another
    folder still hit and a changed file or extractor misses. Batch size is not in the key (features do not depend on it)."""
    from ldbench.store import Store

    content = folder.content_hash()
    config = {"images": content, "extractor": extractor.describe()}
    computed: dict = {}

    def build(tmp: Path) -> dict:
        fs = folder_features(folder, extractor, batch_size)
        np.savez(tmp / "features.npz", features=fs.features)
        computed["set"] = fs
        return {"n": fs.n}

    device = str(getattr(extractor, "device", "cpu"))  # GPU features are keyed apart from CPU ones
    art = Store(cache_dir, device=device).get_or_build("features", "1", config, [], build)
    if "set" in computed:
        fs = computed["set"]
    else:
        with np.load(art.file("features.npz"), allow_pickle=False) as z:
            feats = z["features"]
        moments = RunningMoments(feats.shape[1])
        moments.update(feats)
        fs = FeatureSet(feats, moments.mean(), moments.covariance(), len(feats),
                        {"kind": "image-folder", **folder.describe()})
    fs.source["features"] = {"cache": "hit" if art.cached else "computed", "key": art.key}
    return fs


def load_side(spec: str | Path, extractor, batch_size: int, cache_dir: Path | None = None) -> FeatureSet:
    p = Path(spec)
    if p.is_dir():
        folder = ImageFolder(p)
        if cache_dir is not None:
            return cached_folder_features(folder, extractor, batch_size, cache_dir)
        return folder_features(folder, extractor, batch_size)
    if p.suffix == ".npz":
        return stats_features(p, extractor)
    if not p.exists():
        raise UserError(f"{p}: no such folder or statistics file")
    raise UserError(f"{p}: expected an image folder or a reference statistics .npz")


def compare(a: str | Path, b: str | Path, extractor, opts: CompareOptions) -> list[dict]:
    """Metrics of folder `a` (the generated set, resampled by the bootstrap) against `b` (folder or .npz)."""
    if not Path(a).is_dir():
        raise UserError(f"{a}: the first argument must be an image folder")
    side_a = load_side(a, extractor, opts.batch_size, opts.cache_dir)
    side_b = load_side(b, extractor, opts.batch_size, opts.cache_dir)
    assert side_a.features is not None
    distance = DistanceOptions(opts.kid, opts.kid_subset_size, opts.kid_subsets, opts.bootstrap, opts.seed)
    records = feature_distance_metrics(side_a, side_b, family=extractor.family, extractor=extractor.name,
                                       options=distance)
    if opts.prdc:
        if side_b.features is None:
            raise UserError(f"{b}: the reference statistics hold no raw features, which PRDC needs")
        fa, fb = side_a.features, side_b.features
        if extractor.family == "radiomics":  # the same z-scoring as FRD, or raw radiomic scales dominate
            std = fb.std(axis=0)
            fa = standardise_like_frd(fa, fb.mean(axis=0), std)[0]
            fb = standardise_like_frd(fb, fb.mean(axis=0), std)[0]
        records += [{**r, "extractor": extractor.name} for r in prdc_metrics(fa, fb, opts.prdc_k)]
    provenance = {
        "command": "ldbench fid",
        "inputs": {"a": side_a.source, "b": side_b.source},
        "extractor": extractor.describe(),
        "seeds": {"bootstrap": opts.seed, "kid_subsets": opts.seed},
        "options": {"kid": opts.kid, "kid_subset_size": opts.kid_subset_size, "kid_subsets": opts.kid_subsets,
                    "prdc": opts.prdc, "prdc_k": opts.prdc_k, "bootstrap": opts.bootstrap,
                    "batch_size": opts.batch_size},
    }
    from ldbench import __version__

    provenance["ldbench_version"] = __version__
    keys = ("metric", "value", "ci95", "n", "extractor")
    return [{"metric": m["metric"], "value": m["value"], "ci95": m.get("ci95"), "n": m["n"],
             "extractor": m["extractor"], "details": {k: v for k, v in m.items() if k not in keys},
             "provenance": provenance} for m in records]
