"""The suite time estimator: calibrated against the measured smoke run, monotone in the work each option
asks for, and counting stages the way the store's cache keys share them."""

from __future__ import annotations

import json

import pytest

from ldbench.config import load_suite
from ldbench.errors import UserError
from ldbench.runner.estimate import estimate_suite, format_duration

SMOKE_COLD_SECONDS = 207.0  # measured: cold smoke run on 2 CPU cores (pretraining included)
FULL_COLD_SECONDS = 4464.0  # measured: cold full run on 2 CPU cores, 1 h 14 min 24 s wall
# The full suite as it is (500-step fine-tunes): 4457 s measured with stages in the cache, 885 s of which are on
# record in the runs that built them (those runs' events.jsonl); the other 12 cached stages (two fine-tunes, the
# held-out floors, ceilings and split features) are not, so this is a lower bound on a cold run (about 5550 s)
FULL_NOW_SECONDS = 4457.0 + 885.0


def _est(*overrides: str, suite: str = "smoke"):
    return estimate_suite(load_suite(suite, list(overrides)))


def _added_since_measured(est, finetunes: int) -> float:
    """Estimated seconds of the work the measured runs did not do yet: the autoencoder's reconstruction of
    each test split and of the held-out floor (the realism ceiling), and the latent probe through each fine-tune."""
    from ldbench.models.probe import ProbeSettings
    from ldbench.runner.estimate import DEFAULT_COSTS, _probe_seconds

    return (est.seconds_by_stage.get("autoencoder", 0.0) + est.seconds_by_stage.get("realism-ceiling", 0.0)
            + finetunes * _probe_seconds(DEFAULT_COSTS, ProbeSettings()))


def test_smoke_estimate_is_within_40_percent_of_the_measured_run():
    # the suite as it was measured: no oracles yet, 250-step fine-tunes
    est = _est("evaluation.effectiveness=false", "methods=[{name: finetune, options: {steps: 250, batch_size: 16}}]")
    seconds = est.seconds - _added_since_measured(est, est.counts["finetune"])
    assert 0.6 * SMOKE_COLD_SECONDS <= seconds <= 1.4 * SMOKE_COLD_SECONDS, est.seconds_by_stage
    # the measured run built exactly these (events.jsonl; reference stats ship for both extractors), and now
    # the autoencoder's reconstruction and realism ceiling
    assert est.counts == {"dataset": 1, "latents": 1, "autoencoder": 1, "base-model": 1, "finetune": 2, "generate": 4,
                          "metrics": 8, "heldout-metrics": 2, "realism-ceiling": 2, "split-features": 1, "diversity": 4}
    with_oracles = _est()  # the suite as it is: an oracle per attribute the edits and samples are asked for
    assert with_oracles.counts["oracle"] == 2 and with_oracles.counts["counterfactual-metrics"] == 4


# The full suite as that measured run had it (60-step fine-tunes, δ ∈ {-0.1, 0.1, 0.2} at both placements,
# seeds {0, 1}, 10-step SDEdit at guidance 3, 2-epoch classifiers at lr 1e-3, one classifier per oracle and arm)
FULL_AS_MEASURED = (
    "methods=[{name: finetune, options: {steps: 60, lr: 0.0003}}, {name: textual-inversion, options: {steps: 60, lr: 0.005}},"
    " {name: dreambooth, options: {steps: 60, batch_size: 8, lr: 0.0003, num_class_images: 16, class_sample_steps: 10}},"
    " {name: custom-diffusion, options: {steps: 60, lr: 0.001}}, {name: lora, options: {steps: 60, lr: 0.001}}]",
    "drifts=[{delta: 0.0, train: none, sample: none}, {delta: -0.1, train: noise, sample: init},"
    " {delta: -0.1, train: noise, sample: every-step}, {delta: 0.1, train: noise, sample: init},"
    " {delta: 0.1, train: noise, sample: every-step}, {delta: 0.2, train: noise, sample: init},"
    " {delta: 0.2, train: noise, sample: every-step}]",
    "seeds=[0, 1]", "editors=[{name: sdedit, options: {sampler: ddim, steps: 10, strength: 0.6, guidance_scale: 3.0}}]",
    "evaluation.classifier={model: resnet10t, epochs: 2, batch_size: 32, lr: 0.001}",
    "evaluation.extractors=[domain]", "evaluation.diversity=false", "evaluation.oracle_members=1",
    "evaluation.utility_members=1")


def test_full_estimate_is_within_25_percent_of_the_measured_run():
    measured = _est(*FULL_AS_MEASURED, suite="full")
    seconds = measured.seconds - _added_since_measured(measured, measured.counts["finetune"])
    assert 0.75 * FULL_COLD_SECONDS <= seconds <= 1.25 * FULL_COLD_SECONDS, measured.seconds_by_stage
    assert measured.counts["finetune"] == 80 and measured.counts["generate"] == 280
    # the suite as it is: five methods × three fine-tunes (no LD, δ ±0.1) per dataset, four sampling drifts
    # (δ 0.1 at two placements); the reference statistics of both datasets ship
    now = _est(suite="full")
    assert 0.75 * FULL_NOW_SECONDS <= now.seconds <= 1.25 * FULL_NOW_SECONDS, now.seconds_by_stage
    assert now.counts == {
        "dataset": 2, "latents": 2, "autoencoder": 2, "base-model": 1, "finetune": 30, "heldout-metrics": 4,
        "realism-ceiling": 4, "split-features": 2, "diversity": 40, "generate": 80, "metrics": 80, "oracle": 2,
        "counterfactual-metrics": 40, "classifier": 2, "utility": 40}


def test_monotone_in_training_and_sampling_steps():
    base = _est().seconds
    more_ft = _est("methods=[{name: finetune, options: {steps: 1000, batch_size: 16}}]").seconds
    assert more_ft > base
    longer = _est("editors=[{name: sdedit, options: {steps: 40, strength: 0.6}}, {name: text2img, options: {steps: 40}}]")
    assert longer.seconds > base
    cheaper_pretrain = _est("base_model={name: embedded, options: {vae_steps: 10, unet_steps: 10}}")
    dearer_pretrain = _est("base_model={name: embedded, options: {vae_steps: 100, unet_steps: 100}}")
    assert cheaper_pretrain.seconds_by_stage["base-model"] < dearer_pretrain.seconds_by_stage["base-model"]
    lighter_probe = _est("evaluation.latent_probe={checkpoints: 2, samples: 4, steps: 2}")
    assert lighter_probe.seconds_by_stage["finetune"] < _est().seconds_by_stage["finetune"]
    # the default config's weights are shipped: loading them costs less than any pretraining
    assert _est().seconds_by_stage["base-model"] < cheaper_pretrain.seconds_by_stage["base-model"]


def test_editors_share_one_finetune_and_zero_drifts_share_everything():
    one_editor = _est("editors=[{name: text2img}]")
    three = _est("editors=[{name: text2img}, {name: sdedit}, {name: inversion-edit}]")
    assert one_editor.counts["finetune"] == three.counts["finetune"] == 2
    assert three.counts["generate"] == 3 * one_editor.counts["generate"]
    # δ = 0 under any placement is the undrifted model: one fine-tune and one generation, not three
    zeros = _est("drifts=[{delta: 0.0, train: none, sample: none}, {delta: 0.0, train: noise, sample: init},"
                 " {delta: 0.0, train: noise, sample: every-step}]", "editors=[{name: text2img}]")
    assert zeros.counts["finetune"] == 1 and zeros.counts["generate"] == 1
    # two sampling placements of one δ: one fine-tune, two generations
    placements = _est("drifts=[{delta: 0.1, train: noise, sample: init}, {delta: 0.1, train: noise, sample: every-step}]",
                      "editors=[{name: text2img}]")
    assert placements.counts["finetune"] == 1 and placements.counts["generate"] == 2


def test_base_model_and_dataset_counted_once_and_seeds_multiply_training():
    two_seeds = _est("seeds=[0, 1]")
    assert two_seeds.counts["base-model"] == 1 and two_seeds.counts["dataset"] == 1
    assert two_seeds.counts["finetune"] == 4


def test_counterfactual_evaluation_adds_its_stages():
    plain = _est("editors=[{name: sdedit}]")
    cf = _est("editors=[{name: sdedit}]", "evaluation.counterfactual=true", "evaluation.effectiveness=true",
              "evaluation.utility=true")
    assert cf.seconds > plain.seconds
    assert cf.counts["counterfactual-metrics"] == 2 and cf.counts["classifier"] == 1  # real arm shared
    assert cf.counts["generate"] == 2 * plain.counts["generate"]  # the train split for the AUC protocol


def test_ci_suite_fits_the_20_minute_budget_and_full_is_much_bigger():
    ci, full = _est(suite="ci"), _est(suite="full")
    assert ci.seconds < 20 * 60
    assert full.seconds > 3 * ci.seconds


def test_bad_method_option_is_a_user_error():
    with pytest.raises(UserError, match="valid:"):
        _est("methods=[{name: finetune, options: {stepz: 5}}]")


def test_format_duration():
    assert format_duration(42) == "42 s"
    assert format_duration(600) == "10 min"
    assert format_duration(5 * 3600) == "5.0 h"
    assert format_duration(3 * 86400) == "3.0 d"


def _gpu_result(tmp_path, finetune_step: float = 0.5, image_step: float = 0.01):
    """A result file in bench_gpu.py's format; the figures are test inputs, not measurements."""
    batch, steps = 4, 50
    data = {"device": "test card", "model": "sd14-random", "image_size": 512,
            "train": {"batch_size": 1, "methods": {m: {"ldbench_s_per_step": finetune_step} for m in
                                                   ("finetune", "dreambooth", "textual-inversion", "custom-diffusion")}},
            "sampling": {"batch": batch, "steps": steps,
                         "rows": [{"drift": "no LD", "ldbench_s": image_step * batch * steps}]},
            "inception": {"ldbench_images_per_s": 1000.0}}
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    return path


def test_gpu_costs_come_from_the_benchmark_and_scale_the_paper_suite(tmp_path):
    from ldbench.runner.estimate import Costs

    paper = load_suite("paper", expand_env=False)
    slow = estimate_suite(paper, Costs.from_gpu_benchmark(_gpu_result(tmp_path, finetune_step=1.0)))
    fast = estimate_suite(paper, Costs.from_gpu_benchmark(_gpu_result(tmp_path, finetune_step=0.5)))
    assert fast.seconds_by_stage["finetune"] < 0.6 * slow.seconds_by_stage["finetune"]
    assert fast.seconds_by_stage["base-model"] == 0.0
    # 4 methods × (5000/3000/1000/1000 steps at batch 4 = 4 × batch 1) × 3 datasets × 3 seeds × 2 trainings
    assert fast.seconds_by_stage["finetune"] > 0.5 * 4 * (5000 + 3000 + 1000 + 1000) * 18


@pytest.mark.parametrize("content", ["{}", "not json", '{"train": {"batch_size": 1, "methods": {}}}'])
def test_a_file_that_is_not_a_gpu_result_is_a_user_error(tmp_path, content):
    from ldbench.runner.estimate import Costs

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match="bad.json: not a bench_gpu.py result"):
        Costs.from_gpu_benchmark(path)


def test_suites_command_prints_the_gpu_column(tmp_path, capsys):
    from ldbench.cli import main

    assert main(["suites", "--gpu-costs", str(_gpu_result(tmp_path))]) == 0
    printed = capsys.readouterr().out
    assert "on the GPU" in printed and "test card" in printed
