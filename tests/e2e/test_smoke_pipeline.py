"""The whole pipeline at toy size: run, rerun (all cache hits, identical numbers), killed and resumed in new
processes (identical numbers), outputs well formed."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from ldbench.config import load_suite
from ldbench.drift import Drift
from ldbench.runner.run import RunOptions, run_suite
from tests.toy import TOY_BASE_MODEL

pytestmark = pytest.mark.slow

TOY = [
    "datasets=[{name: synth-brain, options: {n_subjects: 24, visits: 2}}]",
    TOY_BASE_MODEL,
    "methods=[{name: finetune, options: {steps: 6, batch_size: 8}}]",
    "editors=[{name: sdedit, options: {steps: 4, strength: 0.5}}, {name: text2img, options: {steps: 3}}]",
    "evaluation.kid_subset_size=6",
    "evaluation.kid_subsets=10",
    "evaluation.bootstrap=20",
    "evaluation.extractors=[domain]",  # Inception's realism records are tested in tests/unit
    "evaluation.effectiveness=false",  # the oracles are tested in test_counterfactual_pipeline.py
    "evaluation.latent_probe={checkpoints: 6, samples: 4, steps: 2}",  # a probe at every step
]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_cache):
    root = tmp_path_factory.mktemp("smoke")
    suite = load_suite("smoke", TOY)
    opts = RunOptions(out_dir=root / "out", cache_dir=toy_cache(root / "cache"), quiet=True)
    first = run_suite(suite, opts)
    return suite, opts, first


def _cells(records: list[dict]) -> list[dict]:
    """The records of the suite's cells (not the floor, the autoencoder's or a fine-tune's own)."""
    return [r for r in records if r["editor"] not in ("held-out", "reconstruction", "fine-tune")]


def test_records_for_both_drifts_with_finite_metrics_and_cis(toy_run):
    _, opts, first = toy_run
    results = json.loads((opts.out_dir / "results.json").read_text())
    records = results["records"]
    assert len(records) == len(first.records)
    realism = [r for r in records if r["metric"] in ("fd", "kd")]
    # drifts × editors × (FD, KD), the real held-out floor's FD, KD and the autoencoder's (those images reconstructed)
    assert len(realism) == 2 * 2 * 2 + 2 + 2
    floor = [r for r in realism if r["method"] == "real"]
    assert {(r["editor"], r["metric"]) for r in floor} == {("held-out", "fd"), ("held-out", "kd")}
    assert {r["drift"]["delta"] for r in _cells(realism)} == {0.0, 0.1}
    for r in realism:
        assert r["extractor"] == "domain"  # domain extractor: never called FID/KID
        assert math.isfinite(r["value"])
        lo, hi = r["ci95"]
        assert lo <= r["value"] <= hi  # the interval contains its estimate
        for key in ("dataset", "method", "drift", "seed", "editor", "n", "provenance"):
            assert key in r
        prov = r["provenance"]
        assert prov["reference_stats"]["sha256"] and prov["environment"]["packages"]["torch"]
        own = {"real": "heldout_metrics", "autoencoder": "realism_ceiling"}
        assert prov["artifacts"][own.get(r["method"], "finetune")]
        assert r["details"]["extractor_validation"] in ("passed", "not validated")
    assert {r["n"] for r in floor} == {r["n"] for r in _cells(realism)}  # as many images as a generated set
    diversity = {r["metric"] for r in _cells(records)} - {"fd", "kd"}
    assert {"msssim_diversity", "memorization_ratio:pixel", "copy_rate:pixel"} <= diversity


def test_every_run_reports_its_autoencoder_ceiling_and_each_finetunes_latent_stability(toy_run):
    _, opts, _ = toy_run
    results = json.loads((opts.out_dir / "results.json").read_text())
    records = results["records"]
    ceiling = {r["metric"]: r for r in records if r["method"] == "autoencoder"}
    assert set(ceiling) == {"autoencoder_psnr", "autoencoder_ssim", "fd", "kd"}
    # realism: the floor's own images through the autoencoder, scored like them; this toy's 15-step
    # autoencoder blurs every scan, so they score far from the real images
    floor = {r["metric"]: r for r in records if r["method"] == "real"}
    for name in ("fd", "kd"):
        r = ceiling.pop(name)
        assert r["editor"] == "reconstruction" and r["n"] == floor[name]["n"] and r["extractor"] == "domain"
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1] and r["value"] > floor[name]["ci95"][1]
        assert "autoencoder" in r["details"]["images"] and r["provenance"]["base_model_source"]
        assert r["provenance"]["artifacts"]["heldout_metrics"] == floor[name]["provenance"]["artifacts"]["heldout_metrics"]
    test_size = {r["n"] for r in _cells(records) if r["metric"] == "fd"}  # a generated set: the test split's size
    for r in ceiling.values():
        lo, hi = r["ci95"]
        assert r["editor"] == "reconstruction" and lo <= r["value"] <= hi and {r["n"]} == test_size
        assert r["provenance"]["artifacts"]["autoencoder"] and r["provenance"]["base_model_source"]
    assert 5.0 < ceiling["autoencoder_psnr"]["value"] < 60.0
    stability = [r for r in records if r["metric"] == "latent_instability"]
    assert {Drift(**r["drift"]).label for r in stability} == {"no LD", "LD δ=0.1 (noise/none)"}  # training drifts
    for r in stability:
        lo, hi = r["ci95"]
        assert r["editor"] == "fine-tune" and lo <= r["value"] <= hi and r["n"] == 4
        assert r["details"]["probe"] == {"checkpoints": 6, "samples": 4, "steps": 2}  # the suite's probe
        assert r["details"]["checkpoint_steps"] == [0, 1, 2, 3, 4, 5, 6]
    effect = [e for e in results["ld_effects"] if e["metric"] == "latent_instability"]
    assert len(effect) == 1 and effect[0]["editor"] == "fine-tune" and effect[0]["test"] == "paired bootstrap"
    training = (opts.out_dir / "report.html").read_text().split('<section id="training">')[1].split("</section>")[0]
    assert training.count("<img ") == 2 and "generated latents at checkpoints" in training
    assert "Latent instability" in (opts.out_dir / "tables" / "training.md").read_text()


def test_second_run_is_all_cache_hits_with_identical_numbers(toy_run):
    suite, opts, first = toy_run
    second = run_suite(suite, opts)
    assert second.store_events and all(e["cached"] for e in second.store_events)
    strip = [(r["metric"], r["editor"], r["drift"]["delta"], r["value"], r["ci95"]) for r in first.records]
    again = [(r["metric"], r["editor"], r["drift"]["delta"], r["value"], r["ci95"]) for r in second.records]
    assert strip == again


def test_report_and_table_written(toy_run):
    _, opts, _ = toy_run
    html = (opts.out_dir / "report.html").read_text()
    assert "Latent channel distributions" in html and "data:image/png;base64," in html
    assert "not Inception" in html
    table = (opts.out_dir / "tables" / "main.md").read_text()
    assert "no LD" in table and "LD δ=0.1" in table and "FD [domain]" in table
    events = (opts.out_dir / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["event"] == "start"


def _cli(cache, out) -> list[str]:
    args = [sys.executable, "-m", "ldbench.cli", "run", "--suite", "smoke", "--cache-dir", str(cache),
            "--out", str(out), "--quiet"]
    return args + sum((["--set", o] for o in TOY), [])


def _built(out) -> list[tuple[str, str]]:
    """(stage, key) of every stage the run in `out` built, from its events.jsonl (each run rewrites it)."""
    path = out / "events.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(e["stage"], e["key"]) for e in events if e["event"] == "stage" and not e["cached"]]


def _killed_after(cache, out, stages: int) -> list[tuple[str, str]]:
    """Start the run in a new process and SIGKILL it once it has built `stages` stages; what it built."""
    (out / "events.jsonl").unlink(missing_ok=True)  # the last run's events: never count them for this one
    proc = subprocess.Popen(_cli(cache, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while len(_built(out)) < stages and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _built(out)


def test_killed_twice_from_an_empty_cache_then_resumed_gives_the_uninterrupted_numbers(toy_run, tmp_path):
    """SIGKILL a run from an empty cache twice and rerun it: the resumed runs rebuild only what was
    unfinished and end, in new processes, with the numbers of the uninterrupted run bit for bit (same config
    and seed on CPU: pretraining, fine-tuning, sampling and metrics give identical values)."""
    _, _, first = toy_run
    cache, out = tmp_path / "cache", tmp_path / "out"
    killed = [_killed_after(cache, out, 1)]
    killed.append(_killed_after(cache, out, 3))
    assert all(killed) and not (out / "results.json").exists()
    subprocess.run(_cli(cache, out), check=True, capture_output=True)
    built = [*killed, _built(out)]
    for i, stages in enumerate(built):  # a finished stage is read back, never rebuilt
        assert not set(stages) & set().union(*built[:i]), stages
    assert {"base-model", "finetune", "generate", "metrics"} <= {stage for run in built for stage, _ in run}
    records = json.loads((out / "results.json").read_text())["records"]
    assert _values(records) == _values(first.records)
    assert not list(cache.rglob(".tmp-*"))  # nothing half-written survives in the store
    for entry in cache.glob("*/*"):
        if entry.is_dir() and not entry.name.startswith("."):
            assert (entry / "artifact.json").exists()


def _values(records: list[dict]) -> str:
    return json.dumps([(r["metric"], r["editor"], r["drift"]["delta"], r["value"], list(r["ci95"]))
                       for r in records])


def test_report_command_rerenders_from_the_cache_only(toy_run, tmp_path, capsys):
    from ldbench.cli import main

    _, opts, first = toy_run
    report = opts.out_dir / "report.html"
    report.unlink()
    assert main(["report", str(opts.out_dir)]) == 0
    assert "Latent channel distributions" in report.read_text()
    again = json.loads((opts.out_dir / "results.json").read_text())["records"]
    assert [r["value"] for r in again] == [r["value"] for r in first.records]
    # an empty cache: an error naming what is missing, never a silent recomputation
    assert main(["report", str(opts.out_dir), "--cache-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "ldbench: error:" in err and "rerun it with `ldbench run`" in err
    assert [p.name for p in (tmp_path / "empty").iterdir() if not p.name.startswith(".")] == []  # nothing built


def test_a_cell_can_load_a_checkpoint_instead_of_training(toy_run, tmp_path):
    """The method's saved weights (and a diffusers directory) load instead of training; the hash is in the
    provenance, and the numbers equal those of the run that trained the same weights."""
    suite, opts, first = toy_run
    keys = {r["drift"]["delta"]: r["provenance"]["artifacts"]["finetune"] for r in _cells(first.records)}
    cell_values = [r["value"] for r in _cells(first.records)]
    files = {d: opts.cache_dir / "finetune" / k / "trained.safetensors" for d, k in keys.items()}
    loaded = load_suite("smoke", TOY + [
        f"methods=[{{name: finetune, options: {{checkpoint: {{'0.0': '{files[0.0]}', '0.1': '{files[0.1]}'}}}}}}]"])
    second = run_suite(loaded, RunOptions(out_dir=tmp_path / "out", cache_dir=opts.cache_dir, quiet=True))
    assert [r["value"] for r in _cells(second.records)] == cell_values
    assert not [r for r in second.records if r["editor"] == "fine-tune"]  # nothing trained here, nothing probed
    source = _cells(second.records)[0]["provenance"]["finetune_source"]
    assert len(source["sha256"]) == 64 and source["loaded_from"] in {str(f) for f in files.values()}

    from ldbench.errors import UserError

    base_dir = next((opts.cache_dir / "base-model").glob("*/pipeline"))
    ok = load_suite("smoke", TOY + [f"methods=[{{name: finetune, options: {{checkpoint: '{base_dir}'}}}}]"])
    run_suite(ok, RunOptions(out_dir=tmp_path / "out2", cache_dir=opts.cache_dir, quiet=True))  # a diffusers dir
    bad = load_suite("smoke", TOY + [f"methods=[{{name: finetune, options: {{checkpoint: '{tmp_path}/nope.safetensors'}}}}]"])
    with pytest.raises(UserError, match="does not exist"):
        run_suite(bad, RunOptions(out_dir=tmp_path / "out3", cache_dir=opts.cache_dir, quiet=True))
