"""Every fine-tuning method and the paper's editors, through the runner, on sd14-random: Stable Diffusion
v1.4's block structure, its real CLIP tokenizer (77 positions) and autoencoder factor 8, narrowed
(width_divisor 8, 2 text layers) so that the whole suite runs in seconds on CPU. Its weights are random:
the test checks that the code runs on SD v1.4's anatomy and that every output says so, not any number."""

import json
import math

import pytest

from ldbench.config import load_suite
from ldbench.models.sd14 import LABEL
from ldbench.runner.run import RunOptions, run_suite

pytestmark = pytest.mark.slow

METHODS = ("finetune", "textual-inversion", "dreambooth", "custom-diffusion", "lora")
METHOD_OPTIONS = "{steps: 2, batch_size: 4}"
DREAMBOOTH_OPTIONS = "{steps: 2, batch_size: 4, num_class_images: 2, class_sample_steps: 2}"  # its own options
COMMON = [
    "datasets=[{name: synth-brain, options: {n_subjects: 20, visits: 2, image_size: 32}}]",
    "base_model={name: sd14-random, options: {width_divisor: 8, text_layers: 2, image_size: 64}}",
    "drifts=[{delta: 0.1, train: noise, sample: every-step}]",
    "evaluation.kid_subset_size=4", "evaluation.kid_subsets=5", "evaluation.bootstrap=5",
    "evaluation.extractors=[domain]", "evaluation.diversity=false", "evaluation.effectiveness=false",
    "evaluation.latent_probe={checkpoints: 2, samples: 2, steps: 2}",
]
# every method with the inversion editor; the instruct editor (which trains its own UNet) on one method
EVERY_METHOD = COMMON + [
    "methods=[" + ", ".join(f"{{name: {m}, options: {DREAMBOOTH_OPTIONS if m == 'dreambooth' else METHOD_OPTIONS}}}"
                            for m in METHODS) + "]",
    "editors=[{name: inversion-edit, options: {steps: 2, strength: 0.5}}]",
]
INSTRUCT = COMMON + [
    f"methods=[{{name: finetune, options: {METHOD_OPTIONS}}}]",
    "editors=[{name: instruct, options: {steps: 2, instruct_steps: 2}}]",
]


@pytest.fixture(scope="module")
def sd14_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd14")
    results = []
    for name, overrides in (("methods", EVERY_METHOD), ("instruct", INSTRUCT)):
        opts = RunOptions(out_dir=root / name, cache_dir=root / "cache", quiet=True)  # one cache: one base model
        results.append((opts, run_suite(load_suite("smoke", overrides), opts)))
    return results


def test_every_method_and_editor_runs_on_sd14_random(sd14_run):
    cells = [r for _, result in sd14_run for r in result.records
             if r["editor"] not in ("held-out", "reconstruction", "fine-tune")]  # the cells' own records
    expected = {(m, "inversion-edit") for m in METHODS} | {("finetune", "instruct")}
    assert {(r["method"], r["editor"]) for r in cells} == expected
    for r in cells:
        if r["metric"] in ("fd", "kd"):
            assert math.isfinite(r["value"])
    instruct_run = sd14_run[1][1]
    assert [e["cached"] for e in instruct_run.store_events if e["stage"] == "base-model"] == [True]


def test_records_table_and_report_say_random_weights(sd14_run):
    opts, result = sd14_run[0]
    for r in result.records:
        if r["method"] == "real":
            continue  # the real held-out floor uses no model
        prov = r["provenance"]
        assert prov["base_model_source"] == LABEL and prov["base_model_random_weights"] is True
        assert any("never report them as results" in n for n in prov["notes"])
    table = (opts.out_dir / "tables" / "main.md").read_text()
    assert "**Random weights:**" in table and "not results" in table
    html = (opts.out_dir / "report.html").read_text()
    assert "Random weights:" in html and "not a result" in html
    results = json.loads((opts.out_dir / "results.json").read_text())
    assert results["records"][0]["provenance"]["resolved_config"]["base_model"]["name"] == "sd14-random"
