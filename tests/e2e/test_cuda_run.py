"""A tiny suite on CUDA (skipped without a GPU): records carry the device, stages record peak GPU memory,
and the cache keys are not the CPU's."""

import json

import pytest

from ldbench.config import load_suite
from ldbench.runner.run import RunOptions, run_suite

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

TINY = [
    "datasets=[{name: synth-brain, options: {n_subjects: 12, visits: 2}}]",
    "base_model={name: embedded, options: {vae_steps: 5, unet_steps: 5, crops_per_image: 2, vae_width: 16}}",
    "methods=[{name: finetune, options: {steps: 2, batch_size: 4}}]",
    "editors=[{name: text2img, options: {steps: 2}}]",
    "drifts=[{delta: 0.0}, {delta: 0.1}]",
    "seeds=[0]",
    "evaluation.kid_subset_size=4",
    "evaluation.kid_subsets=5",
    "evaluation.bootstrap=5",
    "evaluation.extractors=[domain]",
    "evaluation.effectiveness=false",
]


def test_a_tiny_suite_on_cuda_records_the_device(tmp_path):
    suite = load_suite("smoke", TINY)
    opts = RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", quiet=True, device="cuda:0")
    result = run_suite(suite, opts)
    assert result.records
    for record in result.records:
        env = record["provenance"]["environment"]
        assert env["device"] == "cuda" and env["precision"] == "fp32" and env["device_name"]
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    built = [e for e in events if e["event"] == "stage" and not e["cached"]]
    finetune = next(e for e in built if e["stage"] == "finetune")
    assert finetune["peak_gpu_mem_mb"] > 0
    cpu = run_suite(suite, RunOptions(out_dir=tmp_path / "cpu", cache_dir=tmp_path / "cache", quiet=True))
    cpu_keys = {e["key"] for e in cpu.store_events if e["stage"] == "finetune"}
    assert cpu_keys.isdisjoint({e["key"] for e in built if e["stage"] == "finetune"})  # device type in the key
