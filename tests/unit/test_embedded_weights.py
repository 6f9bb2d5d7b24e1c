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


def test_difference_says_which_tensors_differ_and_by_how_much(tmp_path):
    from safetensors.torch import save_file

    base = {"a": torch.ones(3, 2), "b": torch.arange(4.0), "c": torch.zeros(2)}
    save_file(base, str(tmp_path / "ref.safetensors"))
    save_file(base, str(tmp_path / "same.safetensors"))
    same = embedded_weights.difference(tmp_path / "same.safetensors", tmp_path / "ref.safetensors")
    assert same == {"tensors": 3, "differ": 0, "max_abs": 0.0, "max_rel": 0.0, "worst": None, "only_in": []}

    changed = {"a": torch.ones(3, 2), "b": torch.tensor([0.0, 1.0, 2.0, 3.5]), "c": torch.zeros(3), "d": torch.ones(1)}
    save_file(changed, str(tmp_path / "other.safetensors"))
    diff = embedded_weights.difference(tmp_path / "other.safetensors", tmp_path / "ref.safetensors")
    assert (diff["tensors"], diff["differ"], diff["worst"]) == (2, 1, "b")
    assert diff["max_abs"] == pytest.approx(0.5)
    assert diff["max_rel"] == pytest.approx(0.5 / float(torch.arange(4.0).norm()))
    assert diff["only_in"] == ["d", "c"]


def test_pretrain_embedded_says_how_far_a_remade_file_is_from_the_shipped_one(monkeypatch, capsys, tmp_path):
    fake = {"seconds": 10.0, "threads": 2, "sha256": "f" * 64, "shipped_sha256": embedded_weights.WEIGHTS_SHA256,
            "identical": False, "difference": {"tensors": 200, "differ": 37, "max_abs": 3.1e-6, "max_rel": 2e-7,
                                               "worst": "unet.conv_in.weight", "only_in": []}}
    monkeypatch.setattr(embedded_weights, "pretrain_to_file", lambda out, quiet: fake)
    assert main(["pretrain-embedded", "--out", str(tmp_path / "w.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out
    assert "37 of 200 tensors differ: largest element difference 3.1e-06, largest relative difference 2e-07 " \
           "(unet.conv_in.weight)" in out
