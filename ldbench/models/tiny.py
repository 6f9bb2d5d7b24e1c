"""The embedded base model: a tiny latent diffusion model built from diffusers parts.

No Stable Diffusion weights can be downloaded here, so ldbench builds a model with Stable Diffusion's
anatomy at toy size and pretrains it on natural images that installed packages carry
(scikit-image's data images and scikit-learn's sample images):

- AutoencoderKL: 64x64 RGB -> 4x16x16 latents (downsampling 4), levels of (w, 2w, 2w) channels. As in
  Stable Diffusion, the latent scaling factor is 1 / std of the natural-image latents, so natural
  latents are ~unit variance and a medical domain's latents sit off the N(0, I) prior: the mismatch
  Latent Drifting is about.
- CLIPTextModel (2 layers, width 64) with a character-level CLIP BPE tokenizer written here (every
  character is a token; no merges), saved in the standard CLIPTokenizer files. It is not trained: its
  seeded initialisation is a fixed text embedding the UNet learns to read, frozen like SD's CLIP.
- UNet2DConditionModel with cross-attention on the text, DDPM noise schedule of Stable Diffusion v1
  (scaled_linear, 0.00085..0.012, 1000 steps), ε-prediction.

Pretraining is deterministic under its seed on CPU at a fixed thread count, and the result is saved as an
ordinary diffusers StableDiffusionPipeline directory, so the embedded model and a real Stable Diffusion
take one loading path. The default config's pretrained weights ship with ldbench
(ldbench.models.embedded_weights): a run loads them instead of pretraining for an hour.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ldbench.models.components import Components
from ldbench.progress import progress_bar

IMAGE_SIZE = 64
MAX_TOKENS = 64
_TOKEN_CHARS = string.ascii_lowercase + string.digits + ",.'-/()+:%"


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes and pretraining budget of the embedded model (all part of its cache key)."""

    seed: int = 0
    image_size: int = IMAGE_SIZE
    vae_steps: int = 4000
    vae_crop: int = 32  # the autoencoder is fully convolutional: train it on 32x32 crops (4x cheaper)
    unet_steps: int = 4000
    batch_size: int = 16
    vae_lr: float = 2e-3
    unet_lr: float = 1e-3
    crops_per_image: int = 64
    vae_width: int = 32  # channels of the autoencoder's first level; its three levels have (w, 2w, 2w)


# --- components ------------------------------------------------------------------------------------


def write_char_tokenizer(directory: Path):
    """A CLIPTokenizer whose vocabulary is single characters (plain and word-final) and no merges."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _TOKEN_CHARS:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(directory / "vocab.json"),
        str(directory / "merges.txt"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=MAX_TOKENS,
    )


def build_components(tokenizer_dir: Path, seed: int = 0, vae_width: int = 16, latent_channels: int = 4) -> Components:
    """Untrained diffusers components of the tiny model, initialised from `seed`. `latent_channels`: 4 as in
    Stable Diffusion v1 (the shipped model); benchmarks/autoencoder_capacity.py measures what more buy (little)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = write_char_tokenizer(tokenizer_dir)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer.get_vocab()),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(vae_width, 2 * vae_width, 2 * vae_width),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4,
        in_channels=latent_channels,
        out_channels=latent_channels,
        layers_per_block=1,
        # Cross-attention only at the 8x8 level: 2x faster on CPU than at 16x16, same conditioning.
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDPMScheduler(
        # Stable Diffusion v1's schedule and timestep spacing (steps_offset=1, as its scheduler config).
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, steps_offset=1,
    )
    return Components(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


# --- natural images ---------------------------------------------------------------------------------


def natural_images() -> list[tuple[str, np.ndarray]]:
    """(caption word, float RGB image in [0, 1]) for every natural photo that scikit-image and
    scikit-learn install with themselves (no download)."""
    import skimage.data as skd
    from sklearn.datasets import load_sample_images

    names = [
        "astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "horse", "moon",
        "page", "rocket", "retina", "hubble_deep_field", "immunohistochemistry", "colorwheel", "cell",
    ]
    out = []
    for name in names:
        loader = getattr(skd, name, None)
        if loader is None:
            continue
        try:
            img = np.asarray(loader())
        except Exception:  # noqa: BLE001 - an optional image a skimage build may lack
            continue
        out.append((name.replace("_", " "), _to_rgb01(img)))
    sample = load_sample_images()
    for fname, img in zip(sample.filenames, sample.images, strict=True):
        out.append((Path(fname).stem, _to_rgb01(img)))
    return out


def _to_rgb01(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    if img.max() > 1.0:
        img = img / (65535.0 if img.max() > 255 else 255.0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.clip(img[..., :3], 0.0, 1.0)


def natural_crops(n_per_image: int, size: int, seed: int, photos=None) -> tuple[torch.Tensor, list[str]]:
    """Random crops at random scales of `photos` (default: natural_images()), resized to `size`:
    (N, 3, size, size) in [-1, 1] and captions."""
    rng = np.random.default_rng(seed)
    crops, captions = [], []
    for name, img in natural_images() if photos is None else photos:
        t = torch.from_numpy(img).permute(2, 0, 1)[None]
        h, w = t.shape[-2:]
        for _ in range(n_per_image):
            side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = F.interpolate(t[..., y : y + side, x : x + side], size=(size, size), mode="bilinear", antialias=True)
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            crops.append(crop[0])
            captions.append(f"a photo of {name}")
    return torch.stack(crops).clamp(0, 1) * 2 - 1, captions


# --- pretraining ------------------------------------------------------------------------------------


def _pretrain_autoencoder(vae, images: torch.Tensor, config: TinyModelConfig, gen: torch.Generator,
                          quiet: bool) -> list[float]:
    """Reconstruction + a small KL, as the LDM paper's KL-regularised autoencoder (without its perceptual
    and adversarial terms, which would need downloaded networks), with a one-cycle learning rate (5%
    warm-up, then cosine decay, so that a long pretraining ends with small refining steps). Frozen
    afterwards."""
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.vae_lr, total_steps=max(config.vae_steps, 1),
                                                   pct_start=0.05)
    vae_losses = []
    for _ in progress_bar(range(config.vae_steps), "pretrain autoencoder", quiet=quiet):
        idx = torch.randint(len(images), (config.batch_size,), generator=gen)
        y, x0 = (int(v) for v in torch.randint(0, config.image_size - config.vae_crop + 1, (2,), generator=gen))
        x = images[idx, :, y : y + config.vae_crop, x0 : x0 + config.vae_crop]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        loss = F.mse_loss(recon, x) + 1e-6 * posterior.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        vae_losses.append(loss.item())
    vae.eval().requires_grad_(False)
    return vae_losses


def build_tiny_model(out_dir: Path, config: TinyModelConfig, quiet: bool = False) -> dict:
    """The embedded model for `config` as a diffusers pipeline in `out_dir`: ldbench's shipped weights when
    `config` is the one they were pretrained with (ldbench.models.embedded_weights), else pretrained here.

    Returns a summary (losses, scaling factor, image count, where the weights came from) for provenance.
    """
    from ldbench.models import embedded_weights

    if embedded_weights.ships(config):
        parts, natural_latents, summary = embedded_weights.load(out_dir / "_tokenizer_src", config)
    else:
        parts, natural_latents, summary = pretrain_components(out_dir / "_tokenizer_src", config, quiet)
        summary = {**summary,
                   "source": "embedded tiny latent diffusion model (pretrained by ldbench for its non-default options)"}
    save_pipeline(parts, out_dir, natural_latents)
    return summary


def pretrain_components(tokenizer_dir: Path, config: TinyModelConfig, quiet: bool = False):
    """Build and pretrain the tiny model: (components, 512 scaled natural-image latents, summary)."""
    from ldbench.models.training import TrainConfig, TrainData, train_denoiser

    torch.manual_seed(config.seed)
    parts = build_components(tokenizer_dir, seed=config.seed, vae_width=config.vae_width)
    images, captions = natural_crops(config.crops_per_image, config.image_size, config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    # 1) the autoencoder
    vae = parts.vae
    vae_losses = _pretrain_autoencoder(vae, images, config, gen, quiet)

    # Stable Diffusion's recipe for the scaling factor: 1 / std of the (unscaled) natural latents.
    with torch.no_grad():
        means = torch.cat([vae.encode(images[i : i + 256]).latent_dist.mean for i in range(0, len(images), 256)])
    scaling = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling)

    # 2) the UNet on the natural latents, through the same loop the fine-tuning methods use. The text
    #    encoder stays frozen at its seeded initialisation (a fixed character-level text embedding), as
    #    Stable Diffusion keeps its CLIP encoder frozen; training it too would double the CPU time.
    data = TrainData.from_pixels(vae, images, captions)
    train = TrainConfig(steps=config.unet_steps, batch_size=config.batch_size, lr=config.unet_lr, seed=config.seed,
                        desc="pretrain denoiser", quiet=quiet)
    unet_losses = train_denoiser(parts, data, list(parts.unet.parameters()), None, train)
    summary = {
        "natural_images": len(images),
        "scaling_factor": scaling,
        "vae_loss_last": float(np.mean(vae_losses[-20:])),
        "unet_loss_last": float(np.mean(unet_losses[-20:])),
    }
    return parts, (means[:512] * scaling).to(torch.float32), summary


def save_pipeline(parts: Components, out_dir: Path, natural_latents: torch.Tensor) -> None:
    """The components as an ordinary diffusers StableDiffusionPipeline directory (`out_dir/pipeline`), and
    the natural-image latents that the report's latent figure shows (`natural_latents.npz`)."""
    from diffusers import StableDiffusionPipeline
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its one-shard "Writing model shards" bar is noise
    pipe = StableDiffusionPipeline(**parts.modules(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out_dir / "pipeline", safe_serialization=True)
    np.savez(out_dir / "natural_latents.npz", latents=natural_latents.numpy().astype(np.float32))
