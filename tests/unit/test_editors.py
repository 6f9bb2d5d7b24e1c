"""Editors: plans say what each one generates and where its truth is; text2img and sdedit give the
numbers the pre-plan code gave; DDIM inversion reconstructs; InstructPix2Pix starts as the UNet it
copies and trains; the age prompt formats."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from ldbench.data import create_dataset
from ldbench.drift import NO_DRIFT, Drift
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditBatch, EditPlan, EditRequest, EditSettings, generate, run_edits
from ldbench.generate.instruct import InstructOptions, age_prompt, number_words, widen_unet
from ldbench.generate.sdedit import StrengthOptions
from ldbench.models.samplers import make_sampler
from ldbench.models.sampling import Chain, decode_latents, edit_latents, encode_images, text_to_latents
from ldbench.models.text import prompt_for, tokenize

EVERY_STEP = Drift(0.2, train="none", sample="every-step")
FAST = {name: EDITORS.options(name, {"steps": 3, "batch_size": 3}) for name in EDITORS.names()}


def _edits(editor, parts, dataset, images, rows, targets, drift, opts, seed):
    return run_edits(editor, parts, dataset, EditRequest(images, rows, targets), EditSettings(drift, opts, seed),
                     quiet=True)


@pytest.fixture(scope="module")
def brain():
    dataset = create_dataset("synth-brain", n_subjects=6, visits=2, image_size=64)
    return dataset, dataset.prepare().table


def test_registry_holds_the_four_editors():
    assert EDITORS.names() == ["instruct", "inversion-edit", "sdedit", "text2img"]
    for name, editor in EDITORS:
        assert editor.name == name and editor.description and "\n" not in editor.description
        assert editor.needs_source == (name != "text2img")
    assert hasattr(EDITORS.get("instruct"), "train") and hasattr(EDITORS.get("instruct"), "apply")


def test_text2img_plan(brain):
    dataset, table = brain
    plan = EDITORS.get("text2img").plan(dataset, table, True)
    assert len(plan) == len(table) and (plan.source_index == -1).all() and (plan.truth_index == -1).all()
    assert plan.truth_table == "" and plan.changes == ()
    assert list(plan.target_rows) == [table.row(i) for i in range(len(table))]


@pytest.mark.parametrize("name", ["sdedit", "inversion-edit"])
def test_counterfactual_plans(brain, name):
    dataset, table = brain
    plan = EDITORS.get(name).plan(dataset, table, True)
    assert plan.source_index.dtype == np.int64 and plan.truth_index.dtype == np.int64
    assert np.array_equal(plan.source_index, np.arange(len(table)))
    assert plan.truth_table == "counterfactuals" and np.array_equal(plan.truth_index, np.arange(len(table)))
    assert plan.changes == ("diagnosis",)
    for i, target in enumerate(plan.target_rows):
        row = table.row(i)
        assert target["diagnosis"] != row["diagnosis"] and {**target, "diagnosis": row["diagnosis"]} == row
    without = EDITORS.get(name).plan(dataset, table, False)
    assert without.truth_table == "" and (without.truth_index == -1).all()


def test_instruct_plan_pairs_baseline_with_follow_up(brain):
    dataset, table = brain
    plan = EDITORS.get("instruct").plan(dataset, table, True)
    assert len(plan) == 6 and plan.truth_table == "split" and plan.changes == ("age",)
    for s, target, truth in zip(plan.source_index, plan.target_rows, plan.truth_index, strict=True):
        source = table.row(int(s))
        assert target == table.row(int(truth))
        assert source["subject"] == target["subject"] and source["visit"] == 0 and target["visit"] == 1
        assert target["age"] > source["age"]


def test_instruct_plan_needs_longitudinal_data(brain):
    dataset, table = brain
    baselines = table.select(table.attributes["visit"] == 0)
    with pytest.raises(UserError, match="needs longitudinal data.*synth-brain"):
        EDITORS.get("instruct").plan(dataset, baselines, True)


def test_age_prompt_formats(brain):
    dataset, table = brain
    row = {**table.row(0), "age": 72.4, "diagnosis": "CN"}
    assert age_prompt(dataset, row, "number") == "brain mri, 72 year old, cognitively normal" == dataset.caption(row)
    assert age_prompt(dataset, row, "binned") == "brain mri, 70-74 year old, cognitively normal"
    assert age_prompt(dataset, row, "words") == "brain mri, seventy-two year old, cognitively normal"
    assert [number_words(n) for n in (0, 13, 40, 99, 100, 105, 120)] == [
        "zero", "thirteen", "forty", "ninety-nine", "one hundred", "one hundred five", "one hundred twenty"]
    with pytest.raises(UserError, match="0..120"):
        number_words(121)


def test_age_prompt_needs_an_age_in_the_caption():
    class NoAge:
        name = "no-age"

        def caption(self, row):
            return "chest x-ray, female"

    with pytest.raises(UserError, match="dataset no-age has no age in its captions"):
        age_prompt(NoAge(), {}, "number")


@pytest.mark.parametrize("name, bad", [("instruct", {"age_format": "decades"}), ("text2img", {"sampler": "euler"}),
                                       ("sdedit", {"strength": 1.5}), ("inversion-edit", {"steps": 0}),
                                       ("instruct", {"instruct_lr": 0.0})])
def test_bad_options_are_user_errors(name, bad):
    key = next(iter(bad))
    with pytest.raises(UserError, match=key):
        EDITORS.options(name, bad)


def _legacy(parts, dataset, table, drift, opts, seed, name):
    """The pre-plan text2img / sdedit editors, verbatim, as the reference for unchanged numbers."""
    n = len(table)
    batches = [slice(i, min(i + opts.batch_size, n)) for i in range(0, n, opts.batch_size)]
    rows = [table.row(i) for i in range(n)]
    if name == "sdedit":
        rows = [dataset.counterfactual_row(r) for r in rows]
    prompts = [prompt_for(parts, dataset.caption(r)) for r in rows]
    scheduler = make_sampler(opts.sampler, parts.scheduler)
    gen = torch.Generator().manual_seed(seed)
    if name == "text2img":
        z = [text_to_latents(parts, scheduler, prompts[s], drift, opts.steps, opts.guidance_scale, gen) for s in batches]
    else:
        source = encode_images(parts, torch.from_numpy(table.images))
        chain = Chain(opts.steps, opts.strength, opts.guidance_scale)
        z = [edit_latents(parts, scheduler, source[s], prompts[s], drift, chain, gen) for s in batches]
    z = torch.cat(z)
    return decode_latents(parts, z).numpy(), z.numpy(), prompts


@pytest.mark.parametrize("name", ["text2img", "sdedit"])
@pytest.mark.parametrize("drift", [NO_DRIFT, EVERY_STEP])
def test_same_numbers_as_before_plans(tiny_parts, brain, name, drift):
    dataset, table = brain
    table = table.select(np.arange(5))  # two batches of 3 and 2
    editor = EDITORS.get(name)
    plan = editor.plan(dataset, table, True)
    out = generate(editor, tiny_parts, dataset, table, plan, EditSettings(drift, FAST[name], 3))
    images, latents, prompts = _legacy(tiny_parts, dataset, table, drift, FAST[name], 3, name)
    assert np.array_equal(out.images, images) and np.array_equal(out.latents, latents)
    assert list(out.prompts) == prompts and out.plan.changes == (() if name == "text2img" else ("diagnosis",))


@pytest.mark.parametrize("name", ["text2img", "sdedit", "inversion-edit"])
def test_run_edits_shapes_and_determinism(tiny_parts, brain, name):
    dataset, table = brain
    editor = EDITORS.get(name)
    rows = [table.row(i) for i in range(2)]
    targets = [dataset.counterfactual_row(r) for r in rows]
    images = table.images[:2] if editor.needs_source else None
    first = _edits(editor, tiny_parts, dataset, images, rows, targets, EVERY_STEP, FAST[name], 5)
    again = _edits(editor, tiny_parts, dataset, images, rows, targets, EVERY_STEP, FAST[name], 5)
    out, z, prompts = first
    assert out.shape == (2, 64, 64) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert z.shape == (2, 4, 16, 16) and prompts == [dataset.caption(t) for t in targets]
    assert all(np.array_equal(a, b) for a, b in zip(first[:2], again[:2], strict=True))
    if name != "inversion-edit":  # inversion-edit is deterministic: no noise is drawn
        other = _edits(editor, tiny_parts, dataset, images, rows, targets, EVERY_STEP, FAST[name], 6)
        assert not np.array_equal(other[1], z)


def _smooth_latents(n: int) -> torch.Tensor:
    """Unit-variance, spatially smooth latents (the untrained tiny VAE's own are ~0.05 in scale)."""
    coarse = torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    z = torch.nn.functional.interpolate(coarse, size=16, mode="bilinear")
    return z / z.std()


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_inversion_reconstructs_far_better_than_sdedit(tiny_parts, brain, strength):
    """A null edit (target = source caption, guidance 1): DDIM inversion keeps the source, SDEdit's
    fresh noise loses it (even with the untrained UNet, whose ε only varies smoothly with x_t)."""
    dataset, table = brain
    rows = [table.row(i) for i in range(2)]
    source = _smooth_latents(2)
    opts = StrengthOptions(steps=20, guidance_scale=1.0, strength=strength)
    err = {}
    for name in ("inversion-edit", "sdedit"):
        batch = EditBatch(source, rows, rows, NO_DRIFT, opts, torch.Generator().manual_seed(0))
        z, _ = EDITORS.get(name).edit(tiny_parts, dataset, batch)
        err[name] = float((z - source).pow(2).mean().sqrt())
    assert err["inversion-edit"] < 0.15 * err["sdedit"]
    if strength == 0.5:
        assert err["inversion-edit"] < 0.1


class ZeroNoiseUNet(torch.nn.Module):
    """Predicts ε = 0, so a DDIM step is x -> √(ᾱ_prev/ᾱ_t) x and its inversion is exact."""

    def __init__(self):
        super().__init__()
        self.config = type("C", (), {"in_channels": 4, "sample_size": 16})()
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, x, t, encoder_hidden_states=None):
        return type("O", (), {"sample": torch.zeros_like(x)})()


@pytest.mark.parametrize("drift", [NO_DRIFT, Drift(0.3, sample="init"), Drift(0.3, sample="every-step"),
                                   Drift((0.1, -0.2, 0.3, 0.0), sample="every-step")])
def test_inversion_undoes_the_drift_of_every_sampling_step(tiny_parts, brain, drift):
    """With an exactly invertible DDIM step the round trip is exact only if inversion removes the
    every-step δ in the right place (before each inverse step); init adds nothing to inverted latents."""
    dataset, table = brain
    parts = dataclasses.replace(tiny_parts, unet=ZeroNoiseUNet())
    rows = [table.row(0), table.row(1)]
    source = _smooth_latents(2)
    batch = EditBatch(source, rows, rows, drift, StrengthOptions(steps=10, strength=1.0), torch.Generator())
    z, _ = EDITORS.get("inversion-edit").edit(parts, dataset, batch)
    torch.testing.assert_close(z, source, rtol=1e-4, atol=1e-4)


def test_inversion_edit_needs_ddim(tiny_parts, brain):
    dataset, table = brain
    rows = [table.row(0)]
    with pytest.raises(UserError, match="use sampler: ddim"):
        _edits(EDITORS.get("inversion-edit"), tiny_parts, dataset, table.images[:1], rows, rows, NO_DRIFT,
               StrengthOptions(sampler="ddpm", steps=2), 0)


@torch.no_grad()
def _unet_out(unet, parts, image: torch.Tensor | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g)
    emb = parts.text_encoder(tokenize(parts.tokenizer, ["brain mri, 72 year old, cognitively normal"] * 2))[0]
    if image is not None:
        x = torch.cat([x, image], dim=1)
    return unet(x, torch.tensor([10, 500]), encoder_hidden_states=emb).sample


def test_widened_unet_equals_the_original_at_step_zero(tiny_parts):
    wide = widen_unet(tiny_parts.unet)
    assert wide.config.in_channels == 8 and tiny_parts.unet.config.in_channels == 4
    image = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(_unet_out(wide, tiny_parts, image), _unet_out(tiny_parts.unet, tiny_parts, None),
                               rtol=0, atol=1e-6)


def test_instruct_trains_applies_and_edits(tiny_parts, brain):
    dataset, table = brain
    editor = EDITORS.get("instruct")
    opts = InstructOptions(steps=3, batch_size=2, instruct_steps=3, instruct_lr=1e-3, age_format="words")
    parts = copy.deepcopy(tiny_parts)
    test = table.split("test")
    plan = editor.plan(dataset, test, True)
    with pytest.raises(RuntimeError, match="no trained image-conditioned UNet"):
        generate(editor, parts, dataset, test, plan, EditSettings(NO_DRIFT, opts, 0))

    train_drift = Drift(0.1, train="noise", sample="every-step")
    tensors, losses = editor.train(parts, dataset, table.split("train"), train_drift, opts, seed=0, quiet=True)
    assert len(losses) == 3 and np.isfinite(losses).all()
    assert all(torch.equal(v, tiny_parts.unet.state_dict()[k]) for k, v in parts.unet.state_dict().items())
    image = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    trained = _unet_out(parts.editor_unet, parts, image)
    assert not torch.allclose(trained, _unet_out(widen_unet(tiny_parts.unet), parts, image))
    assert editor.train(copy.deepcopy(tiny_parts), dataset, table.split("train"), train_drift, opts, seed=0,
                        quiet=True)[1] == losses  # deterministic for a seed

    fresh = copy.deepcopy(tiny_parts)
    editor.apply(fresh, tensors)
    torch.testing.assert_close(_unet_out(fresh.editor_unet, fresh, image), trained, rtol=0, atol=0)

    out = generate(editor, fresh, dataset, test, plan, EditSettings(EVERY_STEP, opts, 0))
    assert out.images.shape == (len(plan), 64, 64) and np.isfinite(out.latents).all()
    assert out.prompts == tuple(age_prompt(dataset, r, "words") for r in plan.target_rows)
    assert "year old" in out.prompts[0] and not any(c.isdigit() for c in out.prompts[0])
    again = generate(editor, parts, dataset, test, plan, EditSettings(EVERY_STEP, opts, 0))
    assert np.array_equal(again.latents, out.latents)


def test_plan_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        EditPlan(np.zeros(2, dtype=np.int64), ({},), "", np.zeros(1, dtype=np.int64), ())
