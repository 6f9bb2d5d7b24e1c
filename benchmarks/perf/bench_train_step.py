"""Time one training step of each method through ldbench's shared loop (ldbench.models.training) against a
bare diffusers training step on the same tiny model, trainable set and batch (the steps of diffusers'
example training scripts: add_noise, text encoder if it trains, UNet forward, MSE, backward, AdamW
step), and print the ratio per method (target <= 1.05).

    python benchmarks/perf/bench_train_step.py [--steps 20] [--repeats 5] [--batch-size 16] [--threads 2]

The two are timed in alternation, `repeats` times each over `steps` steps, and the medians compared,
so background load hits both alike. The Latent Drifting shift is on (δ = 0.1, placement `noise`).
ldbench's loop runs through accelerate with its defaults (fp32, no accumulation), as every cell does
unless its options ask otherwise; the timing includes creating its Accelerator once per run.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ldbench.drift import Drift
from ldbench.methods import METHODS, TrainingOptions
from ldbench.methods.custom_diffusion import cross_attention_kv
from ldbench.methods.lora import lora_config
from ldbench.models import Components
from ldbench.models.text import KeepOtherRows, add_token, prefix_prompt, tokenize
from ldbench.models.tiny import build_components
from ldbench.models.training import TrainConfig, TrainData, train_denoiser

TARGET = 1.05
CAPTIONS = ("brain mri, 70 year old, cognitively normal", "brain mri, 72 year old, alzheimer's disease")
DRIFT = Drift(0.1, train="noise", sample="none")


def setup(name: str, base: Components, data: TrainData, options: TrainingOptions):
    """(parts, data, trainable, loop kwargs) for `name`, as the method's own train() sets them up."""
    parts = copy.deepcopy(base)
    kwargs: dict = {}
    if name in ("textual-inversion", "custom-diffusion"):
        token_id = add_token(parts, options.placeholder_token, options.initializer_token)
        data = TrainData(data.latent_mean, data.latent_std, tuple(map(prefix_prompt(options.placeholder_token),
                                                                      data.captions)))
        weight = parts.text_encoder.get_input_embeddings().weight
        trainable = [weight] if name == "textual-inversion" else [*cross_attention_kv(parts.unet).values(), weight]
        kwargs = {"train_text_encoder": True, "after_step": KeepOtherRows(weight, token_id)}
    elif name == "lora":
        torch.manual_seed(0)
        parts.unet.add_adapter(lora_config(options.lora_rank))
        trainable = [p for n, p in parts.unet.named_parameters() if "lora_" in n]
    else:
        trainable = list(parts.unet.parameters())
    if name == "dreambooth":
        g = torch.Generator().manual_seed(2)
        shape = (16, *data.latent_mean.shape[1:])
        prior = TrainData(torch.randn(shape, generator=g), torch.zeros(shape), ("brain mri",) * 16)
        data = TrainData(data.latent_mean, data.latent_std, tuple(f"sks {c}" for c in data.captions), prior=prior)
        kwargs = {"prior_loss_weight": options.prior_loss_weight}
    return parts, data, trainable, kwargs


def sync(module: torch.nn.Module) -> None:
    device = next(module.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ldbench(parts, data, trainable, kwargs, options, steps: int) -> float:
    sync(parts.unet)
    start = time.perf_counter()
    after_step = kwargs.get("after_step")
    config = TrainConfig(steps=steps, batch_size=options.batch_size, lr=options.lr, seed=0, quiet=True,
                         mixed_precision=options.mixed_precision,
                         **{k: v for k, v in kwargs.items() if k != "after_step"})
    train_denoiser(parts, data, trainable, DRIFT, config, after_step=after_step)
    sync(parts.unet)
    return (time.perf_counter() - start) / steps


def time_bare(parts, data, trainable, kwargs, options, steps: int) -> float:
    """The training step as diffusers' example scripts write it, with nothing of ldbench's loop."""
    unet, text_encoder, scheduler = parts.unet, parts.text_encoder, parts.scheduler
    train_te = kwargs.get("train_text_encoder", False)
    after_step = kwargs.get("after_step")
    prior = data.prior
    b = options.batch_size
    device = next(unet.parameters()).device
    autocast = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[options.mixed_precision]
    sync(unet)
    start = time.perf_counter()
    ids = tokenize(parts.tokenizer, data.captions[:1] * b + (prior.captions[:1] * b if prior else ())).to(device)
    for p in [*unet.parameters(), *text_encoder.parameters()]:
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    unet.train()
    opt = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=1e-2)
    if not train_te:
        with torch.no_grad():
            cached = text_encoder(ids)[0]
    n = len(ids)
    z0 = (torch.cat([data.latent_mean[:b], prior.latent_mean[:b]]) if prior else data.latent_mean[:b]).to(device)
    for _ in range(steps):
        noise = torch.randn_like(z0) + DRIFT.delta
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), device=device)
        x_t = scheduler.add_noise(z0, noise, t)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            emb = text_encoder(ids)[0] if train_te else cached
            pred = unet(x_t, t, encoder_hidden_states=emb).sample.float()
        if prior:
            loss = F.mse_loss(pred[:b], noise[:b]) + kwargs["prior_loss_weight"] * F.mse_loss(pred[b:], noise[b:])
        else:
            loss = F.mse_loss(pred, noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step()
        loss.item()
    unet.eval()
    sync(unet)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", nargs="*", default=METHODS.names())
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = build_components(Path(tempfile.mkdtemp(prefix="ldbench-bench-tok-")), seed=0)
    g = torch.Generator().manual_seed(1)
    data = TrainData(torch.randn(64, 4, 16, 16, generator=g), torch.full((64, 4, 16, 16), 0.1),
                     tuple(CAPTIONS[i % 2] for i in range(64)))
    print(f"{'method':18s} {'ldbench ms/step':>16s} {'bare ms/step':>13s} {'ratio':>6s}  (target <= {TARGET})")
    worst = 0.0
    for name in args.methods:
        options = METHODS.options(name, {"batch_size": args.batch_size})
        parts, d, trainable, kwargs = setup(name, base, data, options)
        time_ldbench(parts, d, trainable, kwargs, options, 2)  # warm-up (allocator, first-call paths)
        time_bare(parts, d, trainable, kwargs, options, 2)
        ours, bare = [], []
        for _ in range(args.repeats):
            ours.append(time_ldbench(parts, d, trainable, kwargs, options, args.steps))
            bare.append(time_bare(parts, d, trainable, kwargs, options, args.steps))
        o, b = statistics.median(ours), statistics.median(bare)
        worst = max(worst, o / b)
        print(f"{name:18s} {o * 1e3:16.1f} {b * 1e3:13.1f} {o / b:6.3f}")
    print(f"worst ratio {worst:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
