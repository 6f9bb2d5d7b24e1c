"""--base-model takes a diffusers Stable Diffusion directory: tested with a tiny pipeline saved here."""

import pytest
import torch
from diffusers import StableDiffusionPipeline

from ldbench.config import load_suite
from ldbench.errors import UserError
from ldbench.models import load_components
from ldbench.models.tiny import build_components
from ldbench.runner.run import RunOptions, run_suite
from ldbench.runner.stages import external_model_artifact


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    parts = build_components(root / "tok", seed=3)
    pipe = StableDiffusionPipeline(**parts.modules(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "tiny-sd", safe_serialization=True)
    return root / "tiny-sd", parts


def test_load_components_reads_the_saved_weights(saved_pipeline):
    path, parts = saved_pipeline
    loaded = load_components(path)
    for name, module in loaded.networks().items():
        ours, theirs = module.state_dict(), parts.networks()[name].state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert loaded.tokenizer("brain mri").input_ids == parts.tokenizer("brain mri").input_ids


def test_external_model_key_is_the_weights_hash(saved_pipeline, tmp_path):
    path, _ = saved_pipeline
    a = external_model_artifact(str(path))
    assert a.key == external_model_artifact(str(path)).key
    assert "unet/diffusion_pytorch_model.safetensors" in a.meta["files"]


def test_not_a_pipeline_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="model_index.json"):
        load_components(tmp_path)
    with pytest.raises(UserError, match="model_index.json"):
        external_model_artifact(str(tmp_path))
    with pytest.raises(UserError, match="no such directory"):
        external_model_artifact(str(tmp_path / "missing"))


@pytest.mark.slow
def test_suite_runs_on_a_user_supplied_pipeline(saved_pipeline, tmp_path):
    path, _ = saved_pipeline
    suite = load_suite("smoke", [
        "datasets=[{name: synth-brain, options: {n_subjects: 20, visits: 1}}]",
        "methods=[{name: finetune, options: {steps: 3, batch_size: 4}}]",
        "drifts=[{delta: 0.1, train: noise, sample: every-step}]",
        "editors=[{name: text2img, options: {steps: 2}}]",
        "evaluation.kid_subset_size=4", "evaluation.kid_subsets=5", "evaluation.bootstrap=5",
        "evaluation.extractors=[domain]", "evaluation.diversity=false", "evaluation.effectiveness=false",
        "evaluation.latent_probe={checkpoints: 2, samples: 2, steps: 2}",
    ])
    result = run_suite(suite, RunOptions(out_dir=tmp_path / "out", cache_dir=tmp_path / "cache", quiet=True,
                                         base_model=str(path)))
    assert {r["metric"] for r in result.records} == {"fd", "kd", "autoencoder_psnr", "autoencoder_ssim",
                                                      "latent_instability"}
    for r in result.records:  # the cell's, the autoencoder's and the fine-tune's records name the pipeline
        if r["method"] != "real":  # not the real held-out floor
            assert r["provenance"]["base_model_source"] == str(path.resolve())


def test_a_model_with_more_latent_channels_samples_with_latent_drifting(tmp_path):
    """Encoding, sampling, Latent Drifting and decoding assume no number of latent channels: an 8-channel model
    (the embedded recipe with `latent_channels`, as benchmarks/autoencoder_capacity.py trains) runs them all."""
    from ldbench.drift import NO_DRIFT, Drift
    from ldbench.models.sampling import decode_latents, encode_images, text_to_latents

    parts = build_components(tmp_path / "tok", seed=3, latent_channels=8)
    codes = encode_images(parts, torch.rand(2, 64, 64))
    assert codes.shape == (2, 8, 16, 16)
    drift = Drift(0.5, train="none", sample="init")
    latents = text_to_latents(parts, parts.scheduler, ["brain mri"] * 2, drift, 2, 3.0,
                              torch.Generator().manual_seed(0))
    undrifted = text_to_latents(parts, parts.scheduler, ["brain mri"] * 2, NO_DRIFT, 2, 3.0,
                                torch.Generator().manual_seed(0))
    assert latents.shape == (2, 8, 16, 16) and not torch.equal(latents, undrifted)
    assert decode_latents(parts, latents).shape == (2, 64, 64)
