"""The latent probe through fine-tuning (the paper's third mechanism): it changes no number of training,
every registered method is probed, and the stability math says what it claims."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ldbench.drift import NO_DRIFT, Drift
from ldbench.methods import METHODS
from ldbench.metrics.latent_stability import channel_summary, late_checkpoints, latent_instability
from ldbench.models.probe import LatentProbe, ProbeSettings, active_probe, probe_drift, probing
from ldbench.models.training import TrainData
from tests.unit.test_component_contracts import CAPTIONS, _tiny_options

SMALL = ProbeSettings(checkpoints=2, samples=3, steps=2)
OPTION = "{checkpoints: 2, samples: 3, steps: 2}"  # SMALL as a suite sets it
LD = Drift(0.1, train="noise", sample="none")


def _data() -> TrainData:
    g = torch.Generator().manual_seed(1)
    return TrainData(torch.randn(2, 4, 16, 16, generator=g), torch.full((2, 4, 16, 16), 0.1), CAPTIONS)


def _train(tiny_parts, name: str, probe: LatentProbe | None, drift=LD):
    parts = copy.deepcopy(tiny_parts)
    options = _tiny_options(METHODS, name, steps=4)
    if probe is None:
        return METHODS.get(name).train(parts, _data(), drift, options, seed=0, quiet=True)
    with probing(probe):
        return METHODS.get(name).train(parts, _data(), drift, options, seed=0, quiet=True)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_is_probed_and_probing_changes_no_training_number(tiny_parts, name):
    plain_tensors, plain_losses = _train(tiny_parts, name, None)
    probe = LatentProbe(SMALL, seed=0)
    tensors, losses = _train(tiny_parts, name, probe)
    assert losses == plain_losses  # bit for bit
    assert tensors.keys() == plain_tensors.keys()
    for k in tensors:
        assert torch.equal(tensors[k], plain_tensors[k]), k
    arrays = probe.arrays()
    assert arrays["steps"].tolist() == [0, 2, 4]
    assert arrays["channel_mean"].shape == (3, 3, 4) == arrays["channel_mean_square"].shape
    assert np.isfinite(arrays["channel_mean"]).all()
    assert (arrays["channel_mean_square"] >= arrays["channel_mean"] ** 2 - 1e-9).all()
    assert active_probe() is None  # switched off again


def test_probe_sees_the_weights_change_and_starts_ld_models_from_the_shifted_prior(tiny_parts):
    plain, drifted = LatentProbe(SMALL, seed=0), LatentProbe(SMALL, seed=0)
    _train(tiny_parts, "finetune", plain, NO_DRIFT)
    _train(tiny_parts, "finetune", drifted, LD)
    m0, m1 = plain.arrays()["channel_mean"], drifted.arrays()["channel_mean"]
    assert not np.array_equal(m0[0], m0[-1])  # fine-tuning (lr 1e-2) moves the generated latents
    assert not np.array_equal(m0[0], m1[0])  # same base model at step 0, but LD samples from N(δ, I)
    again = LatentProbe(SMALL, seed=0)
    _train(tiny_parts, "finetune", again, NO_DRIFT)
    assert np.array_equal(again.arrays()["channel_mean"], m0)  # deterministic


def test_probe_drift_is_init_sampling_for_ld_training_only():
    assert probe_drift(NO_DRIFT) == NO_DRIFT
    assert probe_drift(Drift(0.1, train="noise", sample="none")) == Drift(0.1, train="none", sample="init")
    assert probe_drift(Drift(0.0, train="noise", sample="none")) == NO_DRIFT


def test_checkpoint_steps_are_even_and_include_both_ends():
    assert ProbeSettings(checkpoints=8).at(250) == [0, 31, 62, 94, 125, 156, 188, 219, 250]
    assert ProbeSettings(checkpoints=8).at(3) == [0, 1, 2, 3]
    assert late_checkpoints(np.array([0, 31, 62, 94, 125, 156, 188, 219, 250])).tolist() == [False] * 4 + [True] * 5


def test_a_suite_sizes_its_probe_and_only_the_finetune_key_holds_it():
    from ldbench.config import load_suite
    from ldbench.runner.stages import latent_probe

    default, small = load_suite("smoke").evaluation, load_suite("smoke", [f"evaluation.latent_probe={OPTION}"]).evaluation
    assert latent_probe(default) == ProbeSettings(checkpoints=8, samples=16, steps=10)
    assert latent_probe(small) == SMALL
    # a probe changes what a fine-tune records, never how a generated set is scored: no scoring key moves
    assert small.scoring_key() == default.scoring_key() and "latent_probe" not in default.scoring_key()


@pytest.mark.parametrize("value, words", [
    ("{checkpoints: 1}", "evaluation.latent_probe.checkpoints must be an integer >= 2, got 1"),
    ("{samples: 1}", "evaluation.latent_probe.samples must be an integer >= 2, got 1"),
    ("{steps: 0}", "evaluation.latent_probe.steps must be an integer >= 1, got 0"),
    ("{steps: 2.5}", "evaluation.latent_probe.steps must be an integer"),
    ("{sample: 4}", "evaluation.latent_probe: unknown key(s) sample"),
    ("8", "evaluation.latent_probe must be of type dict"),
])
def test_a_bad_probe_option_is_refused_at_load(value, words):
    from ldbench.config import load_suite
    from ldbench.errors import UserError

    with pytest.raises(UserError) as err:
        load_suite("smoke", [f"evaluation.latent_probe={value}"])
    assert words in str(err.value)


def test_a_one_step_finetune_is_refused_at_load_not_at_the_runs_end():
    from ldbench.config import load_suite
    from ldbench.errors import UserError

    with pytest.raises(UserError, match=r"methods\[0\] \(lora\): steps must be >= 2, got 1: the latent probe"):
        load_suite("smoke", ["methods=[{name: lora, options: {steps: 1}}]"])
    with pytest.raises(ValueError, match="at least 2 checkpoints"):  # what it would meet there
        latent_instability(np.zeros((2, 3, 4)), np.array(ProbeSettings().at(1)))
    load_suite("smoke", ["methods=[{name: lora, options: {steps: 2}}]"])


def test_instability_is_zero_for_a_settled_model_and_the_late_spread_otherwise():
    steps = np.array([0, 1, 2, 3, 4])
    settled = np.zeros((5, 2, 4))
    settled[0] = 5.0  # early moves do not count
    assert latent_instability(settled, steps).tolist() == [0.0, 0.0]
    moving = np.zeros((5, 2, 4))
    moving[2:, 0, :] = np.array([1.0, -1.0, 1.0])[:, None]  # sample 0 keeps jumping by ±1 late
    values = latent_instability(moving, steps)
    assert values[0] == pytest.approx(np.std([1.0, -1.0, 1.0])) and values[1] == 0.0
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        latent_instability(np.zeros((2, 1, 4)), np.array([0, 10]))
    with pytest.raises(ValueError, match="checkpoints=3"):
        latent_instability(np.zeros((2, 1, 4)), np.array([0, 1, 2]))


def test_channel_summary_pools_samples_and_pixels_exactly():
    rng = np.random.default_rng(0)
    z = rng.normal(0.3, 2.0, size=(2, 5, 4, 8, 8))  # checkpoints, samples, channels, pixels
    mean, std = channel_summary(z.mean(axis=(3, 4)), (z * z).mean(axis=(3, 4)))
    np.testing.assert_allclose(mean, z.mean(axis=(1, 3, 4)), rtol=1e-12)
    np.testing.assert_allclose(std, z.std(axis=(1, 3, 4)), rtol=1e-10)
