"""Time ldbench's sampling loop (ldbench.models.sampling.text_to_latents) against diffusers'
StableDiffusionPipeline on the same model, scheduler, prompts and generator, and print the ratio per
drift placement (target <= 1.02).

    python benchmarks/perf/bench_sampling.py [--steps 50] [--batch 8] [--repeats 5] [--threads 2]

The model is the embedded tiny model's architecture (seeded random weights: speed does not depend on
training). Both sides run 50 DDIM steps with classifier-free guidance (7.5) and return latents, so the
timing is the reverse process alone. The pipeline samples under LD through the public helper
ldbench.drift.pipelines.drift_kwargs (initial latents and the every-step callback), i.e. what a
researcher with a stock pipeline would run. The two are timed in alternation, `repeats` times each, and
the medians compared, so background load hits both alike. Each pair's outputs are checked equal, so the
two sides do the same work. Not a test: run by hand; benchmarks/perf/bench_gpu.py reuses it on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ldbench.models import Components

TARGET = 1.02
PROMPT = "brain mri, 70 year old, alzheimer's disease"


def drifts():
    from ldbench.drift import NO_DRIFT, Drift

    return {"no LD": NO_DRIFT, "LD init": Drift(0.1, train="noise", sample="init"),
            "LD every-step": Drift(0.1, train="noise", sample="every-step")}


def stock_pipeline(parts: Components):
    from diffusers import StableDiffusionPipeline

    from ldbench.models.samplers import make_sampler

    pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                   unet=parts.unet, scheduler=make_sampler("ddim", parts.scheduler),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ldbench(parts: Components, drift, batch: int, steps: int, guidance: float) -> tuple[float, torch.Tensor]:
    from ldbench.models.samplers import make_sampler
    from ldbench.models.sampling import text_to_latents

    device = parts.unet.device
    sync(device)
    start = time.perf_counter()
    out = text_to_latents(parts, make_sampler("ddim", parts.scheduler), [PROMPT] * batch, drift, steps, guidance,
                          torch.Generator().manual_seed(0))
    sync(device)
    return time.perf_counter() - start, out


def time_pipeline(pipe, drift, batch: int, steps: int, guidance: float) -> tuple[float, torch.Tensor]:
    from ldbench.drift.pipelines import drift_kwargs

    sync(pipe.unet.device)
    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    out = pipe([PROMPT] * batch, num_inference_steps=steps, guidance_scale=guidance, output_type="latent",
               generator=g, **drift_kwargs(pipe, drift, batch, generator=g)).images
    sync(pipe.unet.device)
    return time.perf_counter() - start, out


def compare(parts: Components, batch: int, steps: int, repeats: int, guidance: float = 7.5) -> list[dict]:
    """Per drift placement: median seconds per call of each side, images/s and the ratio ldbench / pipeline."""
    pipe = stock_pipeline(parts)
    rows = []
    for label, drift in drifts().items():
        time_ldbench(parts, drift, batch, 2, guidance)  # warm-up (allocator, first-call paths)
        time_pipeline(pipe, drift, batch, 2, guidance)
        ours, theirs = [], []
        for _ in range(repeats):
            t_ours, z_ours = time_ldbench(parts, drift, batch, steps, guidance)
            t_pipe, z_pipe = time_pipeline(pipe, drift, batch, steps, guidance)
            if not torch.allclose(z_ours.float(), z_pipe.float(), rtol=1e-3, atol=1e-4):
                raise SystemExit(f"{label}: ldbench and the pipeline sampled different latents; the timing would "
                                 "compare different work")
            ours.append(t_ours)
            theirs.append(t_pipe)
        o, p = statistics.median(ours), statistics.median(theirs)
        rows.append({"drift": label, "ldbench_s": o, "pipeline_s": p, "ldbench_images_per_s": batch / o,
                     "pipeline_images_per_s": batch / p, "ratio": o / p})
    return rows


def print_rows(rows: list[dict], target: float = TARGET) -> None:
    print(f"{'drift':15s} {'ldbench s':>10s} {'pipeline s':>11s} {'ldbench img/s':>14s} {'ratio':>6s}  "
          f"(target <= {target})")
    for r in rows:
        print(f"{r['drift']:15s} {r['ldbench_s']:10.3f} {r['pipeline_s']:11.3f} {r['ldbench_images_per_s']:14.2f} "
              f"{r['ratio']:6.3f}")
    print(f"worst ratio {max(r['ratio'] for r in rows):.3f} (target <= {target})")


def main() -> None:
    from ldbench.models.tiny import build_components

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (1 on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = build_components(Path(tempfile.mkdtemp(prefix="ldbench-bench-tok-")), seed=0)
    for module in parts.networks().values():
        module.eval().requires_grad_(False)
    print(f"tiny model (random weights), {args.steps} DDIM steps, guidance 7.5, batch {args.batch}, "
          f"{args.threads} threads")
    print_rows(compare(parts, args.batch, args.steps, args.repeats))


if __name__ == "__main__":
    main()
