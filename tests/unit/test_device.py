"""--device / --precision: resolution, one-line errors before any work, cache keys, workers' devices."""

import pytest

from ldbench.cli import main
from ldbench.device import check_precision, describe, key_fields, peak_memory, resolve_device, worker_device
from ldbench.errors import UserError


@pytest.mark.parametrize("requested, env, count, expected", [
    (None, {}, 0, "cpu"), ("auto", {}, 0, "cpu"), ("auto", {}, 2, "cuda:0"), (None, {}, 1, "cuda:0"),
    ("cpu", {}, 2, "cpu"), ("cuda", {}, 1, "cuda:0"), ("cuda:1", {}, 2, "cuda:1"), ("CUDA:1", {}, 2, "cuda:1"),
    (None, {"LDBENCH_DEVICE": "cpu"}, 2, "cpu"), ("cuda:0", {"LDBENCH_DEVICE": "cpu"}, 1, "cuda:0"),
])
def test_resolve_device(requested, env, count, expected):
    assert resolve_device(requested, env, cuda_count=count) == expected


@pytest.mark.parametrize("requested, count, words", [
    ("cuda", 0, "no CUDA GPU"), ("cuda:2", 2, "only 2 CUDA GPU"), ("cuda:x", 1, "cuda:N"), ("tpu", 1, "unknown"),
])
def test_a_device_that_is_not_here_is_a_user_error(requested, count, words):
    with pytest.raises(UserError, match=words):
        resolve_device(requested, {}, cuda_count=count)


def test_fp16_needs_cuda():
    assert check_precision("fp16", "cuda:0") == "fp16"
    assert check_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU"):
        check_precision("fp16", "cpu")


@pytest.mark.parametrize("argv", [
    ["run", "--suite", "smoke", "--device", "cuda:7"],
    ["run", "--suite", "smoke", "--precision", "fp16", "--device", "cpu"],
    ["tune-delta", "--device", "cuda:7"],
    ["stats", "build", "--dataset", "synth-brain", "--extractor", "domain", "--device", "cuda:7"],
    ["fid", "a", "b", "--extractor", "domain", "--device", "cuda:7"],
])
def test_cli_refuses_a_missing_device_in_one_line(argv, capsys, monkeypatch, tmp_path):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ldbench: error: --") and err.count("\n") == 1
    assert not (tmp_path / "reports").exists()  # before any work


def test_cache_keys_unchanged_on_cpu_fp32():
    assert key_fields("cpu", "fp32") == {}
    assert key_fields("cuda:1", "fp32") == key_fields("cuda:0", "fp32") == {"device": "cuda", "precision": "fp32"}
    assert key_fields("cpu", "bf16") == {"device": "cpu", "precision": "bf16"}


def test_store_keys_carry_the_device_only_off_cpu_fp32(tmp_path):
    from ldbench.store import Store

    cpu, cpu_again = Store(tmp_path), Store(tmp_path, device="cpu", precision="fp32")
    bf16, cuda = Store(tmp_path, device="cpu", precision="bf16"), Store(tmp_path, precision="fp32")
    cuda.key_extra = key_fields("cuda:0", "fp32")  # no GPU needed to build a key
    args = ("finetune", "1", {"seed": 0}, ["abc"])
    assert cpu.key(*args) == cpu_again.key(*args)
    assert len({cpu.key(*args), bf16.key(*args), cuda.key(*args)}) == 3
    data = ("dataset", "1", {"name": "x"}, [])  # no network: the same everywhere
    assert cpu.key(*data) == bf16.key(*data) == cuda.key(*data)


def test_describe_and_peak_memory_on_cpu():
    d = describe("cpu", "fp32")
    assert d["device"] == "cpu" and d["precision"] == "fp32" and d["device_name"]
    peak = peak_memory("cpu")
    assert peak["peak_gpu_mem_mb"] is None and peak["peak_rss_mb"] > 0


@pytest.mark.parametrize("gpus, env, expected", [
    (1, {"CUDA_VISIBLE_DEVICES": "3"}, "cuda:0"),  # Ray / SLURM: the assigned GPU is the worker's first
    (2, {"CUDA_VISIBLE_DEVICES": "2,5"}, "cuda:0"),
    (0.5, {"CUDA_VISIBLE_DEVICES": "0"}, "cuda:0"),  # a fractional Ray GPU
    (0, {"CUDA_VISIBLE_DEVICES": ""}, "cpu"),
    (0, {}, "cpu"),
])
def test_worker_device(gpus, env, expected):
    assert worker_device("cuda:1", gpus, env) == expected
    assert worker_device("cpu", gpus, env) == expected


def test_a_worker_given_gpus_it_cannot_see_is_an_error():
    with pytest.raises(UserError, match="sees none"):
        worker_device("cuda:0", 1, {"CUDA_VISIBLE_DEVICES": ""})


def test_executors_report_the_gpus_they_give(tmp_path):
    from ldbench.runner.executors import create_executor

    assert create_executor("local", {}, tmp_path).gpus == 0
    pytest.importorskip("submitit")
    assert create_executor("slurm", {"cluster": "local", "gpus_per_node": 2}, tmp_path).gpus == 2
    assert create_executor("slurm", {"cluster": "local"}, tmp_path).gpus == 0


def test_run_options_remember_the_cache_device_for_report(tmp_path):
    from ldbench.runner.run import RunOptions

    opts = RunOptions(out_dir=tmp_path, cache_dir=tmp_path, device="cuda:1", precision="bf16")
    assert opts.to_dict()["device"] == "cuda" and opts.to_dict()["precision"] == "bf16"
    assert RunOptions(out_dir=tmp_path, cache_dir=tmp_path).to_dict()["device"] == "cpu"


def test_stages_run_on_the_store_device(tmp_path):
    from ldbench.device import current
    from ldbench.store import Store

    seen = []
    Store(tmp_path).get_or_build("x", "1", {}, [], lambda tmp: seen.append(current()) or {})
    assert seen == ["cpu"] and current() == "cpu"


def test_cpu_fp32_keys_are_the_keys_of_before(tmp_path):
    from ldbench.hashing import stable_hash
    from ldbench.store import Store

    before = stable_hash({"stage": "generate", "version": "2", "config": {"a": 1}, "upstream": ["k1", "k2"]})
    assert Store(tmp_path).key("generate", "2", {"a": 1}, ["k2", "k1"]) == before
