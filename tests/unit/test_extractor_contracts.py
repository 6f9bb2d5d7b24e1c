"""One contract for every registered component, parametrized from the registries themselves: an extractor
(or executor) added to its registry is tested here without touching this file, and one registered without a
way to build it offline fails `test_every_registered_extractor_has_a_recipe`.

Extractor contract: describe() has the standard fields and agrees with the attributes; the family has
distance names in the metric registry; features() of a few small images have the declared dim, are float64
and finite, equal on a second call, do not depend on the batch size beyond float32 rounding; images outside
[0, 1] are refused; building the extractor again gives the same fingerprint and description.
Executor contract: options introspectable from the constructor (suite checks read them before any work),
`in_process` declared, and `map` taking the jobs and the progress callbacks.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ldbench.errors import UserError
from ldbench.metrics.extractors import EXTRACTORS, create_extractor, write_random_inception_weights
from ldbench.metrics.metric_registry import METRICS, metric_names
from ldbench.runner.executors import EXECUTORS

STANDARD_FIELDS = ("name", "family", "fingerprint", "resize_policy", "channel_policy", "dim", "dtype")


_INCEPTION_WEIGHTS: list[Path] = []  # written once, shared by inception and inception-clean


def _random_inception(tmp: Path) -> dict:
    # seeded random weights: the contract is about shapes, dtypes and determinism, not about the features
    if not _INCEPTION_WEIGHTS:
        _INCEPTION_WEIGHTS.append(write_random_inception_weights(tmp / "random-inception.pth"))
    return {"weights_path": _INCEPTION_WEIGHTS[0], "allow_unverified": True}


def _tiny_transformers(kind: str):
    def options(tmp: Path) -> dict:
        pytest.importorskip("transformers")
        torch.manual_seed(0)
        if kind == "dinov2":
            from transformers import Dinov2Config, Dinov2Model

            model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, patch_size=14, image_size=224))
        else:
            from transformers import CLIPVisionConfig, CLIPVisionModel

            model = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                     num_attention_heads=2, image_size=32, patch_size=8))
        model.save_pretrained(tmp / kind)
        return {"weights_path": tmp / kind}

    return options


def _radiomics(tmp: Path) -> dict:
    pytest.importorskip("radiomics", reason="radiomics extractor not installed: pip install 'ldbench[radiomics]'")
    pytest.importorskip("frd_score", reason="frd-score not installed: pip install 'ldbench[radiomics]'")
    return {}


# How to build each registered extractor offline, in seconds.
RECIPES = {
    "inception": _random_inception,
    "inception-clean": _random_inception,
    "domain": lambda tmp: {},
    "radiomics": _radiomics,
    "dinov2": _tiny_transformers("dinov2"),
    "clip": _tiny_transformers("clip"),
}


def test_every_registered_extractor_has_a_recipe():
    assert sorted(RECIPES) == EXTRACTORS.names()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (options, extractor), each built once for the module."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            options = RECIPES[name](tmp_path_factory.mktemp(name))
            cache[name] = (options, create_extractor(name, **options))
        return cache[name]

    return get


def _images(n: int = 2, size: int = 40, seed: int = 0) -> np.ndarray:  # Inception runs each at 299 px
    return np.random.default_rng(seed).random((n, size, size))


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_describe_has_the_standard_fields(name, built):
    _, ex = built(name)
    desc = ex.describe()
    assert set(STANDARD_FIELDS) <= set(desc)
    assert {k: desc[k] for k in STANDARD_FIELDS[:-1]} == {k: getattr(ex, k) for k in STANDARD_FIELDS[:-1]}
    assert desc["name"].startswith(name)  # "inception" may be "inception-unverified" with other weights
    assert re.fullmatch(r"[0-9a-f]{64}", desc["fingerprint"])
    assert desc["dtype"] in ("float32", "float64") and int(desc["dim"]) > 0
    assert isinstance(ex.resize_policy, str) and ex.resize_policy and ex.channel_policy


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_the_family_has_registered_distance_names(name, built):
    _, ex = built(name)
    for metric in metric_names(ex.family):
        assert metric in METRICS and METRICS[metric].group == "realism"


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_features_have_the_declared_dim_and_dtype_and_are_deterministic(name, built):
    _, ex = built(name)
    x = _images()
    first = ex.features(x, batch_size=len(x))
    assert first.shape == (len(x), ex.dim) and first.dtype == np.float64
    assert np.all(np.isfinite(first))
    assert np.array_equal(first, ex.features(x, batch_size=len(x)))
    np.testing.assert_allclose(ex.features(x, batch_size=1), first, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_images_outside_the_unit_range_are_refused(name, built):
    _, ex = built(name)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        ex.features(_images() * 255.0)
    with pytest.raises(UserError, match="grayscale"):
        ex.features(_images()[0])


@pytest.mark.parametrize("name", EXTRACTORS.names())
def test_fingerprint_and_description_are_stable_across_builds(name, built):
    options, ex = built(name)
    again = create_extractor(name, **options)
    assert again.fingerprint == ex.fingerprint
    assert again.describe() == ex.describe()


# --- executors (ldbench.runner.executors' registry) -------------------------------------------------------


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_executor_options_are_introspectable_and_map_is_there(name):
    cls = EXECUTORS.get(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params and params[0].name == "out_dir"
    # every option has a default, so a suite that names only the executor is valid
    assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD for p in params[1:])
    assert isinstance(cls.in_process, bool)
    map_params = inspect.signature(cls.map).parameters
    assert {"fn", "jobs", "on_start", "on_done"} <= set(map_params)


def test_the_local_executor_runs_jobs_in_order(tmp_path):
    ex = EXECUTORS.get("local")(out_dir=tmp_path)
    started, done = [], []
    out = ex.map(lambda a, b: a * b, [(1, 2), (3, 4)], on_start=started.append,
                 on_done=lambda i, r: done.append((i, r)))
    assert out == [2, 12] and started == [0, 1] and done == [(0, 2), (1, 12)]
