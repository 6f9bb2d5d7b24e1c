"""The counterfactual suite at toy size: four editors × {no LD, LD}, every counterfactual metric with a CI,
the AUC protocol, and LD-minus-no-LD effects; a rerun is all cache hits."""

import json
import math
import subprocess
import sys

import pytest

from ldbench.config import load_suite
from ldbench.runner.run import RunOptions, run_suite
from tests.toy import TOY_BASE_MODEL

pytestmark = pytest.mark.slow

TOY = [
    "datasets=[{name: synth-brain, options: {n_subjects: 30, visits: 2, image_size: 32}}]",
    TOY_BASE_MODEL,
    "methods=[{name: finetune, options: {steps: 6, batch_size: 8}}]",
    "editors=[{name: text2img, options: {steps: 3}}, {name: sdedit, options: {steps: 4, strength: 0.5}},"
    " {name: inversion-edit, options: {steps: 4, strength: 0.5}},"
    " {name: instruct, options: {steps: 3, instruct_steps: 4}}]",
    "evaluation.kid_subset_size=6",
    "evaluation.kid_subsets=10",
    "evaluation.bootstrap=20",
    "evaluation.extractors=[domain]",
    "evaluation.axiom_items=3",
    "evaluation.null_edits=2",
    "evaluation.classifier={model: test_resnet, epochs: 1, batch_size: 16}",  # timm's tiny test model
    "evaluation.oracle_members=2",
    "evaluation.utility_members=2",
    "evaluation.latent_probe={checkpoints: 2, samples: 4, steps: 2}",  # the probe's own size is tested in the smoke module
]


@pytest.fixture(scope="module")
def cf_run(tmp_path_factory, toy_cache):
    root = tmp_path_factory.mktemp("cf")
    suite = load_suite("counterfactual", TOY)
    opts = RunOptions(out_dir=root / "out", cache_dir=toy_cache(root / "cache"), quiet=True)
    first = run_suite(suite, opts)
    return suite, opts, first


def _metrics(records, editor):
    return {r["metric"] for r in records if r["editor"] == editor}


def test_every_editor_gets_its_counterfactual_metrics_with_cis(cf_run):
    _, opts, first = cf_run
    records = json.loads((opts.out_dir / "results.json").read_text())["records"]
    assert len(records) == len(first.records)
    auc = {"auc_real", "auc_synthetic", "auc_mixed"}
    realism = {"fd", "kd"}
    axioms = {"composition_l1:1", "composition_l1:2", "reversibility_l1"}
    identity = {"source_ssim", "source_psnr", "source_l1"}
    truth = {"truth_ssim", "truth_psnr", "truth_l1", "toward_truth_l1"}
    for editor in ("sdedit", "inversion-edit"):
        assert realism | identity | truth | axioms | auc | {"cld", "effectiveness_auc:diagnosis",
                                                            "effectiveness_acc:diagnosis"} <= _metrics(records, editor)
    assert realism | identity | truth | axioms | auc | {"effectiveness_mae:age"} <= _metrics(records, "instruct")
    t2i = _metrics(records, "text2img")
    assert realism | auc | {"effectiveness_auc:diagnosis", "effectiveness_mae:age"} <= t2i
    assert not (identity | truth | axioms) & t2i  # no source, no true counterfactual
    for r in records:
        assert math.isfinite(r["value"]), r["metric"]
        assert r["ci95"] is not None and r["ci95"][0] <= r["ci95"][1], r["metric"]
    by_cell = {}
    for r in records:
        by_cell.setdefault((r["editor"], r["drift"]["delta"]), {})[r["metric"]] = r["value"]
    for values in by_cell.values():  # the mean of per-edit differences is the difference of means
        if "toward_truth_l1" in values:
            assert math.isclose(values["toward_truth_l1"], values["source_l1"] - values["truth_l1"], abs_tol=1e-12)
    readings = [r for r in records if r["metric"].startswith("effectiveness_")]
    for r in readings:  # two oracle members (the suite's option), each one's own reading on record
        assert r["details"]["oracle_members"] == 2 and len(r["details"]["member_values"]) == 2, r["metric"]
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1], r["metric"]
        assert len(r["details"]["oracle_held_out_real_test"]["members"]) == 2
    for r in (r for r in records if r["metric"] in auc):  # AUC protocol arms: two classifiers each
        assert r["details"]["classifier_members"] == 2 and len(r["details"]["member_values"]) == 2, r["metric"]
        assert r["ci95"][0] <= r["value"] <= r["ci95"][1], r["metric"]
    instruct_truth = [r for r in records if r["editor"] == "instruct" and r["metric"] == "truth_l1"]
    assert instruct_truth[0]["details"]["truth"] == "split"  # the real follow-up scan
    notes = [n for r in records for n in r["provenance"].get("notes", [])]
    assert any("LPIPS skipped" in n for n in notes)


def test_ld_effects_for_every_editor_and_metric(cf_run):
    _, opts, _ = cf_run
    results = json.loads((opts.out_dir / "results.json").read_text())
    effects = results["ld_effects"]
    # the four editors' cells, and the fine-tune's own latent stability (LD-trained against no-LD-trained)
    assert {e["editor"] for e in effects} == {"text2img", "sdedit", "inversion-edit", "instruct", "fine-tune"}
    by_editor = {}
    for e in effects:
        by_editor.setdefault(e["editor"], set()).add(e["metric"])
        assert 0.0 <= e["p_value"] <= 1.0
        assert e["ci95"][0] <= e["ci95"][1]
        assert math.isclose(e["difference"], e["ld_value"] - e["no_ld_value"], rel_tol=1e-9, abs_tol=1e-12)
    # every metric of an LD cell is tested against no LD, unless both cells hold identical evidence
    records = results["records"]
    for editor in ("sdedit", "instruct"):
        values = {}
        for r in records:
            if r["editor"] == editor:
                values.setdefault(r["metric"], {})[r["drift"]["delta"]] = r["value"]
        for metric, by_delta in values.items():
            assert metric in by_editor[editor] or by_delta[0.0] == by_delta[0.1], (editor, metric)
    assert {"fd", "kd"} <= by_editor["sdedit"] and by_editor["fine-tune"] == {"latent_instability"}
    tests = {e["test"] for e in effects}
    assert "paired bootstrap" in tests and "DeLong (paired)" in tests
    table = (opts.out_dir / "tables" / "ld_effect.md").read_text()
    assert "LD − no LD" in table and "sdedit" in table


def test_group_tables_and_report(cf_run):
    _, opts, _ = cf_run
    tables = opts.out_dir / "tables"
    for name in ("main", "counterfactual", "effectiveness", "utility"):
        assert (tables / f"{name}.md").exists(), name
    assert "SSIM vs truth" in (tables / "counterfactual.md").read_text()
    assert "AUC 50/50" in (tables / "utility.md").read_text()
    html = (opts.out_dir / "report.html").read_text()
    assert 'id="effects-table"' in html and "LPIPS skipped" in html


def test_rerun_is_all_cache_hits(cf_run):
    suite, opts, first = cf_run
    second = run_suite(suite, opts)
    assert all(e["cached"] for e in second.store_events)
    assert [(r["metric"], r["value"]) for r in first.records] == [(r["metric"], r["value"]) for r in second.records]


def test_a_cached_rerun_in_a_new_process_imports_only_what_reading_needs(cf_run, tmp_path):
    """A rerun whose every stage is cached, started as a user starts it, gives the same numbers without importing
    what only building needs: timm and torchvision (checked before a run's first build), scikit-learn,
    matplotlib (its figures are kept too), diffusers: about 9 s of imports on 2 cores."""
    _, opts, first = cf_run
    args = ["run", "--suite", "counterfactual", "--cache-dir", str(opts.cache_dir), "--out", str(tmp_path / "out"),
            "--quiet", *[a for o in TOY for a in ("--set", o)]]
    heavy = ("timm", "torchvision", "torch_fidelity", "sklearn", "matplotlib", "diffusers")
    code = (f"import sys; from ldbench.cli import main; code = main(sys.argv[1:]); "
            f"print(code, [m for m in {heavy!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip().splitlines()[-1] == "0 []", (r.stdout, r.stderr)
    again = json.loads((tmp_path / "out" / "results.json").read_text())["records"]
    assert [(x["metric"], x["value"]) for x in again] == [(x["metric"], x["value"]) for x in first.records]
