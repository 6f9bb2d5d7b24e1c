"""Feature extractors: images (N, H, W) in [0, 1] -> float64 features (N, dim).

Every extractor says what it is (`describe()`): name, family, SHA-256 of its weights, resize and
channel policies, dimension, compute dtype. Those fields go into every record and cache key, and
reference statistics are only used with an extractor whose fields match (see metrics.stats).

- `inception`, `inception-clean` (metrics.inception): the TF 2015-12-05 Inception-v3 pool3 features (2048-d)
  through torch-fidelity's network, with the weights file's SHA-256 pinned; the only family whose distances
  are called FID / KID.
- `domain`: the offline DomainNet (metrics.domain), trained on the benchmark's own images; FD / KD.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.metrics.domain import (
    DEFAULT_WEIGHTS,
    FEATURE_DIM,
    INPUT_SIZE,
    check_image_shape,
    load_domain_net,
    to_input,
    unit_range,
)
from ldbench.metrics.extractor_base import (  # noqa: F401  (re-exported: the extractor API lives here)
    EXTRACTORS,
    FeatureExtractor,
    check_batch_size,
    create_extractor,
    describe_fields,
)
from ldbench.metrics.inception import (  # noqa: F401  (registers inception and inception-clean; re-exported)
    CLEAN_SIZE,
    FID_HELPER_SHA256,
    FID_HELPER_SOURCE,
    INCEPTION_ENV,
    INCEPTION_FILENAME,
    INCEPTION_SHA256,
    INCEPTION_URL,
    CleanInceptionExtractor,
    InceptionExtractor,
    clean_resize_299,
    resolve_inception_path,
    write_random_inception_weights,
)

# --- domain (offline DomainNet) ----------------------------------------------------------------------


@EXTRACTORS.register("domain")
class DomainExtractor:
    """Offline DomainNet (64-d), trained on the benchmark's images: FD/KD, not FID/KID (`ldbench extractors train-domain`)."""

    name = "domain"
    family = "domain"
    resize_policy = f"bilinear-antialias-{INPUT_SIZE}"
    channel_policy = "gray"
    dim = FEATURE_DIM
    compute_dtype = "float64"

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | None = None) -> None:
        path = Path(weights_path).expanduser() if weights_path else DEFAULT_WEIGHTS
        net = load_domain_net(path)  # UserError naming `ldbench extractors train-domain` when missing
        if net.feature_dim != self.dim:
            raise UserError(f"{path}: {net.feature_dim}-d domain features, expected {self.dim}")
        self.fingerprint = sha256_file(path)
        self.weights_path = path
        self.weights_meta = dict(net.meta)
        self.device = torch.device(device or "cpu")
        # float64 inference: features do not depend on the batch size beyond 1e-12-level rounding
        self._net = net.to(self.device, torch.float64).eval()

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                batch = to_input(unit_range(x[s : s + batch_size]), torch.float64).to(self.device)
                out[s : s + len(batch)] = self._net.features(batch).to("cpu").numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return describe_fields(self, self.compute_dtype)


# --- radiomics (pyradiomics, FRD) ----------------------------------------------------------------------

RADIOMICS_INSTALL = "pip install 'ldbench[radiomics]'"


def _frd_config_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("frd_score")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the radiomics extractor needs frd-score and pyradiomics: {RADIOMICS_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "configs" / "extraction_2d.yaml"


@EXTRACTORS.register("radiomics")
class RadiomicsExtractor:
    """Radiomic features (pyradiomics with frd-score's v1 2D settings), no network weights: FRD."""

    name = "radiomics"
    family = "radiomics"
    resize_policy = "none-pyradiomics-bspline-2px-spacing"
    channel_policy = "gray"
    compute_dtype = "float64"
    standardisation = "z-score against the reference set (frd-score v1, norm_ref=d1), applied by the frd metric"

    def __init__(self) -> None:
        try:
            import radiomics
            from radiomics import featureextractor
        except ImportError:
            raise UserError(f"the radiomics extractor needs pyradiomics and frd-score: {RADIOMICS_INSTALL}") from None
        import logging

        config = _frd_config_path()
        if not config.is_file():
            raise UserError(f"frd-score's radiomics settings {config} are missing: {RADIOMICS_INSTALL}")
        radiomics.setVerbosity(logging.ERROR)
        logging.getLogger("radiomics").setLevel(logging.ERROR)
        self._extractor = featureextractor.RadiomicsFeatureExtractor(str(config))
        h = hashlib.sha256(config.read_bytes())
        h.update(f"pyradiomics {radiomics.__version__}; numeric diagnostics kept (frd-score v1)".encode())
        self.fingerprint = h.hexdigest()  # no weights: the settings file and library version
        self.config_path = config
        yy, xx = np.mgrid[:64, :64] / 64.0
        probe = self._raw(0.5 + 0.25 * np.sin(6 * xx) * np.cos(4 * yy))
        self.feature_names = sorted(probe)
        self.dim = len(self.feature_names)

    def _raw(self, image: np.ndarray) -> dict[str, float]:
        import SimpleITK as sitk

        # as frd-score v1 reads an 8-bit PNG: float32 pixel values, a (1, H, W) volume with spacing 1 and a
        # full mask but for the corner voxel (a pyradiomics workaround, frd-score's too)
        arr = (np.asarray(image, dtype=np.float64) * 255.0).astype(np.float32)[None]
        mask = np.ones(arr.shape, dtype=np.uint8)
        mask[0, 0, 0] = 0
        im, ma = sitk.GetImageFromArray(arr), sitk.GetImageFromArray(mask)
        im.SetSpacing((1.0, 1.0, 1.0))
        ma.SetSpacing((1.0, 1.0, 1.0))
        out = self._extractor.execute(im, ma)
        # frd-score v1 keeps pyradiomics' numeric diagnostics (image mean / min / max, mask voxel counts, ...)
        # in the feature vector, as the paper's pipeline did; constant ones drop out as zero-std columns.
        features = {}
        for k, v in out.items():
            try:
                features[k] = float(v)
            except (TypeError, ValueError):
                if not k.startswith("diagnostics"):
                    raise
        return features

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = unit_range(check_image_shape(images))
        out = np.empty((len(x), self.dim), dtype=np.float64)
        for i, img in enumerate(x):
            raw = self._raw(img)
            if sorted(raw) != self.feature_names:
                raise UserError(f"radiomics gave {len(raw)} features for a {img.shape} image, expected {self.dim}")
            out[i] = [raw[k] for k in self.feature_names]
        if not np.all(np.isfinite(out)):
            raise UserError("radiomics gave NaN or infinite features (constant images?)")
        return out

    def describe(self) -> dict[str, Any]:
        return {**describe_fields(self, self.compute_dtype), "standardisation": self.standardisation}


# --- DINOv2 / CLIP (transformers, local weights only) --------------------------------------------------

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weights_dir_fingerprint(directory: Path) -> str:
    """SHA-256 over (name, SHA-256) of config.json and every weight file in a transformers directory."""
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and (p.suffix in _WEIGHT_SUFFIXES or p.name == "config.json"))
    if not any(p.suffix in _WEIGHT_SUFFIXES for p in files):
        raise UserError(f"{directory}: no weight files (*.safetensors / *.bin) in this directory")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


class _TransformersExtractor:
    family = ""
    env = ""
    example = ""
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_policy = "gray-repeat-rgb"
    compute_dtype = "float32"

    def __init__(self, weights_path: str | os.PathLike | None = None, device: str | None = None) -> None:
        raw = weights_path or os.environ.get(self.env)
        if not raw:
            raise UserError(
                f"the {self.name} extractor needs local weights: a transformers directory (e.g. {self.example} "
                f"saved with save_pretrained) given as option weights_path (--weights DIR) or ${self.env}"
            )
        path = Path(raw).expanduser()
        if not path.is_dir() or not (path / "config.json").is_file():
            raise UserError(f"{self.name} weights {path}: not a transformers model directory with config.json "
                            f"(set option weights_path / --weights or ${self.env})")
        from transformers import AutoModel

        self.fingerprint = weights_dir_fingerprint(path)
        try:
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{self.name} weights {path}: cannot load with transformers ({first})") from None
        self.weights_path = path
        self.device = torch.device(device or "cpu")
        self._model = model.to(self.device).eval()
        self._setup(model.config)
        self.resize_policy = f"torch-bicubic-antialias-{self.size}-{self.norm_name}"

    def _setup(self, config: Any) -> None:
        raise NotImplementedError

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                t = torch.from_numpy(unit_range(x[s : s + batch_size])).to(torch.float32)[:, None]
                if t.shape[-2:] != (self.size, self.size):
                    t = torch.nn.functional.interpolate(t, size=(self.size, self.size), mode="bicubic",
                                                        antialias=True, align_corners=False).clamp(0, 1)
                t = ((t.expand(-1, 3, -1, -1) - mean) / std).to(self.device)
                out[s : s + len(t)] = self._embed(t).to("cpu", torch.float64).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return describe_fields(self, self.compute_dtype)


@EXTRACTORS.register("dinov2")
class Dinov2Extractor(_TransformersExtractor):
    """DINOv2 CLS features (FD-DINOv2, Stein et al. 2023) from a local transformers directory: FD/KD."""

    name = "dinov2"
    family = "dinov2"
    env = "LDBENCH_DINOV2_WEIGHTS"
    example = "facebook/dinov2-small"
    mean, std, norm_name = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "imagenet-norm"

    def _setup(self, config: Any) -> None:
        if getattr(config, "model_type", "") != "dinov2":
            raise UserError(f"{self.weights_path}: model_type {config.model_type!r}, expected dinov2")
        self.size = 224
        self.dim = int(config.hidden_size)

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._model(pixel_values=pixels).pooler_output  # the final-layernormed CLS token


@EXTRACTORS.register("clip")
class ClipExtractor(_TransformersExtractor):
    """CLIP image embeddings (as CMMD, Jayasumana et al. 2024) from a local transformers directory: FD/KD."""

    name = "clip"
    family = "clip"
    env = "LDBENCH_CLIP_WEIGHTS"
    example = "openai/clip-vit-base-patch32"
    mean, std, norm_name = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "clip-norm"

    def _setup(self, config: Any) -> None:
        kind = getattr(config, "model_type", "")
        if kind == "clip":
            self.size = int(config.vision_config.image_size)
            self.dim = int(config.projection_dim)
        elif kind == "clip_vision_model":
            self.size = int(config.image_size)
            self.dim = int(config.hidden_size)
        else:
            raise UserError(f"{self.weights_path}: model_type {kind!r}, expected clip or clip_vision_model")
        self._full = kind == "clip"

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._full:
            out = self._model.get_image_features(pixel_values=pixels)
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        return self._model(pixel_values=pixels).pooler_output
