"""One contract for every registered component, read from the registries (a new method, editor, sampler
or base model is checked by adding it, with no test to write): it describes itself, its options build from
nothing and refuse an unknown key naming it, the component and its valid keys; methods train on the tiny
model and load their tensors back; editors plan and edit a tiny batch; samplers sample."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from ldbench.drift import NO_DRIFT, Drift
from ldbench.errors import UserError
from ldbench.generate import EDITORS, EditRequest, EditSettings, SamplingOptions, run_edits
from ldbench.methods import METHODS, TrainingOptions
from ldbench.models import Components
from ldbench.models.base_models import BASE_MODELS
from ldbench.models.samplers import SAMPLERS, make_sampler
from ldbench.models.sampling import text_to_latents
from ldbench.models.text import prompt_for, tokenize
from ldbench.models.training import TrainData

AXES = {"method": (METHODS, TrainingOptions), "editor": (EDITORS, SamplingOptions)}
COMPONENTS = [(axis, name) for axis, (registry, _) in AXES.items() for name in registry.names()]
# The smallest settings, given to every component that has the option (1-2 steps, tiny batches).
TINY = {"steps": 1, "batch_size": 2, "lr": 1e-2, "num_class_images": 1, "class_sample_steps": 1, "lora_rank": 2,
        "instruct_steps": 1}
CAPTIONS = ("brain mri, 70 year old, cognitively normal", "brain mri, 72 year old, alzheimer's disease")
MINIMAL_BASE_OPTIONS = {"diffusers": {"path": "some/model"}}  # options a base model cannot do without


def _tiny_options(registry, name: str, **extra):
    fields = {f.name for f in dataclasses.fields(registry.get(name).options_class)}
    return registry.options(name, {k: v for k, v in {**TINY, **extra}.items() if k in fields})


@pytest.fixture(scope="module")
def brain():
    from ldbench.data import create_dataset

    dataset = create_dataset("synth-brain", n_subjects=4, visits=2, image_size=64)
    return dataset, dataset.prepare().table


@pytest.mark.parametrize("axis, name", COMPONENTS)
def test_describes_itself(axis, name):
    component = AXES[axis][0].get(name)
    assert component.name == name and component.description.strip() and "\n" not in component.description


@pytest.mark.parametrize("axis, name", COMPONENTS)
def test_options_build_from_nothing_and_are_frozen(axis, name):
    registry, base = AXES[axis]
    options = registry.options(name, {})
    assert isinstance(options, base) and type(options) is registry.get(name).options_class
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.steps = 2


@pytest.mark.parametrize("axis, name", COMPONENTS)
def test_unknown_option_names_the_key_the_component_and_the_valid_keys(axis, name):
    registry = AXES[axis][0]
    with pytest.raises(UserError) as err:
        registry.options(name, {"bogus_key": 1})
    message = str(err.value)
    valid = [f.name for f in dataclasses.fields(registry.get(name).options_class)]
    assert "bogus_key" in message and f"{axis} {name}" in message and all(k in message for k in valid)


@pytest.mark.parametrize("axis, name", COMPONENTS)
def test_another_components_option_is_refused(axis, name):
    """Options are per component: a key only a sibling has (e.g. lora_rank for dreambooth) is unknown here."""
    registry = AXES[axis][0]
    own = {f.name for f in dataclasses.fields(registry.get(name).options_class)}
    others = {f.name for _, c in registry for f in dataclasses.fields(c.options_class)} - own
    for key in sorted(others):
        with pytest.raises(UserError, match=key):
            registry.options(name, {key: None})


@pytest.mark.parametrize("name", METHODS.names())
def test_method_trains_and_its_tensors_load_back(tiny_parts, name):
    method = METHODS.get(name)
    assert method.trains.strip()
    g = torch.Generator().manual_seed(1)
    data = TrainData(torch.randn(2, 4, 16, 16, generator=g), torch.full((2, 4, 16, 16), 0.1), CAPTIONS)
    parts = copy.deepcopy(tiny_parts)
    trained, losses = method.train(parts, data, Drift(0.1, train="noise", sample="none"),
                                   _tiny_options(METHODS, name), seed=0, quiet=True)
    assert len(losses) == 1 and np.isfinite(losses).all() and trained
    fresh = copy.deepcopy(tiny_parts)
    method.apply(fresh, trained)
    assert prompt_for(fresh, CAPTIONS[0]) == prompt_for(parts, CAPTIONS[0])
    torch.testing.assert_close(_unet_out(fresh), _unet_out(parts), rtol=0, atol=1e-6)


@torch.no_grad()
def _unet_out(parts: Components) -> torch.Tensor:
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    emb = parts.text_encoder(tokenize(parts.tokenizer, [prompt_for(parts, CAPTIONS[1])]))[0]
    return parts.unet(x, torch.tensor([500]), encoder_hidden_states=emb).sample


@pytest.mark.parametrize("name", EDITORS.names())
def test_editor_plans_and_edits_a_tiny_batch(tiny_parts, brain, name):
    dataset, table = brain
    editor = EDITORS.get(name)
    options = _tiny_options(EDITORS, name)
    parts = dataclasses.replace(tiny_parts)  # an editor's own model goes in its own slot; the modules are shared
    if hasattr(editor, "train"):
        parts = copy.deepcopy(tiny_parts)
        tensors, losses = editor.train(parts, dataset, table.split("train"), Drift(0.1, train="noise"), options,
                                       seed=0, quiet=True)
        assert len(losses) == options.instruct_steps and np.isfinite(losses).all()
        editor.apply(parts, tensors)
    test = table.split("test")
    plan = editor.plan(dataset, test, True)
    assert len(plan) > 0 and plan.truth_table in ("counterfactuals", "split", "")
    n = min(2, len(plan))
    index = plan.source_index[:n]
    rows = [test.row(int(i)) if i >= 0 else {} for i in index]
    request = EditRequest(test.images[index] if editor.needs_source else None, rows, list(plan.target_rows[:n]),
                          image_size=64)
    images, latents, prompts = run_edits(editor, parts, dataset, request,
                                         EditSettings(Drift(0.1, sample="every-step"), options, 0), quiet=True)
    assert images.shape == (n, 64, 64) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    assert latents.shape == (n, 4, 16, 16) and np.isfinite(latents).all() and len(prompts) == n


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_keeps_the_base_schedule_and_samples(tiny_parts, name):
    assert SAMPLERS.get(name).description.strip()
    SamplingOptions(sampler=name)  # every registered sampler is a valid editor option
    base = tiny_parts.scheduler
    sampler = make_sampler(name, base)
    assert sampler is not base and torch.equal(sampler.betas, base.betas)
    z = text_to_latents(tiny_parts, sampler, ["x", "y"], NO_DRIFT, 2, 1.0, torch.Generator().manual_seed(0))
    assert z.shape == (2, 4, 16, 16) and torch.isfinite(z).all()


@pytest.mark.parametrize("name", BASE_MODELS.names())
def test_base_model_checks_its_options(name):
    model = BASE_MODELS.get(name)
    assert model.description.strip() and callable(model.artifact)
    options = MINIMAL_BASE_OPTIONS.get(name, {})
    model.check(options)
    with pytest.raises(UserError, match="bogus_key"):
        model.check({**options, "bogus_key": 1})
