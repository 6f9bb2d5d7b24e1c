"""Every input is checked before any work: a bad value is one line `ldbench: error: ...` (exit 2) that
names it, nothing is computed and nothing is written into --out or the cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ldbench.cli import main
from ldbench.errors import UserError

DOMAIN = "evaluation.extractors=[domain]"


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    """Any stage or run started by a test of bad input fails the test."""
    from ldbench.runner import realism_stages, run, stages, tune

    def forbidden(*args, **kwargs):
        raise AssertionError("work started on bad input")

    for name in ("dataset_stage", "base_model_stage", "build_finetune", "build_generate"):
        monkeypatch.setattr(stages, name, forbidden)
    monkeypatch.setattr(realism_stages, "reference_stats_stage", forbidden)
    monkeypatch.setattr(run, "run_suite", forbidden)
    monkeypatch.setattr(tune, "tune_delta", forbidden)


def one_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("ldbench: error: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_argv(tmp_path: Path, *extra: str, suite: str = "smoke") -> list[str]:
    return ["run", "--suite", suite, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--quiet", "--set", DOMAIN, *extra]


def nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


# --- 1. check: NaN results, malformed baselines ------------------------------------------------------


def record(value: float, metric: str = "fd", extractor: str = "domain", method: str = "finetune",
           editor: str = "sdedit") -> dict:
    return {"dataset": "synth-brain", "method": method, "drift": {"delta": 0.0, "train": "none", "sample": "none"},
            "seed": 0, "editor": editor, "extractor": extractor, "metric": metric, "value": value,
            "provenance": {"suite": "smoke"}}


def write_results(directory: Path, records: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps({"records": records}))
    return directory


def test_check_refuses_nan_results(tmp_path, capsys):
    run = write_results(tmp_path / "run", [record(float("nan"))])
    (tmp_path / "b.json").write_text(json.dumps({"schema": "ldbench.baseline/1", "entries": [record(0.5)]}))
    one_error(capsys, ["check", str(run), "--baseline", str(tmp_path / "b.json")], "nan", "finite")


@pytest.mark.parametrize("text", ["[]", "NaN", '{"schema": "ldbench.baseline/1"}',
                                  '{"schema": "ldbench.baseline/1", "entries": [], "tolerances": 5}',
                                  '{"schema": "ldbench.baseline/1", "entries": [{"metric": "fd"}]}'])
def test_check_refuses_malformed_baselines(tmp_path, capsys, text):
    run = write_results(tmp_path / "run", [record(0.5)])
    (tmp_path / "b.json").write_text(text)
    one_error(capsys, ["check", str(run), "--baseline", str(tmp_path / "b.json")], "b.json")


# --- 2. method options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("options, name", [("{steps: -5}", "steps"), ("{steps: many}", "steps"),
                                           ("{lr: -1.0}", "lr"), ("{lr: .nan}", "lr"),
                                           ("{batch_size: 0}", "batch_size"), ("{lora_rank: 0}", "lora_rank")])
def test_method_options_checked_at_load(tmp_path, capsys, options, name):
    one_error(capsys, run_argv(tmp_path, "--set", f"methods=[{{name: lora, options: {options}}}]"),
              f"method option {name}", "methods[0]")
    nothing_written(tmp_path)


# --- 3. δ, seeds, evaluation, the second editor ---------------------------------------------------------


@pytest.mark.parametrize("override, needle", [
    ("drifts=[{delta: .nan}]", "drift delta"), ("drifts=[{delta: .inf}]", "drift delta"),
    ("drifts=[{delta: [0.1, .nan]}]", "drift delta"), ("seeds=[-1]", "seeds[0]"), (f"seeds=[{2**32}]", "seeds[0]"),
    ("seeds=[0, 0]", "twice"), ("evaluation.bootstrap=-5", "evaluation.bootstrap"),
    ("evaluation.kid_subset_size=1", "kid_subset_size"), ("evaluation.kid_subsets=0", "kid_subsets"),
    ("evaluation.batch_size=0", "evaluation.batch_size"), ("evaluation.reference_split=tset", "reference_split"),
    ("evaluation.null_edits=-1", "null_edits"), ("evaluation.oracle_members=0", "oracle_members"),
    ("editors=[sdedit, {name: text2img, options: {steps: 0}}]", "editors[1]"),
    ("editors=[sdedit, {name: sdedit, options: {strength: 2}}]", "editors[1]"),
    ("base_model={name: embedded, options: {unet_lr: -1}}", "unet_lr"),
    ("datasets=[{name: synth-brain, options: {n_subjects: 1}}]", "n_subjects"),
])
def test_suite_values_checked_at_load(tmp_path, capsys, override, needle):
    one_error(capsys, run_argv(tmp_path, "--set", override), needle)
    nothing_written(tmp_path)


def test_executor_options_checked_before_work(tmp_path, capsys):
    one_error(capsys, run_argv(tmp_path, "--executor-option", "bogus=1"), "bogus")
    nothing_written(tmp_path)


# --- 4. YAML bombs, deep nesting, binary files -----------------------------------------------------------


def alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_in_a_suite_file_is_refused(tmp_path, capsys):
    path = tmp_path / "bomb.yaml"
    path.write_text("datasets: [synth-brain]\nmethods: [finetune]\ndrifts: [{delta: 0.1}]\neditors: [sdedit]\n"
                    "description: {" + alias_bomb().replace("\n", ", ").rstrip(", ") + "}\n")
    one_error(capsys, run_argv(tmp_path, suite=str(path)), "aliases")
    nothing_written(tmp_path)


def test_alias_bomb_in_set_is_refused(tmp_path, capsys):
    flow = "{" + alias_bomb().replace("\n", ", ").rstrip(", ") + "}"
    assert len(flow) < 600
    one_error(capsys, run_argv(tmp_path, "--set", f"description={flow}"), "aliases")


def test_deep_nesting_is_refused(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("datasets: [synth-brain]\ndescription: " + "[" * 5000 + "]" * 5000 + "\n")
    one_error(capsys, run_argv(tmp_path, suite=str(path)), "levels deep")
    one_error(capsys, run_argv(tmp_path, "--set", "description=" + "{a: " * 3000 + "1" + "}" * 3000), "levels deep")


def test_recursive_alias_is_refused(tmp_path, capsys):
    one_error(capsys, run_argv(tmp_path, "--set", "description=&a [*a]"), "recursive")


def test_binary_suite_file_is_refused(tmp_path, capsys):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00")
    one_error(capsys, run_argv(tmp_path, suite=str(binary)), "UTF-8")
    if Path("/bin/ls").is_file():
        one_error(capsys, run_argv(tmp_path, suite="/bin/ls"), "UTF-8")


# --- 5. file-system trouble ------------------------------------------------------------------------------


def read_only(monkeypatch, directory: Path) -> None:
    """`directory` behaves as read-only (as root, chmod alone does not stop writes)."""
    from ldbench import validate

    directory.mkdir(parents=True, exist_ok=True)
    real = validate._probe
    monkeypatch.setattr(validate, "_probe", lambda d: False if Path(d) == directory else real(d))


def test_read_only_cache_and_out(tmp_path, capsys, monkeypatch):
    read_only(monkeypatch, tmp_path / "cache")
    one_error(capsys, run_argv(tmp_path), "cache directory", "not writable")
    assert not (tmp_path / "out").exists() and list((tmp_path / "cache").iterdir()) == []
    read_only(monkeypatch, tmp_path / "ro")
    argv = run_argv(tmp_path)
    argv[argv.index("--out") + 1] = str(tmp_path / "ro" / "out")
    one_error(capsys, argv, "--out", "not writable")


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = run_argv(tmp_path)
    argv[argv.index("--out") + 1] = str(tmp_path / "file")
    one_error(capsys, argv, "is a file")
    argv[argv.index("--out") + 1] = str(tmp_path / "file" / "below")
    one_error(capsys, argv, "is a file")


def test_report_with_a_read_only_cache(tmp_path, capsys, monkeypatch):
    from ldbench.config import load_suite

    suite = load_suite("smoke", [DOMAIN])
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"resolved_config": suite.to_dict(),
                                                  "cache_dir": str(tmp_path / "cache")}))
    read_only(monkeypatch, tmp_path / "cache")
    one_error(capsys, ["report", str(run)], "not writable")


# --- 6. user text is never read as markup ---------------------------------------------------------------


def test_paths_with_brackets_are_printed_verbatim(tmp_path, capsys, monkeypatch):
    from ldbench.runner import run as run_module

    def fake_run(suite, opts):
        (opts.out_dir / "tables").mkdir(parents=True)
        (opts.out_dir / "tables" / "main.md").write_text("| [bold]x[/bold] |\n")
        return run_module.RunResult([], opts.out_dir, 0.1, [])

    monkeypatch.setattr(run_module, "run_suite", fake_run)
    out = tmp_path / "o[/x]"
    assert main(["run", "--suite", "smoke", "--set", DOMAIN, "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--quiet"]) == 0
    assert "o[/x]" in capsys.readouterr().out


def test_progress_text_is_escaped():
    from ldbench.progress import progress_bar

    assert list(progress_bar([1, 2], "cell [/x] o[/bold]", quiet=False)) == [1, 2]


# --- 7. tune-delta grids --------------------------------------------------------------------------------


@pytest.mark.parametrize("grid, needle", [("-inf:0:0.1", "finite"), ("0:1:nan", "finite"),
                                          ("0:1000:0.00001", "more than 201"), ("0:1:0", "STEP > 0"),
                                          ("1:0:0.1", "LOW <= HIGH"), ("a:b", "LOW:HIGH:STEP")])
def test_tune_delta_grid(tmp_path, capsys, grid, needle):
    one_error(capsys, ["tune-delta", f"--grid={grid}", "--set", DOMAIN, "--out", str(tmp_path / "out"),
                       "--cache-dir", str(tmp_path / "cache")], needle)
    nothing_written(tmp_path)


# --- 8. reference statistics ---------------------------------------------------------------------------


def stats_file(tmp_path: Path, sigma: np.ndarray, meta_json=None) -> Path:
    from ldbench.metrics.stats import ReferenceStats, save_reference_stats

    d = len(sigma)
    meta = {"dataset": "synth-brain", "dataset_version": "1", "split": "test", "content_hash": "c", "dtype": "float64",
            "n": 10, "ldbench_version": "0", "extractor": {"name": "domain", "dim": d}}
    path = tmp_path / "s.npz"
    save_reference_stats(ReferenceStats(np.zeros(d), sigma, None, meta), path)
    if meta_json is not None:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["meta_json"] = meta_json
        np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("sigma, needle", [(np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
                                           (-1000 * np.eye(2), "positive semi-definite")])
def test_reference_stats_sigma_must_be_a_covariance(tmp_path, capsys, sigma, needle):
    one_error(capsys, ["stats", "show", str(stats_file(tmp_path, sigma))], needle)


@pytest.mark.parametrize("meta_json", [np.array(5), np.array(["[1, 2]"]), np.array('"text"')])
def test_reference_stats_meta_json_must_be_an_object(tmp_path, capsys, meta_json):
    one_error(capsys, ["stats", "show", str(stats_file(tmp_path, np.eye(2), meta_json))], "meta_json")


def test_a_valid_covariance_loads(tmp_path):
    from ldbench.metrics.stats import load_reference_stats

    x = np.random.default_rng(0).normal(size=(50, 3))
    assert load_reference_stats(stats_file(tmp_path, np.cov(x, rowvar=False))).sigma.shape == (3, 3)


# --- 9. slice indices, text ages -----------------------------------------------------------------------


def test_negative_slice_index_is_refused(tmp_path, capsys):
    one_error(capsys, ["datasets", "check", "manifest", "--root", str(tmp_path), "--set",
                       "slice={name: index, index: -1}"], "index must be >= 0")


def test_text_ages_are_reported_and_refused(tmp_path, capsys):
    from PIL import Image

    from ldbench.config import load_suite
    from ldbench.data.base import ImageTable
    from ldbench.suite_checks import check_table_for_suite

    rows = ["path,subject_id,timepoint,age"]
    for i in range(6):
        Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,s{i // 2},{i % 2},{'seventy' if i == 0 else 70 + i}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    main(["datasets", "check", "manifest", "--root", str(tmp_path)])
    assert "age: read as text" in capsys.readouterr().out
    table = ImageTable(np.zeros((2, 8, 8), np.float32), {"subject": np.array(["a", "b"]), "visit": np.array([0, 1]),
                                                          "split": np.array(["train", "test"]),
                                                          "age": np.array(["seventy", "71"])})
    suite = load_suite("smoke", [DOMAIN, "editors=[sdedit, instruct]"])
    with pytest.raises(UserError, match="age column is text"):
        check_table_for_suite(suite, "manifest", table)
    # smoke's oracles read ages too; without them and instruct, nothing needs ages
    with pytest.raises(UserError, match="age column is text"):
        check_table_for_suite(load_suite("smoke", [DOMAIN]), "manifest", table)
    check_table_for_suite(load_suite("smoke", [DOMAIN, "evaluation.effectiveness=false"]), "manifest", table)


# --- 10. run ids --------------------------------------------------------------------------------------


def test_each_run_starts_a_fresh_events_file_with_its_id(tmp_path, monkeypatch):
    import importlib

    run_module = importlib.import_module("ldbench.runner.run")
    from ldbench.config import load_suite

    monkeypatch.undo()  # the real run_suite, with its work replaced below
    monkeypatch.setattr(run_module, "make_extractors", lambda suite, opts: {})

    def failing(suite, opts, ctx, base_spec, extractors, log):
        log("stage", note="first stage")
        raise UserError("failed mid-run")

    monkeypatch.setattr(run_module, "_run", failing)
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.jsonl").write_text(json.dumps({"event": "start", "run": "older"}) + "\n")
    opts = run_module.RunOptions(out_dir=out, cache_dir=tmp_path / "cache", quiet=True)
    with pytest.raises(UserError):
        run_module.run_suite(load_suite("smoke", [DOMAIN]), opts)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    ids = {e["run"] for e in events}
    assert len(ids) == 1 and "older" not in ids and events[0]["event"] == "start"


def test_results_carry_the_run_id(tmp_path, monkeypatch):
    import importlib
    from types import SimpleNamespace

    run_module = importlib.import_module("ldbench.runner.run")
    import sys

    from ldbench.config import load_suite

    monkeypatch.setitem(sys.modules, "ldbench.report.html", SimpleNamespace(render_report=lambda inputs: "<html/>"))
    opts = run_module.RunOptions(out_dir=tmp_path, cache_dir=tmp_path / "cache", run_id="r-1")
    outputs = run_module.RunOutputs([], [], SimpleNamespace(path=tmp_path), {}, [], {})
    run_module.write_outputs(load_suite("smoke", [DOMAIN]), opts, outputs, lambda *a, **k: None)
    assert json.loads((tmp_path / "results.json").read_text())["run_id"] == "r-1"


# --- 11. two-way check, extractor in the key, --update --------------------------------------------------


def test_check_is_two_way_and_keyed_by_extractor(tmp_path, capsys):
    baseline = tmp_path / "b.json"
    base = [record(0.30), record(0.30, extractor="inception", metric="fid"),
            record(0.10, method="real", editor="held-out")]
    assert main(["check", str(write_results(tmp_path / "a", base)), "--baseline", str(baseline), "--update"]) == 0
    assert json.loads(baseline.read_text())["entries"][0]["extractor"] == "domain"
    assert main(["check", str(tmp_path / "a"), "--baseline", str(baseline)]) == 0
    better = [record(0.10), *base[1:]]  # FD is lower-is-better: 0.30 -> 0.10 improved beyond tolerance
    assert main(["check", str(write_results(tmp_path / "b", better)), "--baseline", str(baseline)]) == 1
    text = capsys.readouterr().out
    assert "1 improved beyond tolerance" in text and "--update" in text
    worse = [*base[:2], record(0.50, method="real", editor="held-out")]
    assert main(["check", str(write_results(tmp_path / "c", worse)), "--baseline", str(baseline)]) == 1
    assert "1 regressed" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "b"), "--baseline", str(baseline), "--update"]) == 0
    assert main(["check", str(tmp_path / "b"), "--baseline", str(baseline)]) == 0


# --- 12. drift notes ----------------------------------------------------------------------------------


def test_drift_note_reaches_provenance_but_not_keys():
    from ldbench.config import load_suite
    from ldbench.drift import Drift

    noted = Drift(0.1, note="tune-delta fd on val")
    assert noted.to_dict() == Drift(0.1).to_dict()  # cache and record keys unchanged
    assert noted.to_dict(with_note=True)["note"] == "tune-delta fd on val"
    suite = load_suite("smoke", [DOMAIN, "drifts=[{delta: 0.1, note: chosen on val}]"])
    assert suite.to_dict()["drifts"][0]["note"] == "chosen on val"
    assert "note" not in Drift(0.1).to_dict(with_note=True)
    assert math.isfinite(suite.drifts[0].delta)
