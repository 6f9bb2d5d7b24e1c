"""sd14-random: Stable Diffusion v1.4's exact architecture with seeded random weights.

RANDOM WEIGHTS: FOR TESTS AND TIMINGS ONLY, NEVER RESULTS. The model has SD v1.4's UNet2DConditionModel,
AutoencoderKL and CLIP ViT-L/14 text encoder configurations (written out below as data, as in
CompVis/stable-diffusion-v1-4's config files), its noise schedule and its real CLIP BPE tokenizer
(ldbench.models.clip_tokenizer), but no trained weight: it exercises every code path and memory / time
cost of a real SD v1.4 run without the weights, which cannot be downloaded here. Its images are noise.

`width_divisor` divides every channel width (UNet, autoencoder, text encoder) and `text_layers` cuts the
text encoder's depth, keeping the block structure, the tokenizer and the 77 positions: a narrowed model
for fast CPU tests. Built deterministically from `seed` on CPU and saved as an ordinary diffusers
StableDiffusionPipeline directory, so it loads through ldbench.models.load_components like a real SD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ldbench.errors import UserError
from ldbench.models.components import Components

NAME = "sd14-random"
LABEL = "sd14-random (random weights: for tests and timings, not results)"
WIDTH_DIVISORS = (1, 2, 4, 8)

# --- CompVis/stable-diffusion-v1-4's configurations ----------------------------------------------
UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 768, "attention_head_dim": 8,
}
VAE = {
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "act_fn": "silu",
    "latent_channels": 4, "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215,
}
TEXT = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "projection_dim": 768,
    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "attention_dropout": 0.0, "dropout": 0.0,
    "initializer_range": 0.02, "initializer_factor": 1.0,
    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
}
SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "steps_offset": 1, "clip_sample": False, "set_alpha_to_one": False, "skip_prk_steps": True,
    "prediction_type": "epsilon",
}
# SD v1.4's parameter counts (diffusers / transformers modules), checked by the tests
PARAMETERS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
VAE_FACTOR = 8  # 2 ** (len(VAE block_out_channels) - 1)


@dataclass(frozen=True)
class SD14Config:
    """Options of sd14-random (all part of its cache key)."""

    seed: int = 0
    width_divisor: int = 1  # 1: SD v1.4's widths; 2, 4, 8 divide every channel width (fast CPU tests)
    text_layers: int = 12
    image_size: int = 512

    def check(self) -> None:
        from ldbench import validate as v

        v.seed(self.seed, "seed")
        if not v.is_int(self.width_divisor) or self.width_divisor not in WIDTH_DIVISORS:
            raise UserError(f"width_divisor must be one of {', '.join(map(str, WIDTH_DIVISORS))}, got "
                            f"{self.width_divisor!r}; e.g. width_divisor: 8")
        v.int_in(self.text_layers, "text_layers", 1, TEXT["num_hidden_layers"], example=2)
        v.int_in(self.image_size, "image_size", 64, 2048, example=512)
        if self.image_size % 64:
            raise UserError(f"image_size must be a multiple of 64 (the autoencoder's 8 times the UNet's 8), "
                            f"got {self.image_size}; e.g. image_size: 64")


def _groups(widths) -> int:
    """GroupNorm groups: SD's 32, or fewer where a narrowed width has fewer channels."""
    import math

    return math.gcd(32, *widths)


def unet_config(config: SD14Config) -> dict:
    widths = tuple(c // config.width_divisor for c in UNET["block_out_channels"])
    return {**UNET, "block_out_channels": widths, "norm_num_groups": _groups(widths),
            "cross_attention_dim": TEXT["hidden_size"] // config.width_divisor,
            "sample_size": config.image_size // VAE_FACTOR}


def vae_config(config: SD14Config) -> dict:
    widths = tuple(c // config.width_divisor for c in VAE["block_out_channels"])
    return {**VAE, "block_out_channels": widths, "norm_num_groups": _groups(widths), "sample_size": config.image_size}


def text_config(config: SD14Config) -> dict:
    d = config.width_divisor
    return {**TEXT, "hidden_size": TEXT["hidden_size"] // d, "intermediate_size": TEXT["intermediate_size"] // d,
            "projection_dim": TEXT["projection_dim"] // d, "num_hidden_layers": config.text_layers}


def build_components(tokenizer_dir: Path, config: SD14Config = SD14Config()) -> Components:
    """SD v1.4's components (narrowed by config.width_divisor) with random weights seeded by config.seed."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ldbench.models.clip_tokenizer import clip_tokenizer

    config.check()
    torch.manual_seed(config.seed)
    unet = UNet2DConditionModel(**unet_config(config))
    vae = AutoencoderKL(**vae_config(config))
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(config)))
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
    return Components(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(tokenizer_dir), unet=unet,
                      scheduler=PNDMScheduler.from_config(SCHEDULER))  # keeps clip_sample, as SD v1.4's config


def save_sd14_random(out_dir: Path, config: SD14Config) -> dict:
    """Build the model and save it as a diffusers pipeline in out_dir/pipeline; returns its provenance."""
    from diffusers import StableDiffusionPipeline

    parts = build_components(out_dir / "_tokenizer_src", config)
    pipe = StableDiffusionPipeline(**parts.modules(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out_dir / "pipeline", safe_serialization=True)
    networks = parts.networks()
    counts = {k: sum(p.numel() for p in networks[k].parameters()) for k in ("unet", "vae", "text_encoder")}
    return {"source": LABEL, "random_weights": True, "parameters": counts}
