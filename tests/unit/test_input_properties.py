"""Property: whatever suite or --set value the loader is fed, it answers with a one-line UserError or a
suite that validates; never another exception, never a hang, never a stage started."""

from __future__ import annotations

import math
import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ldbench.config import load_suite, parse_suite
from ldbench.errors import UserError

SECONDS = 2.0  # per example: loading validates, it never computes

scalars = (st.none() | st.booleans() | st.integers(-(2**40), 2**40)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
           | st.sampled_from(["finetune", "lora", "sdedit", "text2img", "instruct", "synth-brain", "domain",
                              "noise", "init", "every-step", "none", "test", "embedded"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.sampled_from(["name", "options", "delta", "steps",
                                                                                 "lr", "batch_size", "train"]),
                                        inner, max_size=3), max_leaves=12)
KEYS = ["seeds", "drifts", "methods", "editors", "datasets", "base_model", "description", "version", "evaluation",
        "evaluation.bootstrap", "evaluation.kid_subset_size", "evaluation.kid_subsets", "evaluation.batch_size",
        "evaluation.reference_split", "evaluation.extractors", "evaluation.classifier", "evaluation.axiom_items",
        "evaluation.oracle_members",
        "methods", "drifts", "bogus", "evaluation.extractor_options"]


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    from ldbench.runner import realism_stages, stages

    def forbidden(*args, **kwargs):
        raise AssertionError("work started while loading a suite")

    for name in ("dataset_stage", "base_model_stage", "build_finetune", "build_generate"):
        monkeypatch.setattr(stages, name, forbidden)
    monkeypatch.setattr(realism_stages, "reference_stats_stage", forbidden)
    load_suite("smoke")  # its imports (timm's, about 4 s) done: what each example times is the loading alone


def loads_or_refuses(load) -> None:
    start = time.perf_counter()
    try:
        suite = load()
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message, message
    else:
        assert suite.methods and suite.editors and suite.datasets and suite.drifts
        assert all(0 <= s <= 2**32 - 1 for s in suite.seeds)
        for d in suite.drifts:
            assert all(math.isfinite(x) for x in (d.delta if isinstance(d.delta, tuple) else (d.delta,)))
    assert time.perf_counter() - start < SECONDS


SLOW_OK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


@SLOW_OK
@given(key=st.sampled_from(KEYS) | st.text(max_size=12), value=values)
def test_set_values(key, value):
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    loads_or_refuses(lambda: load_suite("smoke", ["evaluation.extractors=[domain]", f"{key}={text}"]))


@SLOW_OK
@given(key=st.sampled_from(KEYS), text=st.text(max_size=40))
def test_set_raw_text(key, text):
    loads_or_refuses(lambda: load_suite("smoke", ["evaluation.extractors=[domain]", f"{key}={text}"]))


@SLOW_OK
@given(data=st.dictionaries(st.sampled_from(["datasets", "methods", "drifts", "editors", "seeds", "evaluation",
                                             "base_model", "version", "description"]) | st.text(max_size=5),
                            values, max_size=6))
def test_whole_suites(data):
    base = {"datasets": ["synth-brain"], "methods": ["finetune"], "drifts": [{"delta": 0.1}], "editors": ["sdedit"],
            "evaluation": {"extractors": ["domain"]}}
    loads_or_refuses(lambda: parse_suite({**base, **data}, "generated", "generated.yaml"))


@SLOW_OK
@given(text=st.text(max_size=200))
def test_suite_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("suite") / "s.yaml"
    path.write_text(text)
    loads_or_refuses(lambda: load_suite(str(path)))
