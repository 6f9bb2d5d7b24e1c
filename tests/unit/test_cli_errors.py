"""The CLI: bad input is one line on stderr (`ldbench: error: ...`), exit code 2, no traceback, and it
fails fast (before any training); the listing commands and --help exit 0.

A module fixture calls the entry point (`ldbench.cli:main`, what the `ldbench` script runs) once per case,
in this process and in the case's own working directory: a subprocess per case would pay the torch import
twenty times over. `test_argparse_errors_exit_two` and `test_entry_point_in_a_subprocess` run the real
`python -m ldbench.cli`."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

HAVE_STATS = importlib.util.find_spec("ldbench.metrics.stats") is not None
TIMEOUT_S = 120


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    workdir: Path


def _cases(root: Path) -> dict[str, list[str]]:
    """name -> argv; files they need are written under root."""
    (root / "unknown_key.yaml").write_text(
        "datasets: [synth-brain]\nmethods: [finetune]\ndrifts: [{delta: 0.1}]\neditors: [sdedit]\nbogus_key: 1\n")
    (root / "unknown_dataset.yaml").write_text(
        "datasets: [no-such-dataset]\nmethods: [finetune]\ndrifts: [{delta: 0.1}]\neditors: [sdedit]\n")
    (root / "not_npz.npz").write_text("this is not a zip archive\n")
    (root / "not_npz_with_sidecar.npz").write_text("this is not a zip archive either\n")
    (root / "not_npz_with_sidecar.json").write_text('{"n": 10, "extractor": {"name": "domain", "dim": 4}}\n')
    (root / "empty_model").mkdir()
    (root / "unknown_method.yaml").write_text(
        "datasets: [synth-brain]\nmethods: [dreamboot]\ndrifts: [{delta: 0.1}]\neditors: [sdedit]\n")
    (root / "fake-inception.pth").write_bytes(b"not the real weights")

    def run(*extra: str, tag: str = "") -> list[str]:
        return ["run", *extra, "--cache-dir", str(root / f"cache{tag}"), "--out", str(root / f"out{tag}")]

    return {
        "unknown_suite": run("--suite", "no-such-suite"),
        "missing_suite_path": run("--suite", str(root / "missing.yaml")),
        "unknown_key": run("--suite", str(root / "unknown_key.yaml")),
        "set_without_equals": run("--suite", "smoke", "--set", "evaluation.bootstrap"),
        "unknown_dataset": run("--suite", str(root / "unknown_dataset.yaml")),
        "stats_show_missing": ["stats", "show", str(root / "missing.npz")],
        "stats_show_not_npz": ["stats", "show", str(root / "not_npz.npz")],
        "stats_show_not_npz_with_sidecar": ["stats", "show", str(root / "not_npz_with_sidecar.npz")],
        "empty_base_model": run("--suite", "smoke", "--base-model", str(root / "empty_model"), "--quiet",
                                tag="-model"),
        "unknown_method": run("--suite", str(root / "unknown_method.yaml")),
        "misspelled_method_option": run("--suite", "smoke", "--set", "methods=[{name: lora, options: {lora_rnak: 4}}]",
                                        tag="-opt"),
        "unknown_tracker": run("--suite", "smoke", "--log-with", "tensorbored", tag="-trk"),
        "unknown_classifier": run("--suite", "smoke", "--set", "evaluation.classifier={model: resnet181}", "--quiet",
                                  tag="-clf"),
        "missing_inception": run("--suite", "smoke", "--set", "evaluation.extractors=[inception]",
                                 "--inception-weights", str(root / "missing.pth"), tag="-inc1"),
        "wrong_hash_inception": run("--suite", "smoke", "--set", "evaluation.extractors=[inception]",
                                    "--inception-weights", str(root / "fake-inception.pth"), tag="-inc2"),
        "help": ["--help"],
        "run_help": ["run", "--help"],
        "suites": ["suites"],
        "methods": ["methods"],
        "base_models": ["base-models"],
        "datasets": ["datasets"],
    }


def _call(argv: list[str], workdir: Path) -> tuple[int, str, str]:
    """`ldbench ARGV` run in this process from workdir: (exit code, stdout, stderr); an exception that
    escapes main is recorded as the traceback a user would see."""
    from ldbench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.chdir(workdir), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - the test reports it
            code = 1
            stderr.write(traceback.format_exc())
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("cli")
    cases = _cases(root)
    out = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LDBENCH_CACHE_DIR", str(root / "env-cache"))
        env.setenv("COLUMNS", "200")
        env.setenv("NO_COLOR", "1")
        for name, argv in cases.items():
            workdir = root / f"cwd-{name}"
            workdir.mkdir()
            t0 = time.perf_counter()
            code, stdout, stderr = _call(argv, workdir)
            out[name] = Result(argv, code, stdout, stderr, time.perf_counter() - t0, workdir)
    out["_root"] = root  # type: ignore[assignment]
    return out


def assert_user_error(r: Result, *words: str) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ldbench: error: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def test_unknown_suite(results):
    line = assert_user_error(results["unknown_suite"], "no-such-suite", "smoke")
    assert "unknown suite" in line


def test_missing_suite_path(results):
    assert_user_error(results["missing_suite_path"], "missing.yaml", "does not exist")


def test_suite_with_unknown_key(results):
    assert_user_error(results["unknown_key"], "bogus_key", "unknown_key.yaml")


def test_set_without_equals(results):
    assert_user_error(results["set_without_equals"], "evaluation.bootstrap", "KEY=VALUE")


def test_suite_with_unknown_dataset(results):
    assert_user_error(results["unknown_dataset"], "no-such-dataset", "synth-brain")


@pytest.mark.parametrize("name", ["unknown_suite", "missing_suite_path", "unknown_key", "set_without_equals",
                                  "unknown_dataset"])
def test_suite_errors_touch_nothing(results, name):
    root = results["_root"]
    assert not (root / "out").exists()
    assert not (root / "cache").exists()
    assert not (root / "env-cache").exists()
    assert list(results[name].workdir.iterdir()) == []  # no reports/ in the working directory


@pytest.mark.skipif(not HAVE_STATS, reason="ldbench.metrics.stats not written yet")
def test_stats_show_missing_file(results):
    assert_user_error(results["stats_show_missing"], "missing.npz")


@pytest.mark.skipif(not HAVE_STATS, reason="ldbench.metrics.stats not written yet")
@pytest.mark.parametrize("name", ["stats_show_not_npz", "stats_show_not_npz_with_sidecar"])
def test_stats_show_not_an_npz(results, name):
    assert_user_error(results[name], f"{name.removeprefix('stats_show_')}.npz")


def test_empty_base_model_dir_fails_before_training(results):
    r = results["empty_base_model"]
    assert_user_error(r, "empty_model", "model_index.json")
    assert r.seconds < 60
    cache = results["_root"] / "cache-model"
    stages = {p.name for p in cache.iterdir() if not p.name.startswith(".")} if cache.exists() else set()
    assert not stages & {"base-model", "finetune", "generate", "metrics"}, stages


@pytest.mark.parametrize("name", ["help", "run_help", "suites", "methods", "base_models", "datasets"])
def test_info_commands_exit_zero(results, name):
    r = results[name]
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.strip()


def test_help_texts(results):
    assert "ldbench run --suite smoke" in results["help"].stdout
    assert "--base-model" in results["run_help"].stdout and "--set" in results["run_help"].stdout
    assert "smoke" in results["suites"].stdout
    assert "finetune" in results["methods"].stdout
    assert "sd14-random" in results["base_models"].stdout and "embedded" in results["base_models"].stdout
    assert "synth-brain" in results["datasets"].stdout


def test_argparse_errors_exit_two(tmp_path):
    # argparse's own usage errors also exit 2 (with a usage line) and never print a traceback
    r = subprocess.run([sys.executable, "-m", "ldbench.cli", "frobnicate"], capture_output=True, text=True,
                       timeout=TIMEOUT_S, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "ldbench: error:" in r.stderr and "frobnicate" in r.stderr


def test_entry_point_in_a_subprocess(tmp_path):
    """A user error as a user starts it, in its own process: exit 2, one line, nothing written."""
    r = subprocess.run([sys.executable, "-m", "ldbench.cli", "run", "--suite", "no-such-suite", "--cache-dir",
                        str(tmp_path / "cache"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=TIMEOUT_S, cwd=tmp_path)
    assert_user_error(Result(r.args, r.returncode, r.stdout, r.stderr, 0.0, tmp_path), "no-such-suite")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_unknown_method_lists_valid_names(results):
    assert_user_error(results["unknown_method"], "dreamboot", "finetune")


def test_missing_inception_weights_name_the_flag(results):
    assert_user_error(results["missing_inception"], "missing.pth", "--inception-weights")


def test_inception_weights_with_another_hash_are_refused(results):
    assert_user_error(results["wrong_hash_inception"], "fake-inception.pth", "--allow-unverified-weights")


def test_misspelled_method_option_fails_at_load_naming_it_and_the_valid_keys(results):
    r = results["misspelled_method_option"]
    assert_user_error(r, "methods[0] (lora)", "lora_rnak", "valid:", "lora_rank", "steps")
    assert not (results["_root"] / "cache-opt").exists() and not (results["_root"] / "out-opt").exists()
    assert list(r.workdir.iterdir()) == []  # no dataset, model or report work began


def test_unknown_classifier_model_fails_before_the_first_stage_naming_close_names(results):
    # checked when the run is about to build its first stage (timm's import costs seconds that a fully
    # cached run skips), so nothing is built
    r = results["unknown_classifier"]
    assert_user_error(r, "suite smoke: evaluation.classifier", "resnet181", "close timm names", "resnet18")
    cache = results["_root"] / "cache-clf"
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == []


def test_unknown_tracker_fails_before_any_work(results):
    r = results["unknown_tracker"]
    assert_user_error(r, "--log-with tensorbored", "valid:", "tensorboard")
    assert not (results["_root"] / "cache-trk").exists() and not (results["_root"] / "out-trk").exists()
