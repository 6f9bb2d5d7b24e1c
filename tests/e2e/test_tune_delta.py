"""`ldbench tune-delta` at toy size: a curve over the grid on the validation split, the chosen δ, files."""

import json

import pytest

from ldbench.cli import main
from tests.toy import TOY_BASE_MODEL

pytestmark = pytest.mark.slow

TOY = [
    "datasets=[{name: synth-brain, options: {n_subjects: 30, visits: 2, image_size: 32}}]",
    TOY_BASE_MODEL,
    "methods=[{name: finetune, options: {steps: 4, batch_size: 8}}]",
    "editors=[{name: text2img, options: {steps: 3}}]",
    "evaluation.kid_subset_size=4",
    "evaluation.kid_subsets=5",
    "evaluation.bootstrap=20",
    "evaluation.extractors=[domain]",
    "evaluation.latent_probe={checkpoints: 2, samples: 4, steps: 2}",  # the probe's own size is tested in the smoke module
]


def test_tune_delta_writes_the_curve_and_chooses_on_val(tmp_path, capsys, toy_cache):
    args = ["tune-delta", "--suite", "smoke", "--grid=-0.1:0.1:0.1", "--criterion", "l1", "--quiet",
            "--out", str(tmp_path / "out"), "--cache-dir", str(toy_cache(tmp_path / "cache"))]
    for o in TOY:
        args += ["--set", o]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "tune-delta.json").read_text())
    assert [c["delta"] for c in result["curve"]] == [-0.1, 0.0, 0.1]
    assert result["split"] == "val" and result["criterion"] == "l1"
    best = min(result["curve"], key=lambda c: c["l1"])
    assert result["chosen_delta"] == best["delta"]
    for c in result["curve"]:
        assert c["l1"] > 0 and c["fd"] >= 0 and c["l1_ci95"][0] <= c["l1_ci95"][1]
    # δ changes the samples: the curve is not flat
    assert len({round(c["l1"], 9) for c in result["curve"]}) == 3
    assert "drifts=[" in result["use_it"]
    printed = capsys.readouterr().out.replace("\n", "")  # rich wraps long lines
    assert "Chosen δ" in printed and "tune-delta.json" in printed


def test_tune_delta_rejects_a_bad_grid(tmp_path, capsys):
    assert main(["tune-delta", "--grid=0.2:-0.2:0.05", "--cache-dir", str(tmp_path)]) == 2
    assert "LOW <= HIGH" in capsys.readouterr().err


def test_tune_delta_refuses_weights_that_are_no_inception_before_any_work(tmp_path, capsys):
    """A plain tensor file of other shapes passes the file checks (allowed unverified) and fails when the
    network is built, which tune-delta does before its first build, as `run` does: nothing is built."""
    import torch

    weights = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)
    args = ["tune-delta", "--suite", "smoke", "--grid=0:0.1:0.1", "--quiet", "--out", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), "--inception-weights", str(weights), "--allow-unverified-weights",
            "--set", "evaluation.extractors=[inception]"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.pth" in err[0] and "not torch-fidelity Inception-v3 weights" in err[0]
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []
