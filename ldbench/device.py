"""Where networks run and in which precision: --device / --precision, checked before any work.

Device: `auto` (CUDA when present, else cpu), `cpu`, `cuda` or `cuda:N`; $LDBENCH_DEVICE when the option is
not given. Precision (inference only: sampling, the autoencoder): fp32 (default), bf16 or fp16; feature
extractors always run in fp32 (domain: fp64). fp16 needs CUDA: on CPU it is refused (exit 2), use bf16.

Cache keys: the device TYPE (cpu / cuda, not the index) and the precision enter the key of every stage
that runs a network (CPU and GPU numbers differ), but only when they differ from cpu / fp32, so every
cache entry and baseline made before these options existed stays valid (`key_fields`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import resource
import sys
from collections.abc import Mapping

from ldbench.errors import UserError

DEVICE_ENV = "LDBENCH_DEVICE"
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_HELP = ("where networks run: auto (CUDA when present, else cpu), cpu, cuda or cuda:N (default "
               f"${DEVICE_ENV}, else auto); CPU and GPU numbers differ, so the device type is in the cache key")
PRECISION_HELP = ("inference precision of generation and the autoencoder: fp32 (default), bf16, fp16 (CUDA "
                  "only); feature extractors always run in fp32")


_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("ldbench_device", default="cpu")


def current() -> str:
    """The device of the stage being built (the store sets it around every build; cpu outside one)."""
    return _CURRENT.get()


@contextlib.contextmanager
def running_on(device: str):
    token = _CURRENT.set(device)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def add_device_options(parser, precision: bool = True) -> None:
    """--device (and --precision) on a command that runs a network."""
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    if precision:
        parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(requested: str | None, env: Mapping[str, str] | None = None, cuda_count: int | None = None) -> str:
    """"cpu" or "cuda:N" for --device `requested` (None: $LDBENCH_DEVICE, else auto); a UserError when
    the device does not exist here (no CUDA, or N out of range)."""
    env = os.environ if env is None else env
    text = (requested or env.get(DEVICE_ENV) or "auto").strip().lower()
    count = _cuda_count() if cuda_count is None else cuda_count
    if text == "auto":
        return "cuda:0" if count else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise UserError(f"--device {text}: expected cuda or cuda:N with N a number, e.g. cuda:0")
        if count == 0:
            raise UserError(f"--device {text}: no CUDA GPU is available here; use --device cpu (or auto)")
        if int(index_text) >= count:
            raise UserError(f"--device {text}: only {count} CUDA GPU(s) here (cuda:0 to cuda:{count - 1})")
        return f"cuda:{int(index_text)}"
    raise UserError(f"--device {text}: unknown device; valid: auto, cpu, cuda, cuda:N")


def check_precision(precision: str | None, device: str) -> str:
    precision = precision or "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: unknown; valid: {', '.join(PRECISIONS)}")
    if precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16 needs a CUDA GPU; on CPU use bf16 or fp32")
    return precision


def device_type(device: str) -> str:
    return device.split(":", 1)[0]


def key_fields(device: str, precision: str) -> dict:
    """What the device adds to a network stage's cache key: nothing for cpu / fp32 (keys as before)."""
    if device_type(device) == "cpu" and precision == "fp32":
        return {}
    return {"device": device_type(device), "precision": precision}


def describe(device: str, precision: str) -> dict:
    """The provenance of every record: device type, its name and the inference precision."""
    name = platform_cpu_name()
    if device.startswith("cuda"):
        import torch

        name = torch.cuda.get_device_name(torch.device(device))
    return {"device": device_type(device), "device_index": device, "device_name": name, "precision": precision}


def platform_cpu_name() -> str:
    import platform

    return platform.processor() or platform.machine() or "cpu"


def worker_device(requested: str, executor_gpus: int | float, env: Mapping[str, str]) -> str:
    """The device a Ray task / SLURM job runs its cells on. Given GPUs (num_gpus, gpus_per_node), it
    uses the first one it can see: Ray and SLURM set CUDA_VISIBLE_DEVICES to the assigned GPUs, so that
    is cuda:0 of the worker. Without GPUs, cpu whatever the driver uses (`requested`): a worker must not
    share a GPU it was not given (Ray hides them anyway)."""
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    if executor_gpus and executor_gpus > 0:
        if visible in ("", "-1", "NoDevFiles"):
            raise UserError(f"the executor was given {executor_gpus} GPU(s) but the worker sees none "
                            "(CUDA_VISIBLE_DEVICES is empty)")
        return "cuda:0"
    return "cpu"


def use_device(device: str) -> None:
    """Make `device` the current CUDA device (accelerate and diffusers place on the current one)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(device))


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def inference_precision(device: str, precision: str):
    """Autocast of the sampling / autoencoder passes to `precision`; nothing at all for fp32."""
    if precision == "fp32":
        yield
        return
    import torch

    with torch.autocast(device_type=device_type(device), dtype=torch_dtype(precision)):
        yield


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_memory(device: str) -> dict:
    """Peak memory since the last reset: GPU (torch.cuda.max_memory_allocated, MB) on CUDA, null on CPU;
    and the process's peak resident set size (MB, since the process started: the OS does not reset it)."""
    gpu = None
    if device.startswith("cuda"):
        import torch

        gpu = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss_kb / 2**20 if sys.platform == "darwin" else rss_kb / 2**10  # macOS: bytes, Linux: kB
    return {"peak_gpu_mem_mb": gpu, "peak_rss_mb": round(rss_mb, 1)}


def from_args(args) -> tuple[str, str]:
    """(device, precision) of a parsed command line, checked (a UserError before any work)."""
    device = resolve_device(getattr(args, "device", None))
    return device, check_precision(getattr(args, "precision", None), device)
