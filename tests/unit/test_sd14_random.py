"""sd14-random: SD v1.4's configurations as data, seeded random weights, stored and loaded like a real SD,
options checked when the suite loads; the full-size build matches SD v1.4's parameter counts."""

import pytest
import torch

from ldbench.config import Component, load_suite
from ldbench.errors import UserError
from ldbench.models import load_components
from ldbench.models.base_models import BASE_MODELS
from ldbench.models.sd14 import LABEL, PARAMETERS, SCHEDULER, TEXT, UNET, VAE, SD14Config, build_components
from ldbench.runner import stages
from ldbench.store import Store

NARROW = {"width_divisor": 8, "text_layers": 2, "image_size": 64}


def test_configurations_are_stable_diffusion_v1_4s():
    assert UNET["block_out_channels"] == (320, 640, 1280, 1280) and UNET["layers_per_block"] == 2
    assert UNET["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert UNET["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert (UNET["cross_attention_dim"], UNET["attention_head_dim"], UNET["sample_size"]) == (768, 8, 64)
    assert VAE["block_out_channels"] == (128, 256, 512, 512) and VAE["scaling_factor"] == 0.18215
    assert (VAE["latent_channels"], VAE["sample_size"], VAE["layers_per_block"]) == (4, 512, 2)
    assert (TEXT["vocab_size"], TEXT["hidden_size"], TEXT["num_hidden_layers"], TEXT["num_attention_heads"],
            TEXT["intermediate_size"], TEXT["max_position_embeddings"], TEXT["hidden_act"]) == (
        49408, 768, 12, 12, 3072, 77, "quick_gelu")
    assert (TEXT["bos_token_id"], TEXT["eos_token_id"], TEXT["pad_token_id"]) == (49406, 49407, 49407)
    assert SCHEDULER["beta_schedule"] == "scaled_linear" and SCHEDULER["steps_offset"] == 1
    assert not SCHEDULER["clip_sample"] and not SCHEDULER["set_alpha_to_one"]


def test_seeded_weights_are_deterministic(tmp_path):
    a = build_components(tmp_path / "a", SD14Config(seed=1, **NARROW))
    b = build_components(tmp_path / "b", SD14Config(seed=1, **NARROW))
    c = build_components(tmp_path / "c", SD14Config(seed=2, **NARROW))
    for name in ("unet", "vae", "text_encoder"):
        sa, sb, sc = (x.networks()[name].state_dict() for x in (a, b, c))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.unet.config.block_out_channels == (40, 80, 160, 160)  # SD's widths / 8, same blocks
    assert a.unet.config.down_block_types == UNET["down_block_types"]
    assert a.text_encoder.config.hidden_size == 96 == a.unet.config.cross_attention_dim


def test_stored_once_and_loaded_like_a_real_sd(tmp_path):
    ctx = stages.Context(store=Store(tmp_path / "store"), quiet=True)
    spec = Component("sd14-random", dict(NARROW))
    art = stages.base_model_stage(ctx, spec)
    assert art.meta["source"] == LABEL and art.meta["random_weights"] is True
    assert stages.base_model_stage(ctx, spec).key == art.key  # cached: the options are the key
    assert stages.base_model_stage(ctx, Component("sd14-random", {**NARROW, "seed": 1})).key != art.key
    assert (stages.pipeline_dir(art) / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    parts = load_components(stages.pipeline_dir(art))
    assert type(parts.scheduler).__name__ == "PNDMScheduler" and parts.scheduler.config.clip_sample is False
    assert parts.unet.config.sample_size * 8 == 64 and parts.tokenizer.model_max_length == 77
    ids = parts.tokenizer("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    with torch.no_grad():
        emb = parts.text_encoder(ids)[0]
        z = parts.vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
        out = parts.unet(z, 500, encoder_hidden_states=emb).sample
    assert out.shape == z.shape == (1, 4, 4, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("options, match", [
    ("{width_divisor: 3}", "width_divisor must be one of 1, 2, 4, 8"),
    ("{image_size: 100}", "multiple of 64"),
    ("{text_layers: 13}", "text_layers"),
    ("{seed: -1}", "seed"),
    ("{width: 8}", "width"),
])
def test_bad_options_fail_when_the_suite_loads(options, match):
    with pytest.raises(UserError, match=match) as err:
        load_suite("smoke", [f"base_model={{name: sd14-random, options: {options}}}"])
    assert "\n" not in str(err.value)


def test_registry_lists_every_base_model():
    assert BASE_MODELS.names() == ["diffusers", "embedded", "sd14-random"]
    assert BASE_MODELS.get("sd14-random").random_weights and not BASE_MODELS.get("embedded").random_weights
    with pytest.raises(UserError, match="valid: diffusers, embedded, sd14-random"):
        load_suite("smoke", ["base_model={name: sd15}"])
    load_suite("smoke", ["base_model={name: sd14-random, options: {width_divisor: 4, image_size: 256}}"])


@pytest.mark.slow
def test_full_size_has_stable_diffusion_v1_4s_parameter_counts(tmp_path):
    parts = build_components(tmp_path / "tok", SD14Config())
    counts = {k: sum(p.numel() for p in parts.networks()[k].parameters()) for k in PARAMETERS}
    assert counts == PARAMETERS == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    tok = parts.tokenizer
    ids = tok(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        emb = parts.text_encoder(ids)[0]
        z = parts.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean  # 8x8 latent: a tiny forward
        out = parts.unet(z, 999, encoder_hidden_states=emb).sample
        image = parts.vae.decode(out).sample
    assert emb.shape == (1, 77, 768) and out.shape == (1, 4, 8, 8) and image.shape == (1, 3, 64, 64)
    assert torch.isfinite(image).all()
