"""Every metric name the benchmark records, registered once with its metadata (display name, direction,
format, description, group); the report, tables and regression checks render from it.

A Fréchet or kernel distance goes by a name that depends on the extractor family whose features it is
computed on: FID / KID only on Inception's, FRD on radiomics', FD / KD on any other. That naming is
registered data too (`distance=` and `families=` at registration), so a new family that needs its own
name is one registration, not a branch in every caller.

The registry is a read-only mapping name -> MetricInfo in registration order, so `name in METRICS`,
`METRICS[name]`, `METRICS.get(name)` and `sorted(METRICS)` work as on the dict it replaces.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

# The kinds of feature distance whose name depends on the extractor family.
FRECHET = "frechet"
KERNEL = "kernel"
FRECHET_INF = "frechet_inf"  # the Fréchet distance extrapolated to infinitely many images (FD∞)
ANY_FAMILY = ""  # registration key of the name used for every family not registered on its own


@dataclass(frozen=True)
class MetricInfo:
    display: str
    higher_is_better: bool
    fmt: str
    description: str
    group: str = "realism"  # realism | identity | ground truth | effectiveness | axioms | utility | diversity |
    #                         training | autoencoder


class MetricRegistry(Mapping[str, MetricInfo]):
    """Metric name -> MetricInfo, plus which name each (distance kind, extractor family) goes by."""

    def __init__(self) -> None:
        self._items: dict[str, MetricInfo] = {}
        self._distance_names: dict[tuple[str, str], str] = {}

    def register(self, name: str, info: MetricInfo, *, distance: str = "",
                 families: tuple[str, ...] = (ANY_FAMILY,)) -> MetricInfo:
        """Add `name`; with `distance`, it is that distance's name on `families` (default: every family
        without a name of its own)."""
        if name in self._items:
            raise ValueError(f"metric {name!r} is registered twice")
        self._items[name] = info
        if distance:
            for family in families:
                key = (distance, family)
                if key in self._distance_names:
                    raise ValueError(f"the {distance} distance of family {family!r} is named twice: "
                                     f"{self._distance_names[key]!r} and {name!r}")
                self._distance_names[key] = name
        return info

    def distance_name(self, distance: str, family: str) -> str:
        """The metric name of the `distance` kind on features of extractor `family`."""
        named = self._distance_names.get((distance, family))
        return named if named is not None else self._distance_names[(distance, ANY_FAMILY)]

    def info(self, metric: str) -> MetricInfo | None:
        """Metadata of a metric name; a qualifier after ':' names the attribute or k
        ("effectiveness_auc:diagnosis", "composition_l1:10"). None for names not registered."""
        return self._items.get(metric.split(":", 1)[0])

    def __getitem__(self, name: str) -> MetricInfo:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


METRICS = MetricRegistry()
_add = METRICS.register

# --- realism: feature distances (their names depend on the extractor family) and PRDC ------------------
_add("fid", MetricInfo("FID", False, "{:.2f}", "Fréchet Inception Distance to the reference split"),
     distance=FRECHET, families=("inception",))
_add("kid", MetricInfo("KID", False, "{:.4f}", "Kernel Inception Distance (polynomial kernel, unbiased MMD²)"),
     distance=KERNEL, families=("inception",))
_add("fd", MetricInfo("FD", False, "{:.3f}", "Fréchet distance on the named (non-Inception) extractor's features"),
     distance=FRECHET)
_add("kd", MetricInfo("KD", False, "{:.4f}", "Kernel distance on the named (non-Inception) extractor's features"),
     distance=KERNEL)
_add("frd", MetricInfo("FRD", False, "{:.3f}", "Fréchet Radiomic Distance: log of the Fréchet distance on radiomic "
                       "features z-scored against the reference (frd-score v1 convention)"),
     distance=FRECHET, families=("radiomics",))
_add("fid_inf", MetricInfo("FID∞", False, "{:.2f}", "FID extrapolated to infinitely many generated images "
                           "(Chong & Forsyth 2020: intercept of FID against 1/N over subset sizes N)"),
     distance=FRECHET_INF, families=("inception",))
_add("fd_inf", MetricInfo("FD∞", False, "{:.3f}", "Fréchet distance on the named extractor's features, extrapolated "
                          "to infinitely many generated images (intercept of FD against 1/N)"),
     distance=FRECHET_INF)
_add("precision", MetricInfo("Precision", True, "{:.3f}", "share of generated samples inside the reference k-NN "
                             "manifold"))
_add("recall", MetricInfo("Recall", True, "{:.3f}", "share of reference samples inside the generated k-NN manifold"))
_add("density", MetricInfo("Density", True, "{:.3f}", "mean count of reference k-NN balls holding a generated "
                           "sample, / k"))
_add("coverage", MetricInfo("Coverage", True, "{:.3f}", "share of reference k-NN balls holding a generated sample"))

# --- counterfactual metrics (ldbench.runner.counterfactual). "source_*": the edit against its source image
# (identity kept); "truth_*": against the true counterfactual (embedded re-render or real follow-up).
_add("source_ssim", MetricInfo("SSIM vs source", True, "{:.3f}", "structural similarity to the source image",
                               "identity"))
_add("source_psnr", MetricInfo("PSNR vs source", True, "{:.2f}", "PSNR (dB, capped at 100) to the source image",
                               "identity"))
_add("source_l1", MetricInfo("L1 vs source", False, "{:.4f}", "mean absolute pixel difference to the source image",
                             "identity"))
_add("cld", MetricInfo("CLD", False, "{:.3f}", "counterfactual latent divergence (Melistas et al. 2024): minimality",
                       "identity"))
_add("truth_ssim", MetricInfo("SSIM vs truth", True, "{:.3f}", "structural similarity to the true counterfactual",
                              "ground truth"))
_add("truth_psnr", MetricInfo("PSNR vs truth", True, "{:.2f}", "PSNR (dB, capped at 100) to the true counterfactual",
                              "ground truth"))
_add("truth_l1", MetricInfo("L1 vs truth", False, "{:.4f}", "mean absolute pixel difference to the true "
                            "counterfactual", "ground truth"))
_add("toward_truth_l1", MetricInfo("L1 toward truth", True, "{:.4f}", "L1 to the source minus L1 to the true "
                                   "counterfactual, per edit: > 0 when the edit lies closer to the intended image "
                                   "than to the one it edited", "ground truth"))
_add("truth_lpips", MetricInfo("LPIPS vs truth", False, "{:.4f}", "LPIPS distance to the true counterfactual",
                               "ground truth"))
_add("effectiveness_auc", MetricInfo("Oracle AUC", True, "{:.3f}", "AUC of an oracle trained on real data for the "
                                     "intended (target) attribute of each output", "effectiveness"))
_add("effectiveness_acc", MetricInfo("Oracle acc.", True, "{:.3f}", "accuracy of that oracle at threshold 0.5",
                                     "effectiveness"))
_add("effectiveness_mae", MetricInfo("Oracle MAE", False, "{:.2f}", "mean absolute error between an oracle "
                                     "regressor's reading and the intended value", "effectiveness"))
_add("composition_l1", MetricInfo("Composition L1", False, "{:.4f}", "L1 to the source after k null edits (k in the "
                                  "metric name)", "axioms"))
_add("reversibility_l1", MetricInfo("Reversibility L1", False, "{:.4f}", "L1 to the source after editing there and "
                                    "back", "axioms"))

# --- diversity and memorization (ldbench.metrics.diversity); ":pixel" / ":feature" name the space --------
_add("msssim_diversity", MetricInfo("MS-SSIM (pairs)", False, "{:.3f}", "mean MS-SSIM between random pairs of "
                                    "generated images (3 scales at 64 px); lower = more diverse", "diversity"))
_add("memorization_ratio", MetricInfo("Memorization ratio", True, "{:.3f}", "mean distance of generated images to "
                                      "their nearest train image / that of held-out real images (1: no copying, "
                                      "0: copies)", "diversity"))
_add("copy_rate", MetricInfo("Copy rate", False, "{:.3f}", "share of generated images closer to a train image than "
                             "5% of held-out real images are", "diversity"))

# --- utility (ldbench.classify.utility) -------------------------------------------------------------------
_add("auc_real", MetricInfo("AUC real", True, "{:.3f}", "classifier trained on real images, tested on real",
                            "utility"))
_add("auc_synthetic", MetricInfo("AUC synthetic", True, "{:.3f}", "classifier trained on generated images only, "
                                 "tested on real", "utility"))
_add("auc_mixed", MetricInfo("AUC 50/50", True, "{:.3f}", "classifier trained on 50% real + 50% generated images, "
                             "tested on real", "utility"))

# --- the fine-tune itself: the paper's third mechanism (ldbench.metrics.latent_stability) and the autoencoder's
# reconstruction, the ceiling of every generated image's fidelity (ldbench.runner.autoencoder)
_add("latent_instability", MetricInfo("Latent instability", False, "{:.4f}", "std, over the checkpoints of the "
                                      "second half of fine-tuning, of each generated sample's channel means (same "
                                      "noise at every checkpoint), averaged over channels and samples; 0 = settled",
                                      "training"))
_add("autoencoder_psnr", MetricInfo("Autoencoder PSNR", True, "{:.2f}", "PSNR (dB) of the base model's autoencoder "
                                    "reconstructing the test split (encode, decode): no generated image can be "
                                    "closer to the data", "autoencoder"))
_add("autoencoder_ssim", MetricInfo("Autoencoder SSIM", True, "{:.3f}", "SSIM of the autoencoder's reconstruction "
                                    "of the test split", "autoencoder"))
del _add

# Names displayed without their extractor when that extractor is Inception's own (`display_name`).
INCEPTION_NAMED = ("fid", "kid", "fid_inf")


def metric_names(extractor_family: str) -> tuple[str, str]:
    """The (Fréchet, kernel) distance names on features of `extractor_family`."""
    return METRICS.distance_name(FRECHET, extractor_family), METRICS.distance_name(KERNEL, extractor_family)


def metric_info(metric: str) -> MetricInfo | None:
    """Metadata of a metric name; a qualifier after ':' names the attribute or k
    ("effectiveness_auc:diagnosis", "composition_l1:10")."""
    return METRICS.info(metric)


def display_name(metric: str, extractor: str) -> str:
    info = metric_info(metric)
    base = info.display if info else metric
    if ":" in metric:
        base += f" ({metric.split(':', 1)[1]})"
    if info is not None and info.group != "realism":
        return base  # pixel / oracle / classifier metrics: no feature extractor involved
    return base if metric in INCEPTION_NAMED and extractor == "inception" else f"{base} [{extractor}]"
