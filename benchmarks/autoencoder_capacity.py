"""What the embedded autoencoder's latent can carry: reconstruction PSNR of the embedded datasets' test splits
for a given number of latent channels, against what ideal resolution losses score.

    python benchmarks/autoencoder_capacity.py --latent-channels 16 [--train-on natural] [--steps 4000] [--threads 2]
        [--lr 2e-3] [--crops-per-image 64] [--grey-fraction 0] [--refine-steps 0]

Trains an autoencoder exactly as the embedded base model's pretraining does (ldbench.models.tiny: the same
natural-image crops, width, batch, steps, one-cycle learning rate and seed; only the number of latent channels
differs, or with `--train-on` the images it learns from: a dataset's train split instead of the photos, or
`natural-all`, the photos and the four others that installed packages carry; with `--steps` and `--lr` the
length and peak of its one-cycle schedule; with `--crops-per-image` how many crops it cuts from each photo;
with `--grey-fraction` the share of crops turned grey) and scores the synth-brain and synth-cxr test splits
through it as the run's `autoencoder` stage does (encoder mean, decoder, mean of the RGB channels; PSNR and
SSIM per image, mean with a 95% bootstrap CI). The table also shows:

- the shipped autoencoder (4 channels), loaded, not trained;
- with `--refine-steps N`, each autoencoder's decoder from a better latent than its encoder's: the encoder's
  mean refined by N Adam steps on the decoder's squared error against the scan itself. A lower bound on what
  the decoder can show of a scan, so its gain over the encoder's latent is a lower bound on what the
  encoder's domain gap costs (the run's `autoencoder` stage and every generated image use the encoder and the
  decoder as they are; about 5 s per step for synth-brain's 120 test scans on 2 CPU cores);
- the test images with only what a lower resolution keeps: bicubic 2x down and up again (32 x 32 = 1024
  numbers per grey image, as many as 16 x 16 x 4 latents carry), and Gaussian blurs of 0.5, 0.7 and 1 px.

`--latent-channels 4` retrains the shipped recipe itself (same seed and thread count as
`ldbench pretrain-embedded`); 0 skips training and prints only the references. 9.5 to 25 min per 4000 steps on
2 CPU cores (2-core AMD EPYC, quiet and busy).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from ldbench.data import create_dataset
from ldbench.metrics.counterfactual_scores import image_similarity
from ldbench.metrics.significance import mean_with_ci
from ldbench.models import embedded_weights
from ldbench.models.components import Components
from ldbench.models.sampling import decode_latents, encode_images
from ldbench.models.tiny import (
    TinyModelConfig,
    _pretrain_autoencoder,
    _to_rgb01,
    build_components,
    natural_crops,
    natural_images,
)

DATASETS = ("synth-brain", "synth-cxr")
BOOTSTRAP, SEED = 200, 0
REFINE_LR = 0.02  # Adam's step on scaled latents (unit variance on the photos) when fitting them to a scan


def test_images() -> dict[str, np.ndarray]:
    return {name: np.asarray(create_dataset(name).prepare().table.split("test").images, dtype=np.float32)
            for name in DATASETS}


def other_packaged_photos() -> list[tuple[str, np.ndarray]]:
    """The photographs installed packages carry that the embedded pretraining does not use: scikit-image's
    stereo motorcycle (left view), clock and text, matplotlib's sample photograph."""
    import matplotlib
    import skimage.data as skd
    import skimage.io

    hopper = skimage.io.imread(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    photos = {"motorcycle": skd.stereo_motorcycle()[0], "clock": skd.clock(), "text": skd.text(), "grace hopper": hopper}
    return [(name, _to_rgb01(np.asarray(image))) for name, image in photos.items()]


def greyed(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """`images` (N, 3, H, W) with a random `fraction` of them (their own generator) replaced by their luminance
    (ITU-R BT.601 weights) in all three channels, as a grey scan is fed to the autoencoder."""
    chosen = torch.from_numpy(np.random.default_rng(1).random(len(images)) < fraction).view(-1, 1, 1, 1)
    luminance = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return torch.where(chosen, luminance.expand_as(images), images)


def trained_autoencoder(latent_channels: int, steps: int, train_on: str, lr: float = TinyModelConfig.vae_lr,
                        crops_per_image: int = TinyModelConfig.crops_per_image,
                        grey_fraction: float = 0.0) -> tuple[Components, float]:
    """The embedded pretraining's autoencoder stage (pretrain_components' draws, in its order) with
    `latent_channels` channels, on the natural crops (`grey_fraction` of them grey) or a dataset's train split:
    (components, seconds)."""
    config = TinyModelConfig(vae_steps=steps, vae_lr=lr, crops_per_image=crops_per_image)
    torch.manual_seed(config.seed)
    with tempfile.TemporaryDirectory() as tok:
        parts = build_components(Path(tok), seed=config.seed, vae_width=config.vae_width,
                                 latent_channels=latent_channels)
    if train_on in DATASETS:
        gray = torch.from_numpy(np.asarray(create_dataset(train_on).prepare().table.split("train").images,
                                           dtype=np.float32))
        images = gray[:, None].repeat(1, 3, 1, 1) * 2 - 1  # as encode_images feeds a scan
    else:  # the crops draw from their own generator, so the training draws are the same either way
        photos = natural_images() + (other_packaged_photos() if train_on == "natural-all" else [])
        images, _ = natural_crops(config.crops_per_image, config.image_size, config.seed, photos)
        images = greyed(images, grey_fraction)
    gen = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    _pretrain_autoencoder(parts.vae, images, config, gen, quiet=False)
    return parts, time.perf_counter() - start


def shipped_autoencoder() -> Components:
    with tempfile.TemporaryDirectory() as tok:
        parts, _, _ = embedded_weights.load(Path(tok), TinyModelConfig())
    return parts


def reconstructed(parts: Components, images: np.ndarray) -> np.ndarray:
    codes = encode_images(parts, torch.from_numpy(images))
    return decode_latents(parts, codes).numpy()


def refined(parts: Components, images: np.ndarray, steps: int, lr: float = REFINE_LR) -> np.ndarray:
    """`images` (N, H, W) in [0, 1] decoded from latents fitted to them: the encoder's scaled means, then
    `steps` Adam steps at `lr` on the squared error of the decoded grey image (the mean of its RGB channels)
    against the image."""
    vae = parts.vae.requires_grad_(False)  # the gradients reach only the latents
    target = torch.from_numpy(images)
    latents = encode_images(parts, target).detach().requires_grad_(True)
    opt = torch.optim.Adam([latents], lr=lr)
    for _ in range(steps):  # decode_latents' read-out without its clamp, so saturated pixels still pull
        decoded = vae.decode(latents / vae.config.scaling_factor).sample.add(1).div(2).mean(dim=1)
        loss = F.mse_loss(decoded, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return decode_latents(parts, latents.detach()).numpy()  # read out as the run reads every image


def resolution_references(images: np.ndarray) -> dict[str, np.ndarray]:
    x = torch.from_numpy(images)[:, None].double()
    small = F.interpolate(x, scale_factor=0.5, mode="bicubic", antialias=True)
    refs = {"bicubic 2x down and up": F.interpolate(small, size=images.shape[-2:], mode="bicubic").clamp(0, 1)[:, 0]
            .numpy()}
    for sigma in (0.5, 0.7, 1.0):
        refs[f"Gaussian blur {sigma} px"] = np.stack([gaussian_filter(im.astype(np.float64), sigma) for im in images])
    return refs


def scores(images: np.ndarray, other: np.ndarray) -> str:
    s = image_similarity(other, images)
    (psnr, psnr_ci), (ssim, _) = mean_with_ci(s["psnr"], BOOTSTRAP, SEED), mean_with_ci(s["ssim"], BOOTSTRAP, SEED)
    return f"{psnr:.2f} [{psnr_ci[0]:.2f}, {psnr_ci[1]:.2f}] dB, SSIM {ssim:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latent-channels", type=int, default=8, help="0: only the references (default 8)")
    parser.add_argument("--train-on", default="natural", choices=("natural", "natural-all", *DATASETS),
                        help="the images the autoencoder learns from: natural (default), the embedded pretraining's "
                             "photos; natural-all, those and the 4 other photos installed packages carry; a "
                             "dataset's train split")
    parser.add_argument("--steps", type=int, default=TinyModelConfig.vae_steps,
                        help="length of the one-cycle schedule (default: the shipped model's)")
    parser.add_argument("--lr", type=float, default=TinyModelConfig.vae_lr,
                        help="peak of the one-cycle schedule (default: the shipped model's)")
    parser.add_argument("--crops-per-image", type=int, default=TinyModelConfig.crops_per_image,
                        help="crops cut from each photo (default: the shipped model's)")
    parser.add_argument("--grey-fraction", type=float, default=0.0,
                        help="share of the photo crops turned grey (default 0)")
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="also score each autoencoder's decoder from its encoder's latent refined by this "
                             "many Adam steps on the scan's reconstruction error (default 0: not)")
    parser.add_argument("--threads", type=int, default=embedded_weights.PRETRAIN_THREADS)
    args = parser.parse_args()
    if (min(args.steps, args.crops_per_image) < 1 or args.lr <= 0 or not 0 <= args.grey_fraction <= 1
            or args.refine_steps < 0):
        parser.error("--steps and --crops-per-image must be at least 1, --refine-steps at least 0, --lr above 0, "
                     "--grey-fraction in [0, 1]")
    torch.set_num_threads(args.threads)
    tests = test_images()
    rows = {"shipped autoencoder (4 channels)": shipped_autoencoder()}
    if args.latent_channels:
        parts, seconds = trained_autoencoder(args.latent_channels, args.steps, args.train_on, args.lr,
                                             args.crops_per_image, args.grey_fraction)
        recipe = f"peak lr {args.lr:g}, {args.crops_per_image} crops per image, {args.grey_fraction:.0%} grey"
        rows[f"{args.latent_channels} channels, {args.steps} steps on {args.train_on}, {recipe} ({seconds:.0f} s)"] = parts
    print(f"| reconstruction | {' | '.join(f'{name} (n = {len(im)})' for name, im in tests.items())} |")
    print("|---|" + "---|" * len(tests))
    for label, parts in rows.items():
        print(f"| {label} | {' | '.join(scores(im, reconstructed(parts, im)) for im in tests.values())} |")
        if args.refine_steps:
            cells = " | ".join(scores(im, refined(parts, im, args.refine_steps)) for im in tests.values())
            print(f"| {label}, its decoder from latents refined by {args.refine_steps} Adam steps | {cells} |")
    references = {name: resolution_references(im) for name, im in tests.items()}
    for label in next(iter(references.values())):
        print(f"| {label} | {' | '.join(scores(im, references[n][label]) for n, im in tests.items())} |")


if __name__ == "__main__":
    main()
