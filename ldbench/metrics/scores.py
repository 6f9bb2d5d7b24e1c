"""Scores of a generated image set against reference statistics, with their metadata and CIs.

Metric metadata lives here with the metrics (display name, direction, format); the report, tables and
regression checks render from it. A Fréchet or kernel distance is called FID / KID only when the
features are Inception's; with any other extractor it is FD / KD and names its extractor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ldbench.metrics.math import (
    bootstrap_ci,
    frechet_distance,
    gaussian_stats,
    kernel_inception_distance,
    rank_warning,
)


@dataclass(frozen=True)
class MetricInfo:
    display: str
    higher_is_better: bool
    fmt: str
    description: str


METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo("FID", False, "{:.2f}", "Fréchet Inception Distance to the reference split"),
    "kid": MetricInfo("KID", False, "{:.4f}", "Kernel Inception Distance (polynomial kernel, unbiased MMD²)"),
    "fd": MetricInfo("FD", False, "{:.3f}", "Fréchet distance on the named (non-Inception) extractor's features"),
    "kd": MetricInfo("KD", False, "{:.4f}", "Kernel distance on the named (non-Inception) extractor's features"),
}


def metric_names(extractor_family: str) -> tuple[str, str]:
    return ("fid", "kid") if extractor_family == "inception" else ("fd", "kd")


def display_name(metric: str, extractor: str) -> str:
    info = METRICS.get(metric)
    base = info.display if info else metric
    return base if metric in ("fid", "kid") and extractor == "inception" else f"{base} [{extractor}]"


def distribution_metrics(images: np.ndarray, stats, extractor, evaluation, seed: int) -> list[dict]:
    """Fréchet and kernel distance of `images` to `stats`, each with a seeded bootstrap 95% CI over
    resamples of the generated set (B = evaluation.bootstrap)."""
    feats = extractor.features(images, batch_size=evaluation.batch_size)
    n, d = feats.shape
    note = rank_warning(n, d)
    if note:
        warnings.warn(note, stacklevel=2)
    ref_mu, ref_sigma = stats.mu, stats.sigma

    def fd(f: np.ndarray) -> float:
        mu, sigma = gaussian_stats(f)
        return frechet_distance(mu, sigma, ref_mu, ref_sigma)

    if stats.features is None:
        raise ValueError("reference statistics without raw features cannot give a kernel distance")
    ref_feats = stats.features
    k = evaluation.kid_subset_size

    def kd(f: np.ndarray) -> float:
        return kernel_inception_distance(f, ref_feats, k, evaluation.kid_subsets, seed)[0]

    fd_name, kd_name = metric_names(extractor.family)
    kd_mean, kd_std = kernel_inception_distance(feats, ref_feats, k, evaluation.kid_subsets, seed)
    common = {"n": int(n), "n_reference": int(len(ref_feats)), "extractor": extractor.name,
              "bootstrap": {"B": evaluation.bootstrap, "seed": seed, "resampled": "generated set"}}
    return [
        {"metric": fd_name, "value": fd(feats), "ci95": list(bootstrap_ci(fd, feats, evaluation.bootstrap, seed)),
         "rank_warning": note, **common},
        {"metric": kd_name, "value": kd_mean, "std": kd_std, "kid_subset_size": k, "kid_subsets": evaluation.kid_subsets,
         "ci95": list(bootstrap_ci(kd, feats, evaluation.bootstrap, seed)), **common},
    ]
