"""The fine-tuning methods: each changes only what it says it trains, saves only that, and loads back
(into ldbench's components and into a plain diffusers pipeline) to the same model."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from safetensors.torch import load_file, save_file

from ldbench.config import Component
from ldbench.drift import Drift
from ldbench.methods import METHODS, method_options
from ldbench.models import Components
from ldbench.models.text import prompt_for, tokenize
from ldbench.models.training import TrainData

CAPTIONS = ("brain mri, 70 year old, cognitively normal", "brain mri, 72 year old, alzheimer's disease")
COMMON = {"steps": 2, "batch_size": 2, "lr": 1e-2}
OPTIONS = {name: method_options(Component(name, COMMON)) for name in METHODS.names()}
OPTIONS["dreambooth"] = method_options(Component("dreambooth", {**COMMON, "num_class_images": 2,
                                                                "class_sample_steps": 2}))
TOKEN = OPTIONS["textual-inversion"].placeholder_token
DRIFT = Drift(0.1, train="noise", sample="none")


def _data(n: int = 4) -> TrainData:
    g = torch.Generator().manual_seed(1)
    return TrainData(torch.randn(n, 4, 16, 16, generator=g), torch.full((n, 4, 16, 16), 0.1),
                     tuple(CAPTIONS[i % 2] for i in range(n)))


def _snapshot(parts: Components) -> dict[str, torch.Tensor]:
    networks = parts.networks()
    return {f"{key}.{n}": p.detach().clone() for key in ("unet", "text_encoder", "vae")
            for n, p in networks[key].state_dict().items()}


@pytest.fixture(scope="module")
def trained(tiny_parts, tmp_path_factory):
    """method name -> (trained parts, saved-and-reloaded tensors), trained once per module."""
    out = {}

    def get(name: str):
        if name not in out:
            parts = copy.deepcopy(tiny_parts)
            tensors, losses = METHODS.get(name).train(parts, _data(), DRIFT, OPTIONS[name], seed=0, quiet=True)
            assert len(losses) == OPTIONS[name].steps and all(torch.isfinite(torch.tensor(losses)))
            path = tmp_path_factory.mktemp(name) / "trained.safetensors"
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))  # as the finetune stage
            out[name] = (parts, load_file(str(path)))
        return out[name]

    return get


@torch.no_grad()
def _unet_out(parts: Components, caption: str = CAPTIONS[1]) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g)
    emb = parts.text_encoder(tokenize(parts.tokenizer, [prompt_for(parts, caption)] * 2))[0]
    return parts.unet(x, torch.tensor([10, 500]), encoder_hidden_states=emb).sample


def _embedding(parts: Components) -> torch.Tensor:
    return parts.text_encoder.get_input_embeddings().weight


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


def _embedding_key(parts: Components) -> str:
    (key,) = [f"text_encoder.{n}" for n, _ in parts.text_encoder.named_parameters() if "token_embedding" in n]
    return key


def test_registered_with_what_they_train():
    for name in ("finetune", "textual-inversion", "dreambooth", "custom-diffusion", "lora"):
        assert METHODS.get(name).trains


def test_textual_inversion_trains_only_the_new_row(tiny_parts, trained):
    before = _snapshot(tiny_parts)
    parts, saved = trained("textual-inversion")
    EMBEDDING = _embedding_key(tiny_parts)
    after = _snapshot(parts)
    assert EMBEDDING in before and _changed(before, after) == {EMBEDDING}  # its one new row aside
    old = before[EMBEDDING]
    new = _embedding(parts)
    assert new.shape[0] == old.shape[0] + 1
    assert torch.equal(new[: len(old)], old)  # every other embedding row bit-identical
    token_id = parts.tokenizer.convert_tokens_to_ids(TOKEN)
    assert list(saved) == [TOKEN] and saved[TOKEN].shape == (1, old.shape[1])
    initializer = OPTIONS["textual-inversion"].initializer_token
    init = old[parts.tokenizer(initializer, add_special_tokens=False).input_ids].mean(0)
    assert not torch.equal(new[token_id], init)  # and the new one trained
    assert prompt_for(parts, "brain mri").startswith(TOKEN)


def test_custom_diffusion_trains_only_kv_and_its_token(tiny_parts, trained):
    before = _snapshot(tiny_parts)
    parts, saved = trained("custom-diffusion")
    EMBEDDING = _embedding_key(tiny_parts)
    after = _snapshot(parts)
    changed = _changed(before, after)
    kv = {k for k in before if k.startswith("unet.") and (".attn2.to_k." in k or ".attn2.to_v." in k)}
    assert kv and changed == kv | {EMBEDDING}
    old = before[EMBEDDING]
    assert torch.equal(_embedding(parts)[: len(old)], old)
    assert set(saved) == kv | {TOKEN}


def test_lora_trains_only_adapters(tiny_parts, trained):
    before = _snapshot(tiny_parts)
    parts, saved = trained("lora")
    after = {k.replace(".base_layer", ""): v for k, v in _snapshot(parts).items() if "lora_" not in k}
    assert set(after) == set(before) and _changed(before, after) == set()  # base weights unchanged
    assert saved and all("lora_A" in k or "lora_B" in k for k in saved)  # adapters only
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in saved.items())
    assert not torch.allclose(_unet_out(parts), _unet_out(tiny_parts))  # and the output differs


def test_dreambooth_loss_has_a_prior_term(tiny_parts):
    method = METHODS.get("dreambooth")
    parts = copy.deepcopy(tiny_parts)
    options = OPTIONS["dreambooth"]
    data = method.prepare(parts, _data(), options, seed=0, quiet=True)
    assert data.prior is not None and set(data.prior.captions) == {"brain mri"}  # class prompt from captions
    assert len(data.prior.captions) == options.num_class_images
    first = {}
    for w in (0.0, 1.0, 2.0):
        weighted = dataclasses.replace(options, steps=1, prior_loss_weight=w)
        first[w] = method.train(copy.deepcopy(tiny_parts), data, DRIFT, weighted, seed=0, quiet=True)[1][0]
    prior_term = first[1.0] - first[0.0]
    assert prior_term > 0 and first[2.0] - first[0.0] == pytest.approx(2 * prior_term, rel=1e-4)


@pytest.mark.parametrize("name", ["finetune", "textual-inversion", "dreambooth", "custom-diffusion", "lora"])
def test_apply_round_trip(tiny_parts, trained, name):
    parts, saved = trained(name)
    fresh = copy.deepcopy(tiny_parts)
    METHODS.get(name).apply(fresh, saved)
    assert prompt_for(fresh, "brain mri") == prompt_for(parts, "brain mri")
    torch.testing.assert_close(_unet_out(fresh), _unet_out(parts), rtol=0, atol=1e-6)
    if name != "finetune":
        assert not torch.allclose(_unet_out(fresh), _unet_out(tiny_parts))


def _pipeline(parts):
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )


@pytest.mark.parametrize("name", ["finetune", "lora"])
def test_loads_into_a_plain_diffusers_pipeline(tiny_parts, trained, name):
    """The saved tensors, loaded with diffusers' / peft's own API into a pipeline built from the base."""
    parts, saved = trained(name)
    pipe = _pipeline(copy.deepcopy(tiny_parts))
    if name == "finetune":
        pipe.unet.load_state_dict(saved, strict=True)
    elif name == "lora":
        pipe.load_lora_weights({f"unet.{k}": v for k, v in saved.items()})
    else:
        pipe.load_textual_inversion(saved)
    ours = Components(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                      scheduler=pipe.scheduler, prompt=parts.prompt)
    torch.testing.assert_close(_unet_out(ours), _unet_out(parts), rtol=0, atol=1e-6)
    image = pipe(prompt_for(parts, CAPTIONS[0]), num_inference_steps=2, guidance_scale=3.0, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(torch.from_numpy(image)).all()


def test_five_methods_suite_loads():
    from ldbench.config import load_suite

    suite = load_suite("methods")
    assert sorted(c.name for c in suite.methods) == sorted(METHODS.names())
    assert len(suite.cells()) == 5 * 2  # five methods x {no LD, LD}, each edited with sdedit
    assert suite.evaluation.effectiveness and suite.evaluation.utility  # does each method's edit work, and help
    for m in suite.methods:  # every method's options are valid options of that method
        assert isinstance(method_options(m), METHODS.get(m.name).options_class)
