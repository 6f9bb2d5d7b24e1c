"""The pure math of the counterfactual-edit metrics, on grayscale images (N, H, W) in [0, 1] and on their
latents (the stages that run it over a suite's outputs are in ldbench.runner.counterfactual_stages).

- `image_similarity`: per-item SSIM, PSNR and L1 between an image and its edit (how much changed).
- `counterfactual_latent_divergence`: CLD, the minimality metric of Melistas, Spyrou et al. 2024
  (was the edit as small as it could be while still changing the attribute?).
- `Lpips` / `lpips_from_config`: LPIPS (Zhang et al. 2018), only from weight files the user has
  locally; nothing is downloaded, so a run without them says "skipped" instead of failing offline.
- `null_edit_drift`, `reversibility`: per-item L1 after repeated null edits (composition) and after
  an edit and its inverse (round trip).

The math functions are pure numpy/skimage in float64 with no I/O; only `Lpips.from_files` reads files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from skimage.metrics import structural_similarity

from ldbench.errors import UserError
from ldbench.metrics.math import finite_array

if TYPE_CHECKING:  # torch is imported only when LPIPS is actually used
    import torch

__all__ = [
    "CLD_WEIGHTS",
    "LPIPS_SKIPPED",
    "PSNR_CAP_DB",
    "Lpips",
    "counterfactual_latent_divergence",
    "image_similarity",
    "lpips_from_config",
    "null_edit_drift",
    "reversibility",
]

# PSNR of identical images is +inf; JSON has no infinity, so records cap it here. 100 dB is an MSE of
# 1e-10 on [0, 1] images, far below 8- or 16-bit quantisation, so no real difference reaches the cap.
PSNR_CAP_DB = 100.0

# Weights (w1, w2) of p1 and p2 in CLD = log(w1 * exp(p1) + w2 * exp(p2)), as in the reference code.
CLD_WEIGHTS = (0.8, 0.2)

LPIPS_SKIPPED = "LPIPS skipped: no weights given (set evaluation.lpips_backbone and evaluation.lpips_linear to local files)"


# --- Image similarity ------------------------------------------------------------------------------


def _as_images(x: np.ndarray, what: str) -> np.ndarray:
    a = finite_array(x, what, 3, "grayscale images of shape (N, H, W)")
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"{what} must lie in [0, 1], got range [{a.min():.4g}, {a.max():.4g}]")
    return a


def _pair(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_images(a, what_a), _as_images(b, what_b)
    if x.shape != y.shape:
        raise ValueError(f"{what_a} shape {x.shape} differs from {what_b} shape {y.shape}")
    return x, y


def _l1(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(x - y).reshape(len(x), -1).mean(axis=1)


def image_similarity(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Per-item SSIM, PSNR (dB) and L1 between two stacks of grayscale images (N, H, W) in [0, 1].

    SSIM is skimage's `structural_similarity` with data_range=1.0 and its defaults (uniform 7x7
    window, no Gaussian weighting, population-corrected covariances): the most widely used Python
    setting, so numbers compare with other work using skimage. It needs H, W >= 7; the 11x11
    Gaussian window of Wang et al. 2004 would need >= 11 px and is not used.
    PSNR is 10 log10(1 / MSE) for data range 1, capped at `PSNR_CAP_DB` so that identical images
    give a finite 100 dB instead of +inf. L1 is the mean absolute difference per image.
    """
    x, y = _pair(a, b, "images a", "images b")
    n = len(x)
    ssim = np.empty(n)
    for i in range(n):
        ssim[i] = structural_similarity(x[i], y[i], data_range=1.0)
    mse = ((x - y) ** 2).reshape(n, -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0.0, -10.0 * np.log10(np.where(mse > 0.0, mse, 1.0)), np.inf)
    return {"ssim": ssim, "psnr": np.minimum(psnr, PSNR_CAP_DB), "l1": _l1(x, y)}


def null_edit_drift(original: np.ndarray, edited_chain: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
    """Per-item L1 between the originals and the images after k null edits, for every k in the chain.

    `edited_chain[k - 1]` holds the images after k successive edits that should change nothing
    (same attribute in, same attribute out). An ideal editor stays at 0 for every k; growth with
    k is the drift that composing edits accumulates (the benchmark reports k = 1 and k = 10).
    """
    if len(edited_chain) == 0:
        raise ValueError("edited_chain is empty: give the images after 1, 2, ... null edits")
    return {
        k: _l1(*_pair(original, edited, "original images", f"images after {k} null edits"))
        for k, edited in enumerate(edited_chain, start=1)
    }


def reversibility(original: np.ndarray, round_trip: np.ndarray) -> np.ndarray:
    """Per-item L1 between the originals and the images after an edit and its inverse edit (0 = perfect)."""
    return _l1(*_pair(original, round_trip, "original images", "round-trip images"))


# --- Counterfactual latent divergence --------------------------------------------------------------


def _as_latents(z: np.ndarray, what: str) -> np.ndarray:
    return finite_array(z, what, 2, "2-D (n, d)")


def _as_attr(attr: np.ndarray, n: int, what: str) -> np.ndarray:
    a = np.asarray(attr)
    if a.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {a.shape}")
    return a


def _mean_l1_to_rows(rows: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each row (k, d) to every pool row (m, d): (k, m).

    Chunked so that the (chunk, m, d) intermediate stays near 128 MB whatever the sizes.
    """
    k, d = rows.shape
    m = len(pool)
    out = np.empty((k, m))
    step = max(1, (1 << 24) // max(1, m * d))
    for s in range(0, k, step):
        out[s : s + step] = np.abs(rows[s : s + step, None, :] - pool[None, :, :]).mean(axis=2)
    return out


def counterfactual_latent_divergence(
    z_factual: np.ndarray,
    z_counterfactual: np.ndarray,
    z_reference: np.ndarray,
    factual_attr: np.ndarray,
    counterfactual_attr: np.ndarray,
    reference_attr: np.ndarray,
) -> dict[str, Any]:
    """CLD, counterfactual latent divergence (minimality of an edit), per item and on average.

    Melistas, Spyrou et al. 2024, "Benchmarking Counterfactual Image Generation" (NeurIPS Datasets
    & Benchmarks), as implemented in gulnazaki/counterfactual-benchmark,
    counterfactual_benchmark/evaluation/metrics/minimality.py (`minimality`). For item i with factual
    latent f, counterfactual latent c and distance d(u, v) = mean |u - v| over latent dimensions:

        div = d(c, f)
        S_f  = {d(r, f) : reference r with attribute == factual attribute of i}
        S_cf = {d(r, f) : reference r with attribute == counterfactual attribute of i}
        p1 = share of S_cf that is <= div   (real images of the target attribute closer to f than c)
        p2 = share of S_f  that is >= div   (real images of the source attribute farther from f than c)
        CLD = log(0.8 * exp(p1) + 0.2 * exp(p2))

    CLD lies in [0, 1]; lower is better. 0: the edit moved f less than any real image of the target
    attribute is away from f (minimal) yet more than every real image of its own attribute
    (it changed something). 1: the reverse on both counts. An edit that returns f unchanged
    (div = 0) gets p2 = 1 and p1 = share of target-attribute references identical to f (usually 0),
    so CLD = log(0.8 + 0.2 e) = 0.2954: the 0.2 weight is what keeps "do nothing" from scoring
    best. Comparisons with div are exact (ties count in both p1 and p2), as in the reference code.

    Attributes are discrete labels compared with ==. The reference code bins continuous parents
    (e.g. thickness, age) with np.searchsorted against fixed bin edges first; do that before calling.
    In the reference code the pool of real images is the factual test set itself (so f is its own
    member of S_f, at distance 0): pass z_reference=z_factual and reference_attr=factual_attr to
    reproduce that. Their `vae` embedding variant uses a Gaussian KL instead of L1; only the L1
    variant (used for all other embeddings) is implemented here.

    Returns cld, p1, p2 (per item, NaN where an attribute group is empty), valid (bool per item),
    mean (over valid items; the reference code also skips those items), n_skipped and weights.
    """
    zf, zc, zr, fa, ca, ra = _cld_inputs(z_factual, z_counterfactual, z_reference, factual_attr,
                                         counterfactual_attr, reference_attr)
    p1, p2, valid = _cld_shares(zf, zc, zr, fa, ca, ra)
    w1, w2 = CLD_WEIGHTS
    cld = np.log(w1 * np.exp(p1) + w2 * np.exp(p2))
    return {
        "cld": cld,
        "p1": p1,
        "p2": p2,
        "valid": valid,
        "mean": float(np.mean(cld[valid])),
        "n_skipped": int(len(zf) - valid.sum()),
        "weights": CLD_WEIGHTS,
    }


def _cld_inputs(z_factual: np.ndarray, z_counterfactual: np.ndarray, z_reference: np.ndarray,
                factual_attr: np.ndarray, counterfactual_attr: np.ndarray, reference_attr: np.ndarray) -> tuple:
    """The CLD inputs checked: latents 2-D, finite and of one dimension (factual and counterfactual of
    one shape), at least one factual and one reference item, one attribute per latent."""
    zf = _as_latents(z_factual, "factual latents")
    zc = _as_latents(z_counterfactual, "counterfactual latents")
    zr = _as_latents(z_reference, "reference latents")
    if zc.shape != zf.shape:
        raise ValueError(
            f"counterfactual latents shape {zc.shape} differs from factual latents shape {zf.shape}"
        )
    if zr.shape[1] != zf.shape[1]:
        raise ValueError(f"reference latents have {zr.shape[1]} dimensions, factual latents {zf.shape[1]}")
    n = len(zf)
    if n == 0 or len(zr) == 0:
        raise ValueError(f"CLD needs factual and reference latents, got {n} and {len(zr)}")
    fa = _as_attr(factual_attr, n, "factual attributes")
    ca = _as_attr(counterfactual_attr, n, "counterfactual attributes")
    ra = _as_attr(reference_attr, len(zr), "reference attributes")
    return zf, zc, zr, fa, ca, ra


def _cld_shares(zf: np.ndarray, zc: np.ndarray, zr: np.ndarray, fa: np.ndarray, ca: np.ndarray,
                ra: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """p1, p2 (NaN where an attribute group is empty) and the items where both groups are not, of
    counterfactual_latent_divergence's docstring."""
    div = np.abs(zc - zf).mean(axis=1)
    dist = _mean_l1_to_rows(zf, zr)  # (n, m): d(f_i, r_j)
    same_f = fa[:, None] == ra[None, :]
    same_cf = ca[:, None] == ra[None, :]
    n_f = same_f.sum(axis=1)
    n_cf = same_cf.sum(axis=1)
    valid = (n_f > 0) & (n_cf > 0)
    if not valid.any():
        raise ValueError(
            "CLD: no item has reference images with both its factual and its counterfactual attribute; "
            "check that the reference attributes use the same labels"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(valid, (same_cf & (dist <= div[:, None])).sum(axis=1) / n_cf, np.nan)
        p2 = np.where(valid, (same_f & (dist >= div[:, None])).sum(axis=1) / n_f, np.nan)
    return p1, p2, valid


# --- LPIPS -----------------------------------------------------------------------------------------

# Per net: torchvision constructor name, feature slices ending at the five ReLUs LPIPS reads, channels.
_LPIPS_NETS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "alex": ("alexnet", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256)),
    "vgg": ("vgg16", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512)),
}
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_LPIPS_EPS = 1e-10


def _load_state(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"LPIPS {what} weights file not found: {path}; give an existing local file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as exc:  # corrupt or foreign file: say which one
        kind = "safetensors" if path.suffix == ".safetensors" else "torch (weights_only)"
        raise UserError(
            f"cannot read LPIPS {what} weights {path} as a {kind} state dict ({type(exc).__name__}); "
            "give the original weights file"
        ) from exc
    if not isinstance(state, dict):
        raise UserError(f"LPIPS {what} weights {path} hold a {type(state).__name__}, not a state dict")
    return state


class Lpips:
    """LPIPS v0.1 distance (Zhang et al. 2018) built from local weight files; never downloads.

    The forward follows the `lpips` package: inputs mapped to [-1, 1], its ImageNet-style scaling
    layer, five ReLU feature maps of the backbone, each unit-normalised over channels, squared
    difference, 1x1 linear layer, spatial mean, summed over layers. Grayscale inputs are repeated
    to 3 channels, as the backbone expects RGB.
    """

    def __init__(self, features: torch.nn.Module, lins: list[torch.nn.Module], net: str, device: str = "cpu"):
        import torch

        self.net = net
        self.device = torch.device(device)
        ends = _LPIPS_NETS[net][1]
        starts = (0, *ends[:-1])
        self._slices = [
            torch.nn.Sequential(*[features[j] for j in range(s, e)]).to(self.device).eval()
            for s, e in zip(starts, ends, strict=True)
        ]
        self._lins = [lin.to(self.device).eval() for lin in lins]
        self._shift = torch.tensor(_LPIPS_SHIFT, device=self.device).view(1, 3, 1, 1)
        self._scale = torch.tensor(_LPIPS_SCALE, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_files(
        cls, backbone: str | Path, linear: str | Path, net: str = "alex", device: str = "cpu"
    ) -> Lpips:
        """Build from a backbone state dict (torchvision's `features.*` keys, or the features module's
        own `0.weight`... keys; classifier keys are ignored) and the lpips linear layers
        (`lin0.model.1.weight` ... `lin4.model.1.weight`, shapes (1, C, 1, 1)). Either file may be
        .safetensors or a torch file (read with weights_only=True, so no code runs on load).
        """
        import torch
        import torchvision

        if net not in _LPIPS_NETS:
            raise UserError(f"unknown LPIPS net {net!r}; use one of {sorted(_LPIPS_NETS)}")
        ctor, _, chns = _LPIPS_NETS[net]
        backbone, linear = Path(backbone), Path(linear)
        with torch.device("meta"):  # architecture only: no random init of ~60-140 M unused parameters
            features = getattr(torchvision.models, ctor)(weights=None).features
        features = features.to_empty(device="cpu")
        state = _load_state(backbone, "backbone")
        feat_state = {
            (k[len("features.") :] if k.startswith("features.") else k): v
            for k, v in state.items()
            if not k.startswith("classifier.")
        }
        try:
            features.load_state_dict(feat_state, strict=True)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]
            raise UserError(
                f"LPIPS backbone weights {backbone} do not fit torchvision {ctor}: {detail}"
            ) from exc

        lin_state = _load_state(linear, "linear")
        lins: list[torch.nn.Module] = []
        for i, c in enumerate(chns):
            key = f"lin{i}.model.1.weight"
            w = lin_state.get(key)
            if w is None:
                raise UserError(
                    f"LPIPS linear weights {linear} lack key {key}; use the lpips package's {net}.pth"
                )
            if tuple(w.shape) != (1, c, 1, 1):
                raise UserError(
                    f"LPIPS linear weights {linear}: {key} has shape {tuple(w.shape)}, expected (1, {c}, 1, 1) "
                    f"for net={net}"
                )
            conv = torch.nn.Conv2d(c, 1, 1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(w.to(torch.float32))
            lins.append(conv)
        return cls(features, lins, net, device)

    def _distance(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx = (x - self._shift) / self._scale
        fy = (y - self._shift) / self._scale
        total = x.new_zeros(len(x))
        for layer, lin in zip(self._slices, self._lins, strict=True):
            fx, fy = layer(fx), layer(fy)
            nx = fx / ((fx * fx).sum(dim=1, keepdim=True).sqrt() + _LPIPS_EPS)
            ny = fy / ((fy * fy).sum(dim=1, keepdim=True).sqrt() + _LPIPS_EPS)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total

    def __call__(self, a: np.ndarray, b: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Per-item LPIPS between grayscale stacks (N, H, W) in [0, 1] (0 for identical images)."""
        import torch

        x, y = _pair(a, b, "images a", "images b")
        out = np.empty(len(x))
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                ta = torch.as_tensor(x[s : s + batch_size], dtype=torch.float32, device=self.device)
                tb = torch.as_tensor(y[s : s + batch_size], dtype=torch.float32, device=self.device)
                ta = (2.0 * ta - 1.0)[:, None].expand(-1, 3, -1, -1)
                tb = (2.0 * tb - 1.0)[:, None].expand(-1, 3, -1, -1)
                out[s : s + batch_size] = self._distance(ta, tb).double().cpu().numpy()
        return out


def lpips_from_config(
    backbone: str | None, linear: str | None, net: str = "alex", device: str = "cpu"
) -> tuple[Lpips | None, str]:
    """LPIPS from the config's local weight paths, or (None, reason) when none are given.

    Both paths or neither: one alone is a config mistake and raises UserError naming the missing one.
    """
    if not backbone and not linear:
        return None, LPIPS_SKIPPED
    if not backbone or not linear:
        missing = "evaluation.lpips_backbone" if not backbone else "evaluation.lpips_linear"
        raise UserError(f"LPIPS needs both weight files but {missing} is not set; set it or unset the other")
    model = Lpips.from_files(backbone, linear, net=net, device=device)
    return model, f"LPIPS net={net}, backbone {backbone}, linear {linear}"
