"""Diversity and memorization of a generated image set: pure numpy, float64, no I/O.

- MS-SSIM diversity (`msssim_diversity`): the mean multi-scale SSIM (Wang, Simoncelli & Bovik 2003)
  over seeded random pairs of distinct images of one set; lower = more diverse (the convention of
  Odena et al. 2017 and MONAI). Our images are 64 x 64: the standard 5 scales with an 11-px window
  need more than 160 px, so we keep the standard 11-px Gaussian window (sigma 1.5, valid filtering,
  K1 = 0.01, K2 = 0.03) and use the first 3 scales (64, 32, 16 px; 2 x 2 average pooling between
  them) with the standard weights 0.0448, 0.2856, 0.3001 renormalised to sum to 1. With `scales=1`
  it is plain SSIM and equals skimage's structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False).
  Pairs: `rounds` random cycles through the set (image k paired with the next in a random order), so
  every image is in exactly 2 * rounds pairs. The per-image evidence is the jackknife-style pseudo-value
  v_i = 2 g_i - U (g_i: mean over image i's pairs, U: mean over all pairs; mean(v) = U exactly): a
  pair statistic is a U-statistic whose variance is about 4 var(g) / n, which a bootstrap of v
  reproduces and a bootstrap of the pair values, which share images, would understate.
- Memorization (`memorization_metrics`): each generated image's distance to its nearest train image,
  in pixel space (Euclidean over all pixels) and in the extractor's feature space, against the same
  nearest-neighbour distance of held-out real images to the train set (real images that were not
  trained on: what "not copied" looks like), or, without held-out images, of each train image to the
  rest of the train set (leave-one-out). Two numbers per space:
  memorization_ratio = mean generated NN distance / mean reference NN distance (about 1 for fresh
  samples of the same distribution, towards 0 for copies) and copy_rate = share of generated images
  at most as far from the train set as the reference's 5th percentile (about 0.05 for fresh samples,
  1 for copies). CIs: bootstrap resampling generated and reference images independently, re-centred
  percentile interval (ldbench.metrics.intervals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ldbench.metrics.intervals import CI_PERCENTILE, CI_RECENTRED, recentred_interval

__all__ = [
    "DiversityOptions",
    "ImageSet",
    "diversity_records",
    "memorization_metrics",
    "ms_ssim",
    "msssim_diversity",
    "nearest_distances",
]

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, 5 scales
_K1, _K2 = 0.01, 0.03
_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ImageSet:
    """Images (n, H, W) or (n, C, H, W) and, optionally, their features (n, d) from the extractor."""

    images: np.ndarray
    features: np.ndarray | None = None


@dataclass(frozen=True)
class DiversityOptions:
    scales: int = 3  # MS-SSIM scales (3 fit 64-px images with the 11-px window)
    window: int = 11
    sigma: float = 1.5
    data_range: float = 1.0
    rounds: int = 4  # MS-SSIM pairs: each image is in 2 * rounds pairs
    copy_quantile: float = 0.05  # copy_rate threshold: this quantile of the reference NN distances
    n_boot: int = 200
    seed: int = 0


def _as_images(images: np.ndarray) -> np.ndarray:
    """(n, C, H, W) float64 from (n, H, W) or (n, C, H, W)."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be (n, H, W) or (n, C, H, W), got shape {np.shape(images)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("images contain NaN or infinite values")
    return x


# --- MS-SSIM ---------------------------------------------------------------------------------------------


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2.0
    w = np.exp(-(x**2) / (2.0 * sigma**2))
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of the last two axes with the 1-D window `w`."""
    x = np.lib.stride_tricks.sliding_window_view(x, len(w), axis=-1) @ w
    return np.lib.stride_tricks.sliding_window_view(x, len(w), axis=-2) @ w


def _ssim_parts(a: np.ndarray, b: np.ndarray, w: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean SSIM and mean contrast-structure term per leading index (averaged over channels and space)."""
    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    cs = (2.0 * cov + c2) / (var_a + var_b + c2)
    lum = (2.0 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    axes = tuple(range(1, cs.ndim))
    return (lum * cs).mean(axis=axes), cs.mean(axis=axes)


def _pool2(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) / 4.0


def ms_ssim(a: np.ndarray, b: np.ndarray, options: DiversityOptions = DiversityOptions()) -> np.ndarray:
    """MS-SSIM of image pairs a[k], b[k] ((n, H, W) or (n, C, H, W)), one value per pair.

    prod over scales j < M of relu(cs_j)^w_j times relu(ssim_M)^w_M, the first `options.scales` of the
    standard weights renormalised; a ValueError when the smallest scale is smaller than the window.
    """
    x, y = _as_images(a), _as_images(b)
    if x.shape != y.shape:
        raise ValueError(f"image pairs differ in shape: {x.shape} vs {y.shape}")
    if not 1 <= options.scales <= len(MSSSIM_WEIGHTS):
        raise ValueError(f"MS-SSIM scales must be in 1..{len(MSSSIM_WEIGHTS)}, got {options.scales}")
    smallest = min(x.shape[-2:]) // 2 ** (options.scales - 1)
    if smallest < options.window:
        raise ValueError(f"{options.scales} MS-SSIM scales of {x.shape[-2]}x{x.shape[-1]} images end at "
                         f"{smallest} px, smaller than the {options.window}-px window; use fewer scales")
    weights = np.array(MSSSIM_WEIGHTS[: options.scales])
    weights /= weights.sum()
    w = _gaussian_window(options.window, options.sigma)
    out = np.ones(len(x))
    for j, weight in enumerate(weights):
        ssim, cs = _ssim_parts(x, y, w, options.data_range)
        last = j == len(weights) - 1
        out *= np.maximum(ssim if last else cs, 0.0) ** weight
        if not last:
            x, y = _pool2(x), _pool2(y)
    return out


def _cycle_pairs(n: int, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """(rounds * n, 2) pairs of distinct indices: each round a random cycle through 0..n-1."""
    pairs = []
    for _ in range(rounds):
        order = rng.permutation(n)
        pairs.append(np.stack([order, np.roll(order, -1)], axis=1))
    return np.concatenate(pairs)


def msssim_diversity(images: np.ndarray, options: DiversityOptions = DiversityOptions()) -> dict:
    """Mean MS-SSIM over seeded random pairs of distinct images: value, per-pair values, pairs and the
    per-image pseudo-values (mean = value) whose bootstrap gives the CI (see the module docstring)."""
    x = _as_images(images)
    n = len(x)
    if n < 2:
        raise ValueError(f"MS-SSIM diversity needs at least 2 images, got {n}")
    if options.rounds < 1:
        raise ValueError(f"MS-SSIM diversity needs at least 1 round of pairs, got {options.rounds}")
    pairs = _cycle_pairs(n, options.rounds, np.random.default_rng(options.seed))
    chunk = max(1, _CHUNK_BYTES // (8 * x[0].size * 12))
    values = np.concatenate([ms_ssim(x[pairs[s:s + chunk, 0]], x[pairs[s:s + chunk, 1]], options)
                             for s in range(0, len(pairs), chunk)])
    per_image = (np.bincount(pairs[:, 0], values, n) + np.bincount(pairs[:, 1], values, n)) / (2 * options.rounds)
    value = float(values.mean())
    return {"value": value, "pair_values": values, "pairs": pairs, "pseudo_values": 2.0 * per_image - value}


# --- Memorization ----------------------------------------------------------------------------------------


def nearest_distances(query: np.ndarray, pool: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    """Euclidean distance of each query row to its nearest pool row (rows flattened); with
    `leave_one_out` the query is the pool and each row's own entry is skipped."""
    q = np.asarray(query, dtype=np.float64).reshape(len(query), -1)
    p = np.asarray(pool, dtype=np.float64).reshape(len(pool), -1)
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"query and pool differ in size per item: {q.shape[1]} vs {p.shape[1]}")
    if len(p) < (2 if leave_one_out else 1):
        raise ValueError(f"nearest-neighbour pool too small: {len(p)} items")
    sq_p = np.sum(p * p, axis=1)
    step = max(1, _CHUNK_BYTES // (8 * max(len(p), 1)))
    out = np.empty(len(q))
    for s in range(0, len(q), step):
        block = q[s:s + step]
        d2 = np.sum(block * block, axis=1)[:, None] + sq_p[None, :] - 2.0 * block @ p.T
        if leave_one_out:
            d2[np.arange(len(block)), np.arange(s, s + len(block))] = np.inf
        out[s:s + step] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _two_sample_ci(gen: np.ndarray, ref: np.ndarray, statistic, estimate: float, options: DiversityOptions):
    """Re-centred percentile CI of statistic(gen, ref) over independent resamples of both (None if n_boot 0)."""
    if options.n_boot <= 0:
        return None
    rng = np.random.default_rng(options.seed)
    values = np.array([statistic(gen[rng.integers(0, len(gen), len(gen))], ref[rng.integers(0, len(ref), len(ref))])
                       for _ in range(options.n_boot)])
    return list(recentred_interval(estimate, values, 0.95, lower_bound=0.0))


def memorization_metrics(gen_nn: np.ndarray, ref_nn: np.ndarray, options: DiversityOptions = DiversityOptions()
                         ) -> dict:
    """memorization_ratio and copy_rate from nearest-train distances of generated (`gen_nn`) and reference
    (`ref_nn`) images: {name: (value, ci95, per-item values whose mean is the value)}."""
    gen_nn, ref_nn = np.asarray(gen_nn, dtype=np.float64), np.asarray(ref_nn, dtype=np.float64)
    if len(gen_nn) < 2 or len(ref_nn) < 2 or not ref_nn.mean() > 0:
        raise ValueError("memorization needs at least 2 generated and 2 reference distances, not all reference 0")

    def ratio(g: np.ndarray, r: np.ndarray) -> float:
        return float(g.mean() / r.mean()) if r.mean() > 0 else 0.0

    def copies(g: np.ndarray, r: np.ndarray) -> float:
        return float(np.mean(g <= np.quantile(r, options.copy_quantile)))

    threshold = float(np.quantile(ref_nn, options.copy_quantile))
    out = {}
    for name, stat, items in (("memorization_ratio", ratio, gen_nn / ref_nn.mean()),
                              ("copy_rate", copies, (gen_nn <= threshold).astype(np.float64))):
        value = stat(gen_nn, ref_nn)
        out[name] = (value, _two_sample_ci(gen_nn, ref_nn, stat, value, options), items)
    return out


# --- Records ---------------------------------------------------------------------------------------------


def _record(metric: str, value: float, ci, n: int, extractor: str, **details) -> dict:
    return {"metric": metric, "value": float(value), "ci95": None if ci is None else [float(c) for c in ci],
            "n": int(n), "extractor": extractor, **details}


def _diversity_record(gen: ImageSet, heldout: ImageSet | None, options: DiversityOptions) -> tuple[dict, np.ndarray]:
    from ldbench.metrics.significance import mean_with_ci

    div = msssim_diversity(gen.images, options)
    _, ci = mean_with_ci(div["pseudo_values"], options.n_boot, options.seed)
    real = msssim_diversity(heldout.images, options)["value"] if heldout is not None and len(heldout.images) > 1 \
        else None
    rec = _record("msssim_diversity", div["value"], ci, len(div["pseudo_values"]), "pixels",
                  real_value=real, pairs=len(div["pairs"]), scales=options.scales, window=options.window,
                  sigma=options.sigma, weights=list(np.array(MSSSIM_WEIGHTS[: options.scales])
                                                     / sum(MSSSIM_WEIGHTS[: options.scales])),
                  bootstrap={"B": options.n_boot, "seed": options.seed, "resampled": "images (pseudo-values)"},
                  ci_method=CI_PERCENTILE if ci else None)
    return rec, div["pseudo_values"]


def diversity_records(gen: ImageSet, train: ImageSet, heldout: ImageSet | None, *, extractor: str,
                      options: DiversityOptions = DiversityOptions()) -> tuple[list[dict], dict[str, np.ndarray]]:
    """MS-SSIM diversity and memorization (pixel space, and feature space where `gen` and `train` carry
    features) of a generated set: (records, items). Records have the shape of ldbench.metrics.scores'
    (metric, value, ci95, n, extractor, details...); items are the per-item evidence "mean__<metric>"
    (mean = the record's value) that ldbench.runner.effects tests LD against no LD with.
    The memorization reference is `heldout` (real images not trained on) or, when None, the train set
    leave-one-out."""
    records, items = [], {}
    rec, pseudo = _diversity_record(gen, heldout, options)
    records.append(rec)
    items["mean__msssim_diversity"] = pseudo
    spaces = [("pixel", "pixels", gen.images, train.images, None if heldout is None else heldout.images)]
    if gen.features is not None and train.features is not None:
        spaces.append(("feature", extractor, gen.features, train.features,
                       None if heldout is None else heldout.features))
    for space, space_extractor, g, t, h in spaces:
        gen_nn = nearest_distances(g, t)
        ref_nn = nearest_distances(t, t, leave_one_out=True) if h is None else nearest_distances(h, t)
        reference = "train leave-one-out" if h is None else "held-out real images"
        for name, (value, ci, per_item) in memorization_metrics(gen_nn, ref_nn, options).items():
            metric = f"{name}:{space}"
            records.append(_record(
                metric, value, ci, len(per_item), space_extractor, reference=reference,
                n_reference=len(ref_nn), n_train=len(t), copy_quantile=options.copy_quantile,
                reference_nn_mean=float(ref_nn.mean()), gen_nn_median=float(np.median(gen_nn)),
                bootstrap={"B": options.n_boot, "seed": options.seed, "resampled": "generated and reference sets"},
                ci_method=CI_RECENTRED if ci else None))
            items[f"mean__{metric}"] = per_item
    return records, items
