"""The GPU benchmark: Stable Diffusion v1.4's anatomy (`sd14-random`: its exact UNet, autoencoder and CLIP
text encoder with seeded random weights; speed and memory do not depend on training) at 512 px, ldbench
against the stock diffusers code on the same card, in one command (under 8 minutes on one GPU):

    python benchmarks/perf/bench_gpu.py --out benchmarks/perf/gpu/CARD.json
    ldbench suites --gpu-costs benchmarks/perf/gpu/CARD.json     # every suite's time on that card

1. Training step per method (finetune, textual inversion, DreamBooth, Custom Diffusion, LoRA) through
   ldbench's loop against a bare diffusers training step (train_text_to_image's recipe: add_noise, UNet
   forward, MSE, backward, AdamW), same trainable set and batch (bench_train_step.py), with peak GPU
   memory per method. Target: ratio <= 1.05.
2. Sampling, 50 DDIM steps with guidance 7.5: ldbench's loop against StableDiffusionPipeline with the same
   scheduler, for no LD, LD init and LD every-step (bench_sampling.py; the outputs are checked equal).
   Target: ratio <= 1.02.
3. Inception features/s: ldbench's extractor against torch-fidelity's FeatureExtractorInceptionV3 with
   the same weights, 299 px, on the same card.
4. The `paper` suite's cold time on this card, from these figures (ldbench.runner.estimate).

On a machine without CUDA it refuses, unless --device cpu is given (a check that the script runs, with
--width-divisor 8 --image-size 64: such figures are not GPU figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_sampling  # noqa: E402
import bench_train_step  # noqa: E402

from ldbench.methods import METHODS  # noqa: E402
from ldbench.models import Components  # noqa: E402
from ldbench.models.training import TrainData  # noqa: E402


def peak_memory_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_rows(base: Components, latent: int, args, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(1)
    data = TrainData(torch.randn(16, 4, latent, latent, generator=g), torch.full((16, 4, latent, latent), 0.1),
                     tuple(bench_train_step.CAPTIONS[i % 2] for i in range(16)))
    rows = {}
    for name in args.methods:
        options = METHODS.options(name, {"batch_size": args.batch_size, "mixed_precision": args.mixed_precision})
        parts, d, trainable, kwargs = bench_train_step.setup(name, base, data, options)  # a copy, on the CPU
        if args.gradient_checkpointing:
            parts.unet.enable_gradient_checkpointing()
        # The peak counts what one method's stage holds on the card (its model, gradients, optimizer
        # state, activations), not the base model, which stays on the CPU until sampling.
        reset_peak(device)
        for module in parts.networks().values():
            module.to(device)  # in place: the trainable parameters stay the same objects
        bench_train_step.time_ldbench(parts, d, trainable, kwargs, options, 2)  # warm-up
        peak = peak_memory_gb(device)
        bench_train_step.time_bare(parts, d, trainable, kwargs, options, 2)
        ours, bare = [], []
        for _ in range(args.repeats):
            ours.append(bench_train_step.time_ldbench(parts, d, trainable, kwargs, options, args.steps))
            bare.append(bench_train_step.time_bare(parts, d, trainable, kwargs, options, args.steps))
        o, b = statistics.median(ours), statistics.median(bare)
        rows[name] = {"ldbench_s_per_step": o, "bare_s_per_step": b, "ratio": o / b, "peak_memory_gb": peak}
        print(f"  {name:18s} {o * 1e3:9.1f} ms {b * 1e3:9.1f} ms  ratio {o / b:6.3f}  peak "
              f"{'-' if peak is None else f'{peak:.1f} GiB'}", flush=True)
        del parts, trainable
    return rows


def inception_row(device: torch.device, n: int, repeats: int) -> dict:
    """Features/s of ldbench's Inception extractor and torch-fidelity's network holding the same weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from ldbench.metrics.inception import InceptionExtractor, write_fid_helper_pth

    images = torch.rand(n, 256, 256, generator=torch.Generator().manual_seed(0)).numpy()
    ours = InceptionExtractor(device=str(device))
    with tempfile.TemporaryDirectory() as tmp:
        pth = write_fid_helper_pth(Path(tmp) / "inception.pth")  # the same mapped tensors
        theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(pth))
    theirs = theirs.to(device).eval()
    batch = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1).mul(255).to(torch.uint8)

    def run_theirs() -> None:
        with torch.no_grad():
            for s in range(0, n, 64):
                theirs(batch[s : s + 64].to(device))

    def timed(fn) -> float:
        bench_sampling.sync(device)
        start = time.perf_counter()
        fn()
        bench_sampling.sync(device)
        return time.perf_counter() - start

    ours.features(images[:64]), run_theirs()  # warm-up
    t_ours = statistics.median(timed(lambda: ours.features(images)) for _ in range(repeats))
    t_theirs = statistics.median(timed(run_theirs) for _ in range(repeats))
    return {"n": n, "ldbench_images_per_s": n / t_ours, "torch_fidelity_images_per_s": n / t_theirs,
            "ratio": t_ours / t_theirs}


def paper_estimate(result_path: Path) -> float:
    from ldbench.config import load_suite
    from ldbench.runner.estimate import Costs, estimate_suite

    return estimate_suite(load_suite("paper", expand_env=False), Costs.from_gpu_benchmark(result_path)).seconds


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="result JSON (for `ldbench suites --gpu-costs`)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N (cpu only to check that the script runs)")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--width-divisor", type=int, default=1, help="1: SD v1.4's widths")
    p.add_argument("--batch-size", type=int, default=1, help="training batch (the paper's memory case)")
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--methods", nargs="*", default=METHODS.names())
    p.add_argument("--steps", type=int, default=10, help="training steps per timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample-batch", type=int, default=4)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--inception-images", type=int, default=512)
    return p.parse_args()


def main() -> None:
    from ldbench.models.sd14 import SD14Config, build_components

    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py: no CUDA device here; run it on a GPU machine (or --device cpu to check "
                         "the script with --width-divisor 8 --image-size 64)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (not a GPU figure)"
    config = SD14Config(width_divisor=args.width_divisor, image_size=args.image_size)
    base = build_components(Path(tempfile.mkdtemp(prefix="ldbench-bench-tok-")), config)
    print(f"{name}: sd14-random (random weights), {args.image_size} px, width / {args.width_divisor}", flush=True)
    result = {"device": name, "model": "sd14-random", "image_size": args.image_size,
              "width_divisor": args.width_divisor, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    print(f"training, batch {args.batch_size}, mixed precision {args.mixed_precision}: ldbench | bare diffusers "
          "(target ratio <= 1.05)", flush=True)
    result["train"] = {"batch_size": args.batch_size, "mixed_precision": args.mixed_precision,
                       "gradient_checkpointing": args.gradient_checkpointing,
                       "methods": train_rows(base, args.image_size // 8, args, device)}
    for module in base.networks().values():
        module.to(device)
    print(f"sampling, {args.sample_steps} DDIM steps, guidance 7.5, batch {args.sample_batch}:", flush=True)
    rows = bench_sampling.compare(base, args.sample_batch, args.sample_steps, args.repeats)
    bench_sampling.print_rows(rows)
    result["sampling"] = {"batch": args.sample_batch, "steps": args.sample_steps, "rows": rows}
    result["inception"] = inception_row(device, args.inception_images, args.repeats)
    print(f"Inception: ldbench {result['inception']['ldbench_images_per_s']:.0f} images/s, torch-fidelity "
          f"{result['inception']['torch_fidelity_images_per_s']:.0f} images/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    result["paper_suite_estimate_h"] = paper_estimate(args.out) / 3600
    args.out.write_text(json.dumps(result, indent=1))
    print(f"paper suite on this card (cold): {result['paper_suite_estimate_h']:.1f} h; wrote {args.out}")


if __name__ == "__main__":
    main()
