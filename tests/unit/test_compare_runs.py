"""benchmarks/compare_runs.py: exact comparison of two runs, and of a run that measures more."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

from ldbench.paths import REPO_ROOT


def _module():
    spec = importlib.util.spec_from_file_location("compare_runs", REPO_ROOT / "benchmarks" / "compare_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(metric: str, value: float) -> dict:
    return {"dataset": "d", "method": "finetune", "drift": {"delta": 0.1, "train": "noise", "sample": "init"},
            "seed": 0, "editor": "sdedit", "extractor": "domain", "metric": metric, "value": value,
            "ci95": [value - 1, value + 1], "n": 10}


def _effect(metric: str, p_adjusted: float, family: int) -> dict:
    return {"dataset": "d", "method": "finetune", "editor": "sdedit", "seed": 0, "metric": metric,
            "extractor": "domain", "drift": {"delta": 0.1}, "difference": 0.5, "ci95": [0.1, 0.9], "p_value": 0.01,
            "p_adjusted": p_adjusted, "family_size": family, "significant": p_adjusted < 0.05, "test": "paired bootstrap"}


@pytest.fixture
def runs(tmp_path):
    a = {"records": [_record("fd", 3.0), _record("kd", 0.1)], "ld_effects": [_effect("fd", 0.02, 1)]}
    b = copy.deepcopy(a)
    b["records"].append(_record("latent_instability", 0.2))
    b["ld_effects"] = [_effect("fd", 0.04, 2), _effect("latent_instability", 0.04, 2)]
    paths = {}
    for name, run in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(run))
        paths[name] = str(tmp_path / name)
    return a, b, paths, tmp_path


def test_identical_runs_pass_and_a_changed_value_fails(runs, capsys):
    cmp = _module()
    a, _, paths, tmp_path = runs
    assert cmp.main([paths["a"], paths["a"]]) == 0
    changed = copy.deepcopy(a)
    changed["records"][1]["value"] = 0.1000000001
    (tmp_path / "c.json").write_text(json.dumps(changed))
    assert cmp.main([paths["a"], str(tmp_path / "c.json")]) == 1
    assert "value 0.1 != 0.1000000001" in capsys.readouterr().out


def test_new_records_fail_unless_allowed_and_then_the_common_ones_must_match(runs, capsys):
    cmp = _module()
    a, b, paths, tmp_path = runs
    assert cmp.main([paths["a"], paths["b"]]) == 1  # exact: B has a record A lacks
    assert cmp.main([paths["a"], paths["b"], "--new-records-ok"]) == 0  # Holm's family grew: p_adjusted not compared
    assert "B adds 2 records / LD effects" in capsys.readouterr().out
    assert cmp.main([paths["b"], paths["a"], "--new-records-ok"]) == 1  # A may never lose one
    b["ld_effects"][0]["p_value"] = 0.02
    (tmp_path / "b2.json").write_text(json.dumps(b))
    assert cmp.main([paths["a"], str(tmp_path / "b2.json"), "--new-records-ok"]) == 1


def test_unreadable_run_is_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        _module().main([str(tmp_path / "nope"), str(tmp_path / "nope")])
    assert info.value.code == 2 and "not a readable results.json" in capsys.readouterr().err
