"""Scores of a generated image set against reference statistics, with their CIs.

Metric metadata (display name, direction, format, and which name a distance goes by on which extractor
family) is registered in metrics.metric_registry and re-exported here. A Fréchet or kernel distance is
called FID / KID only when the features are Inception's; with any other extractor it is FD / KD (FRD for
radiomics) and names its extractor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ldbench.errors import UserError
from ldbench.metrics.intervals import CI_RECENTRED, containing_bootstrap_ci
from ldbench.metrics.math import (
    features_route_is_cheaper,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_stats,
    kernel_inception_distance,
    prdc,
    rank_warning,
)
from ldbench.metrics.metric_registry import (  # noqa: F401  (re-exported: the metric metadata API lives here too)
    METRICS,
    MetricInfo,
    display_name,
    metric_info,
    metric_names,
)

PRDC_METRICS = ("precision", "recall", "density", "coverage")
# The records of real held-out images scored like a generated set (ldbench.runner.floor): the floor of every
# realism number.
FLOOR_METHOD = "real"
FLOOR_EDITOR = "held-out"


# The records of real images passed through the base model's autoencoder (ldbench.runner.autoencoder): the
# ceiling of every generated image's fidelity and realism.
CEILING_METHOD = "autoencoder"
CEILING_EDITOR = "reconstruction"


def is_floor(record: dict) -> bool:
    return record.get("method") == FLOOR_METHOD and record.get("editor") == FLOOR_EDITOR


def is_ceiling(record: dict) -> bool:
    return record.get("method") == CEILING_METHOD and record.get("editor") == CEILING_EDITOR


# Families whose Fréchet distance is FRD: features z-scored against the reference, then a log (frd-score v1).
FRD_FAMILIES = frozenset({"radiomics"})


@dataclass(frozen=True)
class FeatureSet:
    """Features of one side (N x d, or None when only statistics were kept) with their Gaussian statistics
    (None: computed from the features when needed), its size and where it came from."""

    features: np.ndarray | None
    mu: np.ndarray | None = None
    sigma: np.ndarray | None = None
    n: int | None = None  # None: len(features)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.n) if self.n is not None else len(self.features)


@dataclass(frozen=True)
class DistanceOptions:
    """How feature_distance_metrics scores: with `kid` the kernel distance too (subsets of
    `kid_subset_size`, `kid_subsets` of them); `bootstrap` resamples for the CIs (0: none); one seed."""

    kid: bool = True
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    bootstrap: int = 0
    seed: int = 0


def distribution_metrics(feats: np.ndarray, stats, extractor, evaluation, seed: int) -> list[dict]:
    """Fréchet and kernel distance of the generated set's features `feats` (from `extractor`) to `stats`,
    each with a seeded bootstrap 95% CI over resamples of the generated set (B = evaluation.bootstrap)."""
    if extractor.family in FRD_FAMILIES:  # FRD: z-scored against the reference, log; see feature_distance_metrics
        ref_n = len(stats.features) if stats.features is not None else int(stats.meta["n"])
        options = DistanceOptions(True, evaluation.kid_subset_size, evaluation.kid_subsets, evaluation.bootstrap, seed)
        return feature_distance_metrics(FeatureSet(feats), FeatureSet(stats.features, stats.mu, stats.sigma, ref_n),
                                        family=extractor.family, extractor=extractor.name, options=options)
    n, d = feats.shape
    note = rank_warning(n, d)
    if note:
        warnings.warn(note, stacklevel=2)
    from ldbench.metrics.extrapolation import ReferenceFD

    ref_mu, ref_sigma = stats.mu, stats.sigma
    # Bootstrap resamples through the reference's square-root factor, computed once: an n x r SVD per
    # resample instead of a d x d eigendecomposition (2048-d Inception: about 100x faster), equal up to rounding.
    fd_resample = ReferenceFD(ref_mu, ref_sigma)
    if stats.features is None:
        raise ValueError("reference statistics without raw features cannot give a kernel distance")
    ref_feats = stats.features
    k = evaluation.kid_subset_size

    def kd(f: np.ndarray) -> float:
        return kernel_inception_distance(f, ref_feats, k, evaluation.kid_subsets, seed)[0]

    fd_name, kd_name = metric_names(extractor.family)
    kd_mean, kd_std = kernel_inception_distance(feats, ref_feats, k, evaluation.kid_subsets, seed)
    fd_value = frechet_distance(*gaussian_stats(feats), ref_mu, ref_sigma)
    common = {"n": int(n), "n_reference": int(len(ref_feats)), "extractor": extractor.name,
              "bootstrap": {"B": evaluation.bootstrap, "seed": seed, "resampled": "generated set"},
              "ci_method": CI_RECENTRED}
    records = [
        {"metric": fd_name, "value": fd_value, "rank_warning": note, **common,
         "ci95": list(containing_bootstrap_ci(fd_resample, feats, evaluation.bootstrap, seed, estimate=fd_value,
                                              lower_bound=0.0))},
        {"metric": kd_name, "value": kd_mean, "std": kd_std, "kid_subset_size": k, "kid_subsets": evaluation.kid_subsets,
         "ci95": list(containing_bootstrap_ci(kd, feats, evaluation.bootstrap, seed, estimate=kd_mean)), **common},
    ]
    if getattr(evaluation, "fid_infinity", False):
        from ldbench.metrics.extrapolation import ExtrapolationOptions, fd_inf_record

        records.append({**fd_inf_record(feats, ref_mu, ref_sigma, extractor=extractor.name, family=extractor.family,
                                        options=ExtrapolationOptions(n_boot=evaluation.bootstrap, seed=seed)),
                        "n_reference": int(len(ref_feats))})
    return records


def prdc_metrics(feats: np.ndarray, ref_feats: np.ndarray, k: int = 5) -> list[dict]:
    """Precision, recall, density and coverage (Naeem et al. 2020) of generated `feats` against
    reference `ref_feats` with k-NN balls, as records {metric, value, ci95: None, n, n_reference, k}."""
    values = prdc(ref_feats, feats, k)
    common = {"ci95": None, "n": int(len(feats)), "n_reference": int(len(ref_feats)), "k": int(k)}
    return [{"metric": name, "value": values[name], **common} for name in PRDC_METRICS]


def standardise_like_frd(
    feats: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """z-score feature columns against the reference's mean and std (ddof=0), as frd-score v1 with
    norm_ref=d1 and range [0, 1]; columns whose reference std is 0 are dropped (v1 drops the inf
    columns they give). Returns the standardised features and the kept-column mask."""
    keep = np.asarray(ref_std) > 0
    return (np.asarray(feats)[:, keep] - ref_mean[keep]) / ref_std[keep], keep


def _frd_space(generated: FeatureSet, reference: FeatureSet) -> tuple[FeatureSet, FeatureSet, dict]:
    """Both sides z-scored against the reference (FRD's space; module docstring of metrics.radiomics), the
    reference's statistics carried over exactly, and the record fields that say so."""
    ref_n = reference.size
    ref_std = np.sqrt(np.maximum(np.diag(reference.sigma), 0.0) * (ref_n - 1) / ref_n)
    feats, keep = standardise_like_frd(generated.features, reference.mu, ref_std)
    ref_sigma = reference.sigma[np.ix_(keep, keep)] / np.outer(ref_std[keep], ref_std[keep])
    ref_feats = None if reference.features is None else standardise_like_frd(reference.features, reference.mu,
                                                                             ref_std)[0]
    extra = {"standardisation": "z-score per feature against the reference (ddof=0), frd-score v1 norm_ref=d1",
             "features_kept": int(keep.sum()), "features_dropped_zero_std": int((~keep).sum()),
             "transform": "log(max(d_F^2, 1e-12)) (frd-score v1 default: log(d_F^2))"}
    # the generated side's streamed moments are of the raw features: dropped, recomputed in this space
    return FeatureSet(feats), FeatureSet(ref_feats, np.zeros(int(keep.sum())), ref_sigma, ref_n), extra


def _frechet_fn(reference: FeatureSet, log: bool):
    """d_F^2 of a feature set to `reference` (log(max(d_F^2, 1e-12)) for FRD); the generated set's own
    moments may be passed when they were streamed."""

    def fd(f: np.ndarray, mu_sigma: tuple | None = None) -> float:
        if reference.features is not None and features_route_is_cheaper(len(f), len(reference.features), f.shape[1]):
            value = frechet_distance_from_features(f, reference.features)  # n x n_ref SVD, no d x d eigh
        else:
            m, s = mu_sigma if mu_sigma is not None else gaussian_stats(f)
            value = frechet_distance(m, s, reference.mu, reference.sigma)
        if log:
            return float(np.log(max(value, 1e-12)))  # finite also for identical sets
        return value

    return fd


def _kernel_record(feats: np.ndarray, ref_feats: np.ndarray | None, options: DistanceOptions, name: str,
                   common: dict) -> dict:
    if ref_feats is None:
        raise UserError("the reference statistics hold no raw features, which a kernel distance (KID) needs; "
                        "rebuild them with features kept or compare against an image folder")
    k, subsets, seed = options.kid_subset_size, options.kid_subsets, options.seed

    def kd(f: np.ndarray) -> float:
        return kernel_inception_distance(f, ref_feats, k, subsets, seed)[0]

    kd_mean, kd_std = kernel_inception_distance(feats, ref_feats, k, subsets, seed)
    kd_ci = list(containing_bootstrap_ci(kd, feats, options.bootstrap, seed, estimate=kd_mean)) \
        if options.bootstrap > 0 else None
    return {"metric": name, "value": kd_mean, "ci95": kd_ci, "std": kd_std, "kid_subset_size": k,
            "kid_subsets": subsets, **common, "ci_method": CI_RECENTRED if kd_ci else None}


def feature_distance_metrics(generated: FeatureSet, reference: FeatureSet, *, family: str, extractor: str,
                             options: DistanceOptions) -> list[dict]:
    """Fréchet (and with `options.kid` kernel) distance of the `generated` features to the `reference`
    statistics, each with a seeded bootstrap 95% CI over resamples of the generated set (no CI when
    options.bootstrap == 0).

    `generated.mu` / `.sigma` may be given when they were accumulated while streaming (RunningMoments);
    the reference needs mu and sigma, and its features for the kernel distance. For FRD_FAMILIES the
    distance is FRD: both sets are z-scored against the reference first and the value is log(d_F^2)
    (frd-score v1), with d_F^2 floored at 1e-12.
    """
    generated = FeatureSet(np.asarray(generated.features, dtype=np.float64), generated.mu, generated.sigma)
    n, d = generated.features.shape
    note = rank_warning(n, d)
    if note:
        warnings.warn(note, stacklevel=2)
    fd_name, kd_name = metric_names(family)
    frd = family in FRD_FAMILIES
    ref_n, extra = reference.size, {}
    if frd:
        generated, reference, extra = _frd_space(generated, reference)
    fd = _frechet_fn(reference, log=frd)
    feats, seed, bootstrap = generated.features, options.seed, options.bootstrap
    common = {"n": int(n), "n_reference": int(ref_n), "extractor": extractor}
    boot = {"B": bootstrap, "seed": seed, "resampled": "generated set"}
    streamed = generated.mu is not None and generated.sigma is not None
    value = fd(feats, (generated.mu, generated.sigma) if streamed else None)
    floor = None if frd else 0.0  # FRD is a log and may be negative; FD is not
    ci = list(containing_bootstrap_ci(fd, feats, bootstrap, seed, estimate=value, lower_bound=floor)) \
        if bootstrap > 0 else None
    records = [{"metric": fd_name, "value": value, "ci95": ci, "rank_warning": note, **common,
                "bootstrap": boot, "ci_method": CI_RECENTRED if ci else None, **extra}]
    if options.kid:
        records.append(_kernel_record(feats, reference.features, options, kd_name, {**common, "bootstrap": boot}))
    return records
