"""The same toy suite on every executor gives the same numbers: local, Ray (a local instance started
here) and SLURM through submitit (its local executor: each cell a separate process)."""

import json

import pytest
import torch

from ldbench.config import load_suite
from ldbench.runner.run import RunOptions, run_suite
from tests.toy import TOY_BASE_MODEL

pytestmark = pytest.mark.slow

TOY = [
    "datasets=[{name: synth-brain, options: {n_subjects: 24, visits: 2, image_size: 32}}]",
    TOY_BASE_MODEL,
    "methods=[{name: finetune, options: {steps: 4, batch_size: 8}}]",
    "editors=[{name: sdedit, options: {steps: 3, strength: 0.5}}]",
    "evaluation.kid_subset_size=6",
    "evaluation.kid_subsets=5",
    "evaluation.bootstrap=10",
    "evaluation.extractors=[domain]",
    "evaluation.effectiveness=false",  # the oracles are tested in test_counterfactual_pipeline.py
    "evaluation.latent_probe={checkpoints: 2, samples: 4, steps: 2}",  # the probe's own size is tested in the smoke module
]


def _values(result):
    return [(r["metric"], r["drift"]["delta"], r["value"], r["ci95"]) for r in result.records]


@pytest.fixture(autouse=True)
def one_thread(_deterministic_threads):
    """One torch thread in the driver, so in every cell (workers take the driver's count and the numbers
    depend on it): the executors run both cells at once, and on a 2-core machine two cells of two threads
    each spin against each other (the submitit run took 40-130 s so, against 49 s alone)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, toy_cache):
    torch.set_num_threads(1)  # module fixtures are set up before the function-scoped one_thread
    root = tmp_path_factory.mktemp("local")
    suite = load_suite("smoke", TOY)
    return suite, run_suite(suite, RunOptions(out_dir=root / "out", cache_dir=toy_cache(root / "cache"), quiet=True))


def test_ray_executor_matches_local(local_run, tmp_path, toy_cache):
    ray = pytest.importorskip("ray")
    suite, local = local_run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_suite(suite, RunOptions(out_dir=tmp_path / "out", cache_dir=toy_cache(tmp_path / "cache"),
                                             quiet=True, executor="ray"))
    finally:
        ray.shutdown()
    assert _values(result) == _values(local)
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    built = {e["stage"] for e in events if e["event"] == "stage" and not e["cached"]}
    assert {"finetune", "generate", "metrics"} <= built  # the cells' stages ran in the Ray workers


def test_submitit_executor_matches_local(local_run, tmp_path, toy_cache):
    pytest.importorskip("submitit")
    suite, local = local_run
    result = run_suite(suite, RunOptions(out_dir=tmp_path / "out", cache_dir=toy_cache(tmp_path / "cache"), quiet=True,
                                         executor="slurm", executor_options={"cluster": "local"}))
    assert _values(result) == _values(local)
    assert any((tmp_path / "out" / "submitit").iterdir())  # one job folder per cell


@pytest.mark.parametrize("options", [["cluster=local", "nonsense=1"], []])
def test_bad_executor_setup_is_a_one_line_error_before_any_work(tmp_path, capsys, options):
    """An unknown option, or SLURM asked for on a machine without it: one line, exit 2, nothing built."""
    pytest.importorskip("submitit")
    from ldbench.cli import main

    argv = ["run", "--suite", "smoke", "--executor", "slurm", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "o")]
    for o in options:
        argv += ["--executor-option", o]
    assert main(argv + sum((["--set", t] for t in TOY), [])) == 2
    assert "ldbench: error: executor slurm" in capsys.readouterr().err or options == []
    assert not any(p for p in (tmp_path / "cache").glob("*") if not p.name.startswith("."))
