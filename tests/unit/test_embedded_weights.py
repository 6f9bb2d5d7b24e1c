"""The embedded base model's shipped weights: pinned, loaded instead of pretraining, reproducible."""

import dataclasses
from pathlib import Path

import pytest
import torch

from ldbench.cli import main
from ldbench.errors import UserError
from ldbench.hashing import sha256_file
from ldbench.models import embedded_weights
from ldbench.models.tiny import TinyModelConfig, build_tiny_model

TINY = TinyModelConfig(vae_steps=2, unet_steps=2, crops_per_image=1, vae_width=8)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return out, embedded_weights.pretrain_to_file(out, quiet=True, config=TINY)


def test_pretraining_writes_the_same_file_twice(tiny_weights, tmp_path):
    path, first = tiny_weights
    again = embedded_weights.pretrain_to_file(tmp_path / "again.safetensors", quiet=True, config=TINY)
    assert first["sha256"] == sha256_file(path) == again["sha256"]
    assert first["threads"] == embedded_weights.PRETRAIN_THREADS
    assert not first["identical"]  # not the shipped config


def test_a_weights_file_loads_into_the_networks_it_was_written_from(tiny_weights, tmp_path):
    path, result = tiny_weights
    parts, natural, summary = embedded_weights.load(tmp_path / "tok", TINY, path, result["sha256"])
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    for name, module in parts.networks().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, tensors[f"{name}.{key}"]), f"{name}.{key}"
    assert torch.equal(natural, tensors["natural_latents"])
    assert parts.vae.config.scaling_factor == summary["scaling_factor"]
    assert summary["weights_sha256"] == result["sha256"] and "shipped weights" in summary["source"]


def test_a_damaged_or_foreign_weights_file_is_refused(tiny_weights, tmp_path):
    path, result = tiny_weights
    with pytest.raises(UserError, match="SHA-256 .* is not the pinned"):
        embedded_weights.load(tmp_path / "tok", TINY, path, "0" * 64)
    other = dataclasses.replace(TINY, seed=1)
    with pytest.raises(UserError, match="not the embedded model's weights for this config"):
        embedded_weights.load(tmp_path / "tok", other, path, result["sha256"])


def test_the_shipped_file_is_the_pinned_one_and_only_the_default_config_uses_it():
    assert embedded_weights.WEIGHTS_FILE.stat().st_size <= 30 * 2**20
    assert sha256_file(embedded_weights.WEIGHTS_FILE) == embedded_weights.WEIGHTS_SHA256
    assert embedded_weights.ships(TinyModelConfig())
    assert not embedded_weights.ships(TINY)
    assert not embedded_weights.ships(dataclasses.replace(TinyModelConfig(), unet_steps=TinyModelConfig().unet_steps + 1))


def test_a_cold_default_build_loads_the_shipped_weights_without_pretraining(tmp_path, monkeypatch):
    from ldbench.models import load_components, tiny

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the default config must not be pretrained")

    monkeypatch.setattr(tiny, "pretrain_components", no_pretraining)
    summary = build_tiny_model(tmp_path, TinyModelConfig(), quiet=True)
    assert summary["weights_sha256"] == embedded_weights.WEIGHTS_SHA256
    parts = load_components(tmp_path / "pipeline")
    from safetensors.torch import load_file

    tensors = load_file(str(embedded_weights.WEIGHTS_FILE))
    for name, module in parts.networks().items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, tensors[f"{name}.{key}"]), f"{name}.{key}"
    assert (Path(tmp_path) / "natural_latents.npz").is_file()


def test_pretrain_embedded_refuses_a_bad_out_path(capsys):
    assert main(["pretrain-embedded", "--out", "weights.bin"]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert main(["pretrain-embedded", "--out", str(embedded_weights.WEIGHTS_FILE)]) == 2
    assert "is the shipped file itself" in capsys.readouterr().err
