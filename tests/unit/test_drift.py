"""Latent Drifting core: δ = 0 is plain diffusers; init / every-step follow the closed form; training
with the `noise` placement learns ε + δ."""

import dataclasses

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline

from ldbench.drift import NO_DRIFT, Drift, after_step, initial_latents, training_inputs
from ldbench.errors import UserError
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import text_to_latents


def _pipeline(parts, scheduler):
    return StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("drift", [NO_DRIFT, Drift(0.0, train="noise", sample="every-step")])
def test_zero_delta_equals_plain_diffusers_pipeline(tiny_parts, sampler, drift):
    prompts = ["brain mri, 70 year old, cognitively normal", "a photo of astronaut"]
    ours = text_to_latents(tiny_parts, make_sampler(sampler, tiny_parts.scheduler), prompts, drift, steps=6,
                           guidance_scale=3.0, generator=torch.Generator().manual_seed(7))
    pipe = _pipeline(tiny_parts, make_sampler(sampler, tiny_parts.scheduler))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompts, num_inference_steps=6, guidance_scale=3.0, output_type="latent",
                  generator=torch.Generator().manual_seed(7)).images
    assert torch.equal(ours, theirs)


class ZeroNoiseUNet(torch.nn.Module):
    """Predicts ε = 0: DDIM then maps x_t to √(ᾱ_prev/ᾱ_t) x_t, a closed form to check drift against."""

    def __init__(self, channels=4, size=4):
        super().__init__()
        self.config = type("C", (), {"in_channels": channels, "sample_size": size})()
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, x, t, encoder_hidden_states=None):
        return type("O", (), {"sample": torch.zeros_like(x)})()


def _closed_form(drift: Drift, scheduler: DDIMScheduler, z: torch.Tensor, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    abar = scheduler.alphas_cumprod.double()
    ts = scheduler.timesteps.tolist()
    x = z.double() + (drift.delta if drift.sample != "none" else 0.0)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else None
        abar_prev = abar[prev] if prev is not None else scheduler.final_alpha_cumprod.double()
        x = torch.sqrt(abar_prev / abar[t]) * x
        if drift.sample == "every-step":
            x = x + drift.delta
    return x


@pytest.mark.parametrize("placement", ["init", "every-step", "none"])
def test_sampling_placements_match_closed_form(tiny_parts, placement):
    drift = Drift(0.3, train="none", sample=placement)
    unet = ZeroNoiseUNet()
    parts = dataclasses.replace(tiny_parts, unet=unet)
    scheduler = DDIMScheduler.from_config(tiny_parts.scheduler.config)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn((3, 4, 4, 4), generator=torch.Generator().manual_seed(0))
    out = text_to_latents(parts, scheduler, ["x"] * 3, drift, steps=5, guidance_scale=1.0, generator=gen)
    expected = _closed_form(drift, DDIMScheduler.from_config(tiny_parts.scheduler.config), z, 5)
    np.testing.assert_allclose(out.double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_initial_latents_and_after_step_per_channel():
    noise = torch.zeros(2, 4, 3, 3)
    drift = Drift((0.1, -0.2, 0.0, 0.3), train="none", sample="every-step")
    z = initial_latents(drift, noise)
    assert torch.allclose(z[:, :, 0, 0], torch.tensor([0.1, -0.2, 0.0, 0.3]).expand(2, 4))
    assert torch.allclose(after_step(drift, z)[:, 3], torch.full((2, 3, 3), 0.6))
    assert after_step(Drift(0.1, sample="init"), z) is z  # init: only z_T moves


def test_zero_delta_training_inputs_identical_to_plain():
    sched = DDPMScheduler()
    z0, noise, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.randint(0, 1000, (4,))
    for train in ("noise", "noise-unshifted-target", "latent", "none"):
        x_t, target = training_inputs(Drift(0.0, train=train), sched, z0, noise, t)
        assert torch.equal(x_t, sched.add_noise(z0, noise, t)) and target is noise


def test_training_placements_follow_their_definition():
    sched = DDPMScheduler()
    z0, noise, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.randint(0, 1000, (4,))
    x, target = training_inputs(Drift(0.2, train="noise"), sched, z0, noise, t)
    assert torch.allclose(target, noise + 0.2) and torch.allclose(x, sched.add_noise(z0, noise + 0.2, t))
    x, target = training_inputs(Drift(0.2, train="noise-unshifted-target"), sched, z0, noise, t)
    assert target is noise and torch.allclose(x, sched.add_noise(z0, noise + 0.2, t))
    x, target = training_inputs(Drift(0.2, train="latent"), sched, z0, noise, t)
    assert target is noise and torch.allclose(x, sched.add_noise(z0, noise, t) + 0.2)


def test_noise_placement_learns_to_predict_shifted_noise():
    """Toy problem: z_0 = 0, a model that is one learnable bias per channel. Its MSE-optimal value is
    E[ε'] = δ under the `noise` placement, and 0 without drift."""
    sched = DDPMScheduler()
    gen = torch.Generator().manual_seed(0)
    for delta, expected in ((0.15, 0.15), (-0.1, -0.1), (0.0, 0.0)):
        bias = torch.zeros(1, 4, 1, 1, requires_grad=True)
        opt = torch.optim.Adam([bias], lr=0.02)
        drift = Drift(delta, train="noise")
        for _ in range(400):
            noise = torch.randn((64, 4, 4, 4), generator=gen)
            t = torch.randint(0, 1000, (64,), generator=gen)
            x_t, target = training_inputs(drift, sched, torch.zeros_like(noise), noise, t)
            loss = ((bias.expand_as(x_t) - target) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert bias.detach().mean().item() == pytest.approx(expected, abs=0.02)


def test_bad_drift_values_are_user_errors():
    with pytest.raises(UserError, match="train placement"):
        Drift(0.1, train="everywhere")
    with pytest.raises(UserError, match="sample placement"):
        Drift(0.1, sample="sometimes")
    with pytest.raises(UserError, match="number"):
        Drift("big")
    with pytest.raises(UserError, match="unknown drift keys"):
        Drift.from_dict({"delta": 0.1, "placement": "x"})
    with pytest.raises(UserError, match="channels"):
        Drift((0.1, 0.2), sample="init").delta_like(torch.zeros(1, 4, 2, 2))


@pytest.mark.parametrize("drift, training, sampling", [
    (Drift(0.1, train="noise", sample="every-step", note="tuned"), Drift(0.1, train="noise", sample="none"),
     Drift(0.1, train="none", sample="every-step")),
    (Drift(0.0, train="noise", sample="init"), NO_DRIFT, NO_DRIFT),
    (Drift(0.2, train="none", sample="init"), NO_DRIFT, Drift(0.2, train="none", sample="init")),
    (Drift((0.1, 0.0, 0.0, 0.0), train="latent", sample="none"), Drift((0.1, 0.0, 0.0, 0.0), train="latent",
                                                                       sample="none"), NO_DRIFT),
])
def test_drift_says_what_happens_in_training_and_in_sampling(drift, training, sampling):
    assert drift.for_training() == training and drift.for_sampling() == sampling
    assert drift.for_training().note == "" and drift.for_sampling().to_dict() == sampling.to_dict()
