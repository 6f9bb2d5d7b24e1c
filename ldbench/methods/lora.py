"""`lora` (Hu et al. 2022): low-rank adapters on the UNet's attention projections (to_q, to_k, to_v,
to_out.0 of self- and cross-attention) through peft; only the adapters train.

The adapters are added with diffusers' own `unet.add_adapter(LoraConfig)` (rank LoRAOptions.lora_rank,
alpha = rank) and saved as peft's adapter state dict alone (lora_A / lora_B weights), which
`peft.set_peft_model_state_dict` or, with a "unet." prefix, `pipe.load_lora_weights` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ldbench import validate as v
from ldbench.methods import METHODS, TrainingOptions
from ldbench.models import Components
from ldbench.models.training import TrainData, train_denoiser

TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass(frozen=True)
class LoRAOptions(TrainingOptions):
    """TrainingOptions and:

    lora_rank          adapter rank r (alpha = r, so the LoRA scale is 1).
    """

    lora_rank: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        v.positive_int(self.lora_rank, "method option lora_rank", example=4)


def lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGET_MODULES)


class LoRA:
    name = "lora"
    description = "LoRA: low-rank adapters on the UNet's attention"
    options_class = LoRAOptions
    trains = "LoRA adapters (rank lora_rank) on the UNet attention projections; base weights frozen"

    def train(self, parts: Components, data: TrainData, drift, options: LoRAOptions, seed: int, quiet: bool):
        from peft import get_peft_model_state_dict

        unet = parts.unet
        torch.manual_seed(seed)  # the adapters' random init (lora_B starts at zero: no change at step 0)
        unet.add_adapter(lora_config(options.lora_rank))
        trainable = [p for n, p in unet.named_parameters() if "lora_" in n]
        losses = train_denoiser(parts, data, trainable, drift, options.train_config(seed, quiet, "lora"))
        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(unet).items()}, losses

    def apply(self, parts: Components, trained: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        rank = next(v.shape[0] for k, v in trained.items() if "lora_A" in k)
        parts.unet.add_adapter(lora_config(rank))
        result = set_peft_model_state_dict(parts.unet, trained)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"lora weights do not match this UNet: unexpected keys {unexpected[:3]}")
        parts.unet.eval().requires_grad_(False)


METHODS.add("lora", LoRA())
