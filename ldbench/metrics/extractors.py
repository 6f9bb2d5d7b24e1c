"""Feature extractors: images (N, H, W) in [0, 1] -> float64 features (N, dim).

Every extractor says what it is (`describe()`): name, family, SHA-256 of its weights, resize and
channel policies, dimension, compute dtype. Those fields go into every record and cache key, and
reference statistics are only used with an extractor whose fields match (see metrics.stats).

- `inception`: torch-fidelity's TF-compatible Inception-v3 pool3 features (2048-d), with the weights
  file's SHA-256 pinned; the only family whose distances are called FID / KID.
- `domain`: the offline DomainNet (metrics.domain), trained on the benchmark's own images; FD / KD.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

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
from ldbench.registry import Registry

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
INCEPTION_ENV = "LDBENCH_INCEPTION_WEIGHTS"


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str  # as shown in records: "inception", "inception-unverified", "domain"
    family: str  # "inception" or "domain": distances are called FID / KID only for "inception"
    fingerprint: str  # SHA-256 of the weights file
    resize_policy: str
    channel_policy: str
    dim: int

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W) float in [0, 1] -> (N, dim) float64; the batch size does not change the result."""
        ...

    def describe(self) -> dict[str, Any]: ...


EXTRACTORS: Registry[Callable[..., FeatureExtractor]] = Registry("feature extractor")


def create_extractor(name: str, **options: Any) -> FeatureExtractor:
    """The registered extractor `name`, built with `options` (unknown options are a UserError)."""
    factory = EXTRACTORS.get(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise UserError(
            f"feature extractor {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(sorted(params))}"
        )
    return factory(**options)


def _describe(ex: Any, dtype: str) -> dict[str, Any]:
    return {
        "name": ex.name,
        "family": ex.family,
        "fingerprint": ex.fingerprint,
        "resize_policy": ex.resize_policy,
        "channel_policy": ex.channel_policy,
        "dim": ex.dim,
        "dtype": dtype,
    }


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")


# --- Inception (torch-fidelity) ---------------------------------------------------------------------


def default_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME


def resolve_inception_path(weights_path: str | os.PathLike | None = None) -> Path:
    """Option `weights_path`, else $LDBENCH_INCEPTION_WEIGHTS, else torch hub's checkpoint directory."""
    if weights_path:
        return Path(weights_path).expanduser()
    env = os.environ.get(INCEPTION_ENV)
    if env:
        return Path(env).expanduser()
    return default_inception_path()


def _safe_inception_state(data: bytes, path: Path) -> dict[str, torch.Tensor]:
    """Unpickle with weights_only=True: only tensors and containers, never arbitrary code."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a plain Inception state dict, refusing to load it ({first})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UserError(f"{path}: not a plain Inception state dict (expected a mapping of names to tensors)")
    return state


@EXTRACTORS.register("inception")
class InceptionExtractor:
    """Inception-v3 pool3 (2048-d) via torch-fidelity, SHA-256-pinned weights: FID/KID comparable with papers."""

    family = "inception"
    resize_policy = "torch-fidelity-tf1-bilinear-299"
    channel_policy = "gray-repeat-rgb"
    dim = 2048
    compute_dtype = "float32"

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        allow_unverified: bool = False,
        device: str | None = None,
    ) -> None:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve_inception_path(weights_path)
        if not path.is_file():
            raise UserError(
                f"Inception weights not found at {path}; download {INCEPTION_URL} (SHA-256 "
                f"{INCEPTION_SHA256[:12]}…) and put it there, or pass --inception-weights PATH "
                f"(or set {INCEPTION_ENV})"
            )
        data = path.read_bytes()  # hashed and loaded from the same bytes: no swap between check and use
        fingerprint = hashlib.sha256(data).hexdigest()
        if fingerprint != INCEPTION_SHA256 and not allow_unverified:
            raise UserError(
                f"Inception weights {path} have SHA-256 {fingerprint[:12]}…, expected {INCEPTION_SHA256[:12]}… "
                f"({INCEPTION_FILENAME}); use that file, or pass --allow-unverified-weights to go on with "
                f"these (results are then named inception-unverified and are not comparable with published FIDs)"
            )
        self.name = "inception" if fingerprint == INCEPTION_SHA256 else "inception-unverified"
        self.fingerprint = fingerprint
        self.weights_path = path
        self.device = torch.device(device or "cpu")
        # torch-fidelity 0.4.0 reads the path it is given with torch.load(weights_only=False), which can
        # run code from a crafted pickle. So the file is unpickled here with weights_only=True and
        # torch-fidelity only gets an in-memory re-serialisation of the resulting plain tensors.
        state = _safe_inception_state(data, path)
        del data
        buf = io.BytesIO()
        torch.save(state, buf)
        del state
        buf.seek(0)
        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=buf
            )
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"{path}: not torch-fidelity Inception-v3 weights ({first})") from None
        model.eval()
        # Gray input is the same image in R, G and B. The resize acts per channel, and a convolution of three
        # equal channels is one convolution with its weights summed over them, so the resize and the stem
        # convolution run once instead of three times.
        stem = model.Conv2d_1a_3x3.conv
        stem_gray = torch.nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        with torch.no_grad():
            stem_gray.weight.copy_(stem.weight.sum(dim=1, keepdim=True))
        self._stem_gray = fuse_conv_bn_eval(stem_gray.eval(), model.Conv2d_1a_3x3.bn).to(self.device)
        # Eval-mode BatchNorm is a per-channel affine map, so each convolution + BatchNorm is one convolution
        # with scaled weights and a bias (torch's fuse_conv_bn_eval): one pass over each activation fewer,
        # about 1.2x faster on CPU. channels_last: oneDNN's convolutions run about 1.5x faster in this layout.
        # Both measured with benchmarks/perf/bench_fid.py; pool3 equals a fresh torch-fidelity model's to
        # float32 rounding (test_inception_gray_path_equals_torch_fidelity_forward, and the FID/KID parity tests).
        for block in model.modules():
            if isinstance(getattr(block, "bn", None), torch.nn.BatchNorm2d) and hasattr(block, "conv"):
                block.conv = fuse_conv_bn_eval(block.conv, block.bn)
                block.bn = torch.nn.Identity()
        self._model = model.to(self.device).to(memory_format=torch.channels_last)

    def _to_uint8_gray(self, images: np.ndarray) -> torch.Tensor:
        """Gray [0, 1] -> uint8 round(x * 255), (N, 1, H, W): the values an RGB PNG of the image loads as."""
        return torch.from_numpy(np.rint(images * 255.0).astype(np.uint8))[:, None]

    def _pool3_of_gray(self, u8: torch.Tensor) -> torch.Tensor:
        """torch-fidelity's forward (its TF1-compatible bilinear resize to 299, then Inception-v3 to pool3) for
        (N, 1, H, W) uint8 images taken as RGB with three equal channels."""
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

        size = (self._model.INPUT_IMAGE_SIZE,) * 2
        return self._trunk(interpolate_bilinear_2d_like_tensorflow1x(u8.float(), size=size, align_corners=False))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features of gray float images already 299 x 299 in [0, 255] (torch-fidelity's own forward only
        takes uint8 RGB and always resizes), through the one-channel stem."""
        m = self._model
        x = torch.relu(self._stem_gray((x - 128) / 128))  # the stem's BatchNorm is folded into it
        for layer in ("Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2",
                      "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                      "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
            x = getattr(m, layer)(x)
        return torch.flatten(x, 1).to(torch.float32)

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        _check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                batch = self._to_uint8_gray(unit_range(x[s : s + batch_size])).to(self.device)
                f = self._pool3_of_gray(batch)
                out[s : s + len(batch)] = f.to("cpu", torch.float64).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return _describe(self, self.compute_dtype)


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
        _check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                batch = to_input(unit_range(x[s : s + batch_size]), torch.float64).to(self.device)
                out[s : s + len(batch)] = self._net.features(batch).to("cpu").numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return _describe(self, self.compute_dtype)


# --- Inception with clean-fid's resize ---------------------------------------------------------------

CLEAN_SIZE = 299


def clean_resize_299(u8: np.ndarray) -> np.ndarray:
    """clean-fid's "clean" resize of one uint8 channel: PIL bicubic on float32 ('F' mode) to 299 x 299,
    clipped to [0, 255], kept as float32 (no re-quantisation)."""
    from PIL import Image

    img = Image.fromarray(u8.astype(np.float32), mode="F")
    img = img.resize((CLEAN_SIZE, CLEAN_SIZE), resample=Image.BICUBIC)
    return np.asarray(img, dtype=np.float32).clip(0, 255)


@EXTRACTORS.register("inception-clean")
class CleanInceptionExtractor(InceptionExtractor):
    """Inception-v3 pool3 (same network and pinned weights) with clean-fid's PIL-bicubic resize to 299: FID/KID."""

    resize_policy = "clean-fid-pil-bicubic-299"

    def __init__(self, weights_path: str | os.PathLike | None = None, allow_unverified: bool = False,
                 device: str | None = None) -> None:
        super().__init__(weights_path, allow_unverified, device)
        self.name = "inception-clean" if self.name == "inception" else "inception-clean-unverified"

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        _check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                u8 = np.rint(unit_range(x[s : s + batch_size]) * 255.0).astype(np.uint8)
                resized = np.stack([clean_resize_299(img) for img in u8])
                batch = torch.from_numpy(resized)[:, None].to(self.device)
                out[s : s + len(u8)] = self._trunk(batch).to("cpu", torch.float64).numpy()
        return out


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
        _check_batch_size(batch_size)
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
        return {**_describe(self, self.compute_dtype), "standardisation": self.standardisation}


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
        _check_batch_size(batch_size)
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
        return _describe(self, self.compute_dtype)


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


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Seeded random weights for torch-fidelity's Inception in its file format, for offline parity tests
    and benchmarks only (their features mean nothing; an extractor loading them is `inception-unverified`)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with (  # build the network without fetching or loading the real weights
            mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}),
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None),
        ):
            net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        for module in net.modules():  # keep activations at a sane scale through ~90 layers
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, torch.nn.BatchNorm2d):  # non-trivial but mild statistics: a code path that
                with torch.no_grad():  # mishandles BatchNorm shows, while activations keep a sane scale
                    module.weight.uniform_(0.9, 1.1)
                    module.bias.normal_(0.0, 0.02)
                    module.running_mean.normal_(0.0, 0.02)
                    module.running_var.uniform_(0.9, 1.1)
    torch.save(net.state_dict(), path)
    return Path(path)
