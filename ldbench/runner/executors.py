"""Where cells run. An executor only decides *where*: every cell goes through the same content-addressed
store (a shared directory), so results are identical whichever runs them, and a stage two cells share is
built once (the store's file locks make the second wait and then read it).

    local   in this process, one cell after another (default)
    ray     each cell a Ray task with CPU / GPU requests, on a local or remote Ray cluster (`address`)
    slurm   each cell a SLURM job through submitit (`cluster: local` runs them as local processes, for tests)

The driver builds the shared stages (datasets, reference statistics, base model) first, so workers only
read them, on the driver's device. A worker runs its cells on the GPU its executor gave it (`gpus`: Ray's
num_gpus, submitit's gpus_per_node / slurm_gpus_per_node / gpus_per_task): Ray and SLURM set
CUDA_VISIBLE_DEVICES to it, so it is the worker's cuda:0 (ldbench.device.worker_device); given none, cpu.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ldbench.errors import UserError
from ldbench.registry import Registry

EXECUTORS: Registry[type] = Registry("executor")


def create_executor(name: str, options: dict, out_dir: Path):
    cls = EXECUTORS.get(name)
    try:
        return cls(out_dir=out_dir, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"executor {name}: bad options {options} ({exc})") from None


@EXECUTORS.register("local")
class LocalExecutor:
    in_process = True
    gpus = 0  # cells run on the driver's device

    def __init__(self, out_dir: Path) -> None:
        del out_dir

    def map(self, fn: Callable, jobs: list[tuple], on_start=None, on_done=None, **in_process) -> list:
        results = []
        for i, job in enumerate(jobs):
            if on_start:
                on_start(i)
            results.append(fn(*job, **in_process))
            if on_done:
                on_done(i, results[-1])
        return results


@EXECUTORS.register("ray")
class RayExecutor:
    """Each cell a Ray task. `address`: an existing cluster ("auto", "ray://host:10001"); empty starts or
    joins a local instance. `num_cpus` / `num_gpus`: the resources each task requests."""

    in_process = False

    def __init__(self, out_dir: Path, address: str = "", num_cpus: float = 1, num_gpus: float = 0) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        self.address = address or None
        self.resources = {"num_cpus": float(num_cpus), "num_gpus": float(num_gpus)}
        self.gpus = float(num_gpus)

    def map(self, fn: Callable, jobs: list[tuple], on_start=None, on_done=None, **_) -> list:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(**self.resources)(fn)
        refs = []
        for i, job in enumerate(jobs):
            if on_start:
                on_start(i)
            refs.append(remote.remote(*job))
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            try:
                results[i] = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # a worker's bad-input error stays a one-line error
                if isinstance(exc.cause, UserError):
                    raise UserError(str(exc.cause)) from None
                raise
            if on_done:
                on_done(i, results[i])
        return results


@EXECUTORS.register("slurm")
class SubmititExecutor:
    """Each cell a SLURM job via submitit. `cluster`: "slurm" (default), "local" (local processes, no
    scheduler: for tests and single machines) or "debug" (in-process). `folder`: submitit's logs and job
    files (default OUT/submitit). Other options go to submitit's update_parameters (e.g. slurm_partition,
    timeout_min, gpus_per_node, cpus_per_task)."""

    in_process = False

    def __init__(self, out_dir: Path, cluster: str = "slurm", folder: str = "", **parameters) -> None:
        try:
            import submitit
        except ImportError:
            raise UserError("--executor slurm needs submitit: pip install -e '.[slurm]'") from None
        try:
            self.executor = submitit.AutoExecutor(folder=folder or str(Path(out_dir) / "submitit"), cluster=cluster)
        except RuntimeError as exc:  # e.g. no `srun` on this machine
            raise UserError(f"--executor slurm: {str(exc).splitlines()[0]}; on a machine without SLURM use "
                            "--executor-option cluster=local (jobs as local processes)") from None
        # submitit's own default limit (5 min for local jobs) kills any real cell, and a loaded machine's toy one
        defaults = {"timeout_min": 24 * 60}
        self.gpus = next((int(parameters[k]) for k in ("gpus_per_node", "slurm_gpus_per_node", "gpus_per_task",
                                                        "slurm_gpus_per_task") if parameters.get(k)), 0)
        try:
            self.executor.update_parameters(**{**defaults, **parameters})
        except (NameError, ValueError, TypeError, AssertionError) as exc:  # submitit's ways of saying "unknown"
            raise UserError(f"executor slurm: bad option(s) {sorted(parameters)} ({str(exc).splitlines()[0]}); "
                            "see submitit's AutoExecutor.update_parameters (e.g. slurm_partition, timeout_min)") from None

    def map(self, fn: Callable, jobs: list[tuple], on_start=None, on_done=None, **_) -> list:
        submitted = []
        for i, job in enumerate(jobs):
            if on_start:
                on_start(i)
            submitted.append(self.executor.submit(fn, *job))
        results = []
        for i, job in enumerate(submitted):
            try:
                results.append(job.result())
            except Exception as exc:  # submitit wraps the worker's exception; keep its one-line message
                message = str(exc).strip().splitlines()
                raise UserError(f"cell {i + 1} failed in its SLURM job {job.job_id}: "
                                f"{message[-1] if message else type(exc).__name__} (logs: {job.paths.stderr})") from None
            if on_done:
                on_done(i, results[-1])
        return results
