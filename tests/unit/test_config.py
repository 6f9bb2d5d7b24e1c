"""Suite loading: expansion into cells, include:, --set overrides, and every bad input as a UserError."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ldbench.config import Component, Evaluation, apply_override, available_suites, load_suite
from ldbench.errors import UserError

MINIMAL = """\
version: 1
datasets: [synth-brain]
methods: [finetune]
drifts:
  - {delta: 0.1, train: noise, sample: init}
editors: [sdedit]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_suite(*args, **kwargs)
    return str(info.value)


# --- valid suites ----------------------------------------------------------------------------------


def test_smoke_suite_expands_to_four_cells():
    suite = load_suite("smoke")
    assert suite.name == "smoke"
    assert [c.name for c in suite.datasets] == ["synth-brain"]
    assert [c.name for c in suite.methods] == ["finetune"]
    assert suite.methods[0].options == {"steps": 500, "batch_size": 16, "lr": 0.0005}
    assert [d.delta for d in suite.drifts] == [0.0, 0.1]
    assert suite.seeds == (0,)
    assert [c.name for c in suite.editors] == ["sdedit", "text2img"]
    assert suite.evaluation.bootstrap == 200
    assert suite.evaluation.effectiveness  # the oracle's AUC for the intended attribute of every edit
    cells = suite.cells()
    assert len(cells) == 1 * 1 * 2 * 1 * 2 == 4
    assert len(set(cells)) == 4  # cells are hashable and distinct
    assert {(c.drift.delta, c.editor.name) for c in cells} == {
        (0.0, "sdedit"), (0.0, "text2img"), (0.1, "sdedit"), (0.1, "text2img")}
    assert "smoke" in available_suites()


def test_suite_by_path_equals_suite_by_name():
    from ldbench.paths import SUITES_DIR

    by_path = load_suite(str(SUITES_DIR / "smoke.yaml"))
    assert by_path == load_suite("smoke")
    assert by_path.to_dict() == load_suite("smoke").to_dict()


def test_suite_path_in_tmp_dir(tmp_path):
    path = write(tmp_path, "mine.yaml", MINIMAL)
    suite = load_suite(str(path))
    assert suite.name == "mine"
    assert len(suite.cells()) == 1
    assert suite.seeds == (0,)  # default
    assert suite.base_model == Component("embedded")
    assert suite.evaluation == Evaluation()


def test_include_merges_included_first_then_including_overrides(tmp_path):
    write(tmp_path, "base.yaml", """\
        description: base
        datasets: [synth-brain]
        methods: [finetune]
        drifts:
          - {delta: 0.0, train: none, sample: none}
        editors: [sdedit, text2img]
        seeds: [0, 1, 2]
        evaluation: {extractor: domain, bootstrap: 50, kid_subsets: 7}
        """)
    sub = tmp_path / "sub"
    sub.mkdir()
    path = write(sub, "child.yaml", """\
        include: [../base.yaml]
        description: child
        seeds: [5]
        evaluation: {bootstrap: 10}
        """)
    suite = load_suite(str(path))
    assert suite.name == "child"
    assert suite.description == "child"  # including file overrides
    assert suite.seeds == (5,)
    assert [c.name for c in suite.editors] == ["sdedit", "text2img"]  # from the included file
    assert suite.evaluation.bootstrap == 10
    assert suite.evaluation.kid_subsets == 7  # nested mappings merge key by key
    assert len(suite.cells()) == 2


def test_include_accepts_a_single_file_name(tmp_path):
    write(tmp_path, "base.yaml", MINIMAL)
    path = write(tmp_path, "child.yaml", "include: base.yaml\nseeds: [3, 4]\n")
    assert load_suite(str(path)).seeds == (3, 4)


def test_include_cycle_is_a_user_error(tmp_path):
    write(tmp_path, "a.yaml", "include: [b.yaml]\n" + MINIMAL)
    write(tmp_path, "b.yaml", "include: [a.yaml]\n")
    assert "include cycle" in error_of(str(tmp_path / "a.yaml"))


def test_self_include_is_a_user_error(tmp_path):
    path = write(tmp_path, "a.yaml", "include: [a.yaml]\n" + MINIMAL)
    assert "include cycle" in error_of(str(path))


def test_missing_include_is_a_user_error(tmp_path):
    path = write(tmp_path, "a.yaml", "include: [nowhere.yaml]\n" + MINIMAL)
    assert "nowhere.yaml" in error_of(str(path))


def test_set_overrides():
    suite = load_suite("smoke", ["evaluation.bootstrap=10", "seeds=[0,1]"])
    assert suite.evaluation.bootstrap == 10
    assert suite.seeds == (0, 1)
    assert len(suite.cells()) == 8
    assert load_suite("smoke").evaluation.bootstrap == 200  # the file is untouched


def test_set_override_of_a_list_of_drifts():
    suite = load_suite("smoke", ["drifts=[{delta: -0.2, train: latent, sample: every-step}]"])
    assert len(suite.drifts) == 1
    assert suite.drifts[0].delta == -0.2 and suite.drifts[0].sample == "every-step"


def test_apply_override_creates_nested_keys():
    data: dict = {}
    apply_override(data, "evaluation.extractor_options.size=3")
    apply_override(data, "description= hello world")
    assert data == {"evaluation": {"extractor_options": {"size": 3}}, "description": "hello world"}


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("assignment", ["evaluation.bootstrap", "seeds"])
def test_set_without_equals(assignment):
    assert assignment in error_of("smoke", [assignment])


def test_set_into_a_non_mapping():
    assert "seeds" in error_of("smoke", ["seeds.first=1"])


def test_set_invalid_yaml_value():
    assert "not valid YAML" in error_of("smoke", ["seeds=[0,1"])


def test_set_unknown_key():
    assert "evaluation: unknown key(s) bootstrapp" in error_of("smoke", ["evaluation.bootstrapp=10"])


def test_set_wrong_type_in_evaluation():
    msg = error_of("smoke", ["evaluation.bootstrap=many"])
    assert "evaluation.bootstrap" in msg and "many" in msg


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL + "datsets: [synth-brain]\n")
    msg = error_of(str(path))
    assert "unknown key(s) datsets" in msg
    assert "datasets" in msg  # the valid keys are listed


def test_unknown_evaluation_key(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL + "evaluation: {bootstrapp: 10}\n")
    msg = error_of(str(path))
    assert "evaluation" in msg and "bootstrapp" in msg and "bootstrap" in msg


def test_evaluation_not_a_mapping(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL + "evaluation: 5\n")
    assert "'evaluation' must be a mapping" in error_of(str(path))


def test_unknown_drift_key(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL.replace("sample: init", "sample: init, dleta: 1"))
    assert "dleta" in error_of(str(path))


@pytest.mark.parametrize("drift, word", [
    ("{delta: 0.1, train: nosie, sample: init}", "nosie"),
    ("{delta: 0.1, train: noise, sample: start}", "start"),
    ("{delta: big, train: noise, sample: init}", "big"),
    ("{delta: [0.1, x], train: noise, sample: init}", "x"),
    ("0.1", "drifts[0]"),
])
def test_bad_drift_values(tmp_path, drift, word):
    text = MINIMAL.replace("{delta: 0.1, train: noise, sample: init}", drift)
    assert word in error_of(str(write(tmp_path, "s.yaml", text)))


@pytest.mark.parametrize("key, bad, axis, valid", [
    ("datasets", "synth-brian", "dataset", "synth-brain"),
    ("methods", "lora-typo", "method", "finetune"),
    ("editors", "sdedti", "editor", "sdedit, text2img"),
])
def test_unknown_component_names_list_valid_ones(tmp_path, key, bad, axis, valid):
    text = MINIMAL.replace({"datasets": "[synth-brain]", "methods": "[finetune]", "editors": "[sdedit]"}[key],
                           f"[{bad}]")
    msg = error_of(str(write(tmp_path, "s.yaml", text)))
    assert f"unknown {axis} {bad!r}" in msg
    assert valid in msg


def test_component_with_unknown_field(tmp_path):
    text = MINIMAL.replace("methods: [finetune]", "methods:\n  - {name: finetune, opts: {steps: 1}}")
    msg = error_of(str(write(tmp_path, "s.yaml", text)))
    assert "methods[0]" in msg and "opts" in msg


@pytest.mark.parametrize("key", ["datasets", "methods", "drifts", "editors"])
def test_empty_lists(tmp_path, key):
    lines = [ln for ln in MINIMAL.splitlines() if not ln.startswith((key, "  -"))] if key == "drifts" else \
        [ln for ln in MINIMAL.splitlines() if not ln.startswith(key)]
    path = write(tmp_path, "s.yaml", "\n".join(lines) + f"\n{key}: []\n")
    assert f"'{key}' is empty" in error_of(str(path))


def test_empty_methods_via_set():
    assert "'methods' is empty" in error_of("smoke", ["methods=[]"])


def test_list_key_not_a_list(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL.replace("methods: [finetune]", "methods: {finetune: 1}"))
    assert "'methods' must be a list" in error_of(str(path))


def test_bad_seeds(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL + "seeds: [0, one]\n")
    assert "seeds" in error_of(str(path))


def test_unsupported_version(tmp_path):
    path = write(tmp_path, "s.yaml", MINIMAL.replace("version: 1", "version: 7"))
    assert "version 7" in error_of(str(path))
    path = write(tmp_path, "t.yaml", MINIMAL.replace("version: 1", "version: one"))
    assert "'one'" in error_of(str(path))


def test_malformed_yaml(tmp_path):
    path = write(tmp_path, "s.yaml", "datasets: [synth-brain\nmethods: [finetune]\n")
    msg = error_of(str(path))
    assert "s.yaml" in msg and "cannot read suite YAML" in msg
    assert "\n" not in msg


def test_yaml_not_a_mapping(tmp_path):
    path = write(tmp_path, "s.yaml", "- a\n- b\n")
    assert "mapping" in error_of(str(path))


def test_empty_file(tmp_path):
    path = write(tmp_path, "s.yaml", "")
    assert "is empty" in error_of(str(path))


def test_missing_suite_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = error_of(str(missing))
    assert str(missing) in msg and "does not exist" in msg


def test_unknown_suite_name_lists_valid_suites():
    msg = error_of("smok")
    assert "unknown suite 'smok'" in msg
    assert "smoke" in msg
    assert "Did you mean 'smoke'" in msg


def test_paper_suite_names_every_missing_path_and_expands_them(monkeypatch, tmp_path):
    from ldbench.config import load_suite
    from ldbench.errors import UserError

    names = ["LDBENCH_SD14", "LDBENCH_ADNI_ROOT", "LDBENCH_OASIS3_ROOT", "LDBENCH_CHEXPERT_ROOT"]
    for n in names:
        monkeypatch.delenv(n, raising=False)
    with pytest.raises(UserError) as err:
        load_suite("paper")
    for n in names:
        assert f"${n}" in str(err.value)
    assert "Stable Diffusion v1.4" in str(err.value)
    for n in names:
        monkeypatch.setenv(n, str(tmp_path / n.lower()))
    suite = load_suite("paper")
    assert suite.base_model.options["path"] == str(tmp_path / "ldbench_sd14")
    assert suite.datasets[0].options["root"] == str(tmp_path / "ldbench_adni_root")
    assert suite.evaluation.extractors == ["inception"]
    assert {m.name for m in suite.methods} == {"textual-inversion", "dreambooth", "custom-diffusion", "finetune"}
    assert len(load_suite("paper", expand_env=False).cells()) == len(suite.cells())


@pytest.mark.parametrize("override, words", [
    ("methods=[{name: lora, options: {lora_rnak: 4}}]", ("methods[0] (lora)", "lora_rnak", "lora_rank", "steps")),
    # a key only another method has is refused too: options belong to one component
    ("methods=[{name: lora, options: {placeholder_token: x}}]", ("methods[0] (lora)", "placeholder_token")),
    ("editors=[{name: text2img, options: {strength: 0.5}}]", ("editors[0] (text2img)", "strength", "guidance_scale")),
    ("editors=[{name: sdedit, options: {age_format: words}}]", ("editors[0] (sdedit)", "age_format", "strength")),
])
def test_component_options_are_checked_at_load_per_component(override, words):
    import time

    load_suite("smoke")  # imports done: what is timed below is the checking alone
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_suite("smoke", [override])
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert all(w in message for w in words), message


def test_every_shipped_suite_has_valid_component_options():
    for name in available_suites():
        load_suite(name, expand_env=False)
