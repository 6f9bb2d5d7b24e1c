"""Scores of a generated image set against reference statistics, with their metadata and CIs.

Metric metadata lives here with the metrics (display name, direction, format); the report, tables and
regression checks render from it. A Fréchet or kernel distance is called FID / KID only when the
features are Inception's; with any other extractor it is FD / KD and names its extractor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

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


@dataclass(frozen=True)
class MetricInfo:
    display: str
    higher_is_better: bool
    fmt: str
    description: str
    group: str = "realism"  # realism | identity | ground truth | effectiveness | axioms | utility | diversity


METRICS: dict[str, MetricInfo] = {
    "fid": MetricInfo("FID", False, "{:.2f}", "Fréchet Inception Distance to the reference split"),
    "kid": MetricInfo("KID", False, "{:.4f}", "Kernel Inception Distance (polynomial kernel, unbiased MMD²)"),
    "fd": MetricInfo("FD", False, "{:.3f}", "Fréchet distance on the named (non-Inception) extractor's features"),
    "kd": MetricInfo("KD", False, "{:.4f}", "Kernel distance on the named (non-Inception) extractor's features"),
    "frd": MetricInfo("FRD", False, "{:.3f}", "Fréchet Radiomic Distance: log of the Fréchet distance on radiomic "
                      "features z-scored against the reference (frd-score v1 convention)"),
    "fid_inf": MetricInfo("FID∞", False, "{:.2f}", "FID extrapolated to infinitely many generated images "
                          "(Chong & Forsyth 2020: intercept of FID against 1/N over subset sizes N)"),
    "fd_inf": MetricInfo("FD∞", False, "{:.3f}", "Fréchet distance on the named extractor's features, extrapolated "
                         "to infinitely many generated images (intercept of FD against 1/N)"),
    "precision": MetricInfo("Precision", True, "{:.3f}", "share of generated samples inside the reference k-NN manifold"),
    "recall": MetricInfo("Recall", True, "{:.3f}", "share of reference samples inside the generated k-NN manifold"),
    "density": MetricInfo("Density", True, "{:.3f}", "mean count of reference k-NN balls holding a generated sample, / k"),
    "coverage": MetricInfo("Coverage", True, "{:.3f}", "share of reference k-NN balls holding a generated sample"),
    # Counterfactual metrics (ldbench.runner.counterfactual). "source_*": the edit against its source image
    # (identity kept); "truth_*": against the true counterfactual (embedded re-render or real follow-up).
    "source_ssim": MetricInfo("SSIM vs source", True, "{:.3f}", "structural similarity to the source image", "identity"),
    "source_psnr": MetricInfo("PSNR vs source", True, "{:.2f}", "PSNR (dB, capped at 100) to the source image", "identity"),
    "source_l1": MetricInfo("L1 vs source", False, "{:.4f}", "mean absolute pixel difference to the source image",
                            "identity"),
    "cld": MetricInfo("CLD", False, "{:.3f}", "counterfactual latent divergence (Melistas et al. 2024): minimality",
                      "identity"),
    "truth_ssim": MetricInfo("SSIM vs truth", True, "{:.3f}", "structural similarity to the true counterfactual",
                             "ground truth"),
    "truth_psnr": MetricInfo("PSNR vs truth", True, "{:.2f}", "PSNR (dB, capped at 100) to the true counterfactual",
                             "ground truth"),
    "truth_l1": MetricInfo("L1 vs truth", False, "{:.4f}", "mean absolute pixel difference to the true counterfactual",
                           "ground truth"),
    "truth_lpips": MetricInfo("LPIPS vs truth", False, "{:.4f}", "LPIPS distance to the true counterfactual",
                              "ground truth"),
    "effectiveness_auc": MetricInfo("Oracle AUC", True, "{:.3f}", "AUC of an oracle trained on real data for the "
                                    "intended (target) attribute of each output", "effectiveness"),
    "effectiveness_acc": MetricInfo("Oracle acc.", True, "{:.3f}", "accuracy of that oracle at threshold 0.5",
                                    "effectiveness"),
    "effectiveness_mae": MetricInfo("Oracle MAE", False, "{:.2f}", "mean absolute error between an oracle regressor's "
                                    "reading and the intended value", "effectiveness"),
    "composition_l1": MetricInfo("Composition L1", False, "{:.4f}", "L1 to the source after k null edits (k in the "
                                 "metric name)", "axioms"),
    "reversibility_l1": MetricInfo("Reversibility L1", False, "{:.4f}", "L1 to the source after editing there and back",
                                   "axioms"),
    # Diversity and memorization (ldbench.metrics.diversity); ":pixel" / ":feature" name the space.
    "msssim_diversity": MetricInfo("MS-SSIM (pairs)", False, "{:.3f}", "mean MS-SSIM between random pairs of "
                                   "generated images (3 scales at 64 px); lower = more diverse", "diversity"),
    "memorization_ratio": MetricInfo("Memorization ratio", True, "{:.3f}", "mean distance of generated images to "
                                     "their nearest train image / that of held-out real images (1: no copying, "
                                     "0: copies)", "diversity"),
    "copy_rate": MetricInfo("Copy rate", False, "{:.3f}", "share of generated images closer to a train image than "
                            "5% of held-out real images are", "diversity"),
    "auc_real": MetricInfo("AUC real", True, "{:.3f}", "classifier trained on real images, tested on real", "utility"),
    "auc_synthetic": MetricInfo("AUC synthetic", True, "{:.3f}", "classifier trained on generated images only, "
                                "tested on real", "utility"),
    "auc_mixed": MetricInfo("AUC 50/50", True, "{:.3f}", "classifier trained on 50% real + 50% generated images, "
                            "tested on real", "utility"),
}
PRDC_METRICS = ("precision", "recall", "density", "coverage")
# The records of real held-out images scored like a generated set (ldbench.runner.floor): the floor of every
# realism number.
FLOOR_METHOD = "real"
FLOOR_EDITOR = "held-out"


def is_floor(record: dict) -> bool:
    return record.get("method") == FLOOR_METHOD and record.get("editor") == FLOOR_EDITOR


def metric_names(extractor_family: str) -> tuple[str, str]:
    if extractor_family == "inception":
        return ("fid", "kid")
    if extractor_family == "radiomics":
        return ("frd", "kd")
    return ("fd", "kd")


def metric_info(metric: str) -> MetricInfo | None:
    """Metadata of a metric name; a qualifier after ':' names the attribute or k
    ("effectiveness_auc:diagnosis", "composition_l1:10")."""
    return METRICS.get(metric.split(":", 1)[0])


def display_name(metric: str, extractor: str) -> str:
    info = metric_info(metric)
    base = info.display if info else metric
    if ":" in metric:
        base += f" ({metric.split(':', 1)[1]})"
    if info is not None and info.group != "realism":
        return base  # pixel / oracle / classifier metrics: no feature extractor involved
    return base if metric in ("fid", "kid", "fid_inf") and extractor == "inception" else f"{base} [{extractor}]"


def distribution_metrics(feats: np.ndarray, stats, extractor, evaluation, seed: int) -> list[dict]:
    """Fréchet and kernel distance of the generated set's features `feats` (from `extractor`) to `stats`,
    each with a seeded bootstrap 95% CI over resamples of the generated set (B = evaluation.bootstrap)."""
    if extractor.family == "radiomics":  # FRD: z-scored against the reference, log; see feature_distance_metrics
        ref_n = len(stats.features) if stats.features is not None else int(stats.meta["n"])
        return feature_distance_metrics(
            feats, stats.mu, stats.sigma, stats.features, family=extractor.family, extractor=extractor.name,
            kid=True, kid_subset_size=evaluation.kid_subset_size, kid_subsets=evaluation.kid_subsets,
            bootstrap=evaluation.bootstrap, seed=seed, ref_n=ref_n)
    n, d = feats.shape
    note = rank_warning(n, d)
    if note:
        warnings.warn(note, stacklevel=2)
    from ldbench.metrics.extrapolation import ReferenceFD

    ref_mu, ref_sigma = stats.mu, stats.sigma
    # Bootstrap resamples through the reference's square-root factor, computed once: an n x r SVD per
    # resample instead of a d x d eigendecomposition (2048-d Inception: about 100x faster), equal up to rounding.
    fd_resample = ReferenceFD(ref_mu, ref_sigma)

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
    fd_value = fd(feats)
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


def feature_distance_metrics(
    feats: np.ndarray,
    ref_mu: np.ndarray,
    ref_sigma: np.ndarray,
    ref_feats: np.ndarray | None,
    *,
    family: str,
    extractor: str,
    kid: bool,
    kid_subset_size: int,
    kid_subsets: int,
    bootstrap: int,
    seed: int,
    ref_n: int,
    mu: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
) -> list[dict]:
    """Fréchet (and with `kid` kernel) distance of generated `feats` to reference statistics, each with
    a seeded bootstrap 95% CI over resamples of the generated set (no CI when bootstrap == 0).

    `mu`/`sigma` may be given when they were accumulated while streaming (RunningMoments). For the
    radiomics family the distance is FRD: both sets are z-scored against the reference first and the
    value is log(d_F^2) (frd-score v1), with d_F^2 floored at 1e-12.
    """
    feats = np.asarray(feats, dtype=np.float64)
    n, d = feats.shape
    note = rank_warning(n, d)
    if note:
        warnings.warn(note, stacklevel=2)
    fd_name, kd_name = metric_names(family)
    extra: dict = {}
    if family == "radiomics":
        ref_std = np.sqrt(np.maximum(np.diag(ref_sigma), 0.0) * (ref_n - 1) / ref_n)
        feats, keep = standardise_like_frd(feats, ref_mu, ref_std)
        ref_mu_t = np.zeros(int(keep.sum()))
        ref_sigma_t = ref_sigma[np.ix_(keep, keep)] / np.outer(ref_std[keep], ref_std[keep])
        ref_feats_t = None if ref_feats is None else standardise_like_frd(ref_feats, ref_mu, ref_std)[0]
        ref_mu, ref_sigma, ref_feats = ref_mu_t, ref_sigma_t, ref_feats_t
        mu = sigma = None
        extra = {"standardisation": "z-score per feature against the reference (ddof=0), frd-score v1 norm_ref=d1",
                 "features_kept": int(keep.sum()), "features_dropped_zero_std": int((~keep).sum()),
                 "transform": "log(max(d_F^2, 1e-12)) (frd-score v1 default: log(d_F^2))"}

    def fd(f: np.ndarray, mu_sigma: tuple | None = None) -> float:
        if ref_feats is not None and features_route_is_cheaper(len(f), len(ref_feats), f.shape[1]):
            value = frechet_distance_from_features(f, ref_feats)  # n x n_ref SVD, no d x d eigh
        else:
            m, s = mu_sigma if mu_sigma is not None else gaussian_stats(f)
            value = frechet_distance(m, s, ref_mu, ref_sigma)
        if family == "radiomics":
            return float(np.log(max(value, 1e-12)))  # finite also for identical sets
        return value

    common = {"n": int(n), "n_reference": int(ref_n), "extractor": extractor}
    boot = {"B": bootstrap, "seed": seed, "resampled": "generated set"}
    value = fd(feats, (mu, sigma) if mu is not None and sigma is not None else None)
    floor = None if family == "radiomics" else 0.0  # FRD is a log and may be negative; FD is not
    ci = list(containing_bootstrap_ci(fd, feats, bootstrap, seed, estimate=value, lower_bound=floor)) \
        if bootstrap > 0 else None
    records = [{"metric": fd_name, "value": value, "ci95": ci, "rank_warning": note, **common,
                "bootstrap": boot, "ci_method": CI_RECENTRED if ci else None, **extra}]
    if kid:
        if ref_feats is None:
            raise UserError("the reference statistics hold no raw features, which a kernel distance (KID) needs; "
                            "rebuild them with features kept or compare against an image folder")

        def kd(f: np.ndarray) -> float:
            return kernel_inception_distance(f, ref_feats, kid_subset_size, kid_subsets, seed)[0]

        kd_mean, kd_std = kernel_inception_distance(feats, ref_feats, kid_subset_size, kid_subsets, seed)
        kd_ci = list(containing_bootstrap_ci(kd, feats, bootstrap, seed, estimate=kd_mean)) if bootstrap > 0 else None
        records.append({"metric": kd_name, "value": kd_mean, "ci95": kd_ci, "std": kd_std,
                        "kid_subset_size": kid_subset_size, "kid_subsets": kid_subsets, **common, "bootstrap": boot,
                        "ci_method": CI_RECENTRED if kd_ci else None})
    return records
