"""The HTML report on synthetic inputs shaped like ldbench.runner.run.write_outputs builds them: summary,
δ-sweep and ROC sections present, figures valid PNGs, every text value escaped. `report_inputs()` is also
what the Chromium test (tests/browser) renders, so both look at the same report."""

from __future__ import annotations

import base64
import io
import re
from types import SimpleNamespace

import numpy as np
from PIL import Image

from ldbench.drift import Drift
from ldbench.report import plots
from ldbench.report.html import _summary_rows, _sweep_figures, render_report

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=2">'
DRIFTS = [Drift(0.0, "none", "none"), Drift(0.05, "noise", "init"), Drift(0.1, "noise", "init"),
          Drift(0.1, "noise", "every-step")]


def _record(dataset, editor, metric, drift, value, seed=0, ci=0.1, extractor="domain"):
    return {"dataset": dataset, "method": "finetune", "drift": drift.to_dict(), "seed": seed, "editor": editor,
            "metric": metric, "value": value, "ci95": [value - ci, value + ci], "n": 40, "extractor": extractor,
            "details": {}, "provenance": {"notes": [f"note {HOSTILE}"], "resolved_config": {"name": HOSTILE},
                                          "reference_stats": {"source": "built", "sha256": "ab" * 32}}}


def report_inputs(seed: int = 0) -> dict:
    """Two editors on synth-brain over four drifts (three δ values, two placements), FD / KD and an oracle AUC,
    LD-effect records, a ROC entry, latents and image edits; a hostile string in user-controlled text."""
    rng = np.random.default_rng(seed)
    records, generated, effects = [], [], []
    for editor in ("sdedit", "text2img"):
        for drift in DRIFTS:
            d = float(drift.delta)
            records.append(_record("synth-brain", editor, "fd", drift, 2.0 - 5 * d + rng.normal(0, 0.05)))
            records.append(_record("synth-brain", editor, "kd", drift, 0.05 - 0.1 * d, ci=0.01))
            records.append(_record("synth-brain", editor, "effectiveness_auc:diagnosis", drift, 0.7 + d, ci=0.05))
            n = 6
            is_edit = editor == "sdedit"
            generated.append({
                "dataset": "synth-brain", "method": "finetune", "drift": drift, "editor": editor, "seed": 0,
                "images": rng.uniform(0, 1, (n, 32, 32)).astype(np.float32),
                "latents": rng.normal(d, 1, (n, 4, 8, 8)).astype(np.float32),
                "source_index": np.arange(n) if is_edit else -np.ones(n, dtype=int),
                "truth_index": np.arange(n) if is_edit else -np.ones(n, dtype=int),
                "source_images": rng.uniform(0, 1, (n, 32, 32)).astype(np.float32),
                "ground_truth": rng.uniform(0, 1, (n, 32, 32)).astype(np.float32) if is_edit else None,
            })
            if drift.uses_ld:
                effects.append({
                    "dataset": "synth-brain", "method": "finetune", "editor": editor, "seed": 0,
                    "drift": drift.to_dict(), "baseline_drift": DRIFTS[0].to_dict(), "metric": "fd",
                    "extractor": "domain", "ld_value": 2.0 - 5 * d, "no_ld_value": 2.0, "difference": -5 * d,
                    "ci95": [-5 * d - 0.1, -5 * d + 0.1], "p_value": 0.01, "significant": d > 0.05,
                    "test": "paired bootstrap", "B": 200, "n": 40})
    y = rng.integers(0, 2, 60)
    roc = [{"title": f"synth-brain · finetune · {drift.label} · sdedit · seed 0",
            "curves": {"effectiveness_auc:diagnosis": (y, y + rng.normal(0, 0.8, 60)),
                       "auc_real": (y, rng.normal(0, 1, 60))}} for drift in DRIFTS[:2]]
    return {
        "suite": SimpleNamespace(name="synthetic", description=f"synthetic report {HOSTILE}"),
        "records": records,
        "natural_latents": rng.normal(0.3, 1.5, (20, 4, 8, 8)).astype(np.float32),
        "real_latents": {"synth-brain": rng.normal(-0.2, 0.8, (20, 4, 8, 8)).astype(np.float32)},
        "generated": generated,
        "effects": effects,
        "roc": roc,
        "environment": {"python": "3.11", "hostile": HOSTILE},
    }


def _assert_png(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()  # decodes the whole image: a truncated PNG fails here
    arr = np.asarray(img.convert("L"))
    assert arr.std() > 1.0, "figure is blank"
    return img.size


def test_sweep_curves_returns_a_decodable_png():
    series = {"fd": {"noise/init": [(0.0, 2.0, (1.9, 2.1)), (0.1, 1.5, (1.4, 1.6))],
                     "noise/every-step": [(0.0, 2.0, None), (0.1, 1.8, (1.85, 1.9))]},  # CI not around value
              "kd": {"noise/init": [(0.0, 0.05, (0.04, 0.06)), (0.1, 0.04, (0.03, 0.05))]}}
    w, h = _assert_png(plots.sweep_curves(series, {"fd": "FD [domain]"}))
    assert w > h  # two panels side by side


def test_sweep_curves_rejects_empty_input():
    import pytest

    with pytest.raises(ValueError):
        plots.sweep_curves({})


def test_roc_curves_png_and_single_class_metric():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 50)
    _assert_png(plots.roc_curves({"auc_real": (y, y + rng.normal(0, 1, 50)),
                                  "auc_mixed": (np.ones(50), rng.normal(0, 1, 50))}, title="t"))


def test_sweep_groups_need_two_delta_values():
    inputs = report_inputs()
    assert [f["title"] for f in _sweep_figures(inputs["records"])] == [
        "synth-brain · finetune · sdedit", "synth-brain · finetune · text2img"]
    only_zero = [r for r in inputs["records"] if r["drift"]["delta"] == 0.0]
    assert _sweep_figures(only_zero) == []
    one_ld = [r for r in inputs["records"] if r["drift"]["delta"] in (0.0, 0.05)]  # δ ∈ {0, 0.05}: two values
    assert len(_sweep_figures(one_ld)) == 2


def test_summary_rows_compare_no_ld_with_each_ld_setting():
    inputs = report_inputs()
    rows = _summary_rows(inputs["records"], inputs["effects"])
    fd = [r for r in rows if r["metric"] == "FD [domain]" and r["editor"] == "sdedit"]
    assert len(fd) == 3  # one row per LD setting, none for no LD against itself
    by_drift = {r["drift"]: r for r in fd}
    assert by_drift["LD δ=0.1 (noise/init)"]["verdict"] == "LD better (significant)"  # FD lower with LD
    assert by_drift["LD δ=0.05 (noise/init)"]["verdict"] == "no significant difference"
    assert re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\]", by_drift["LD δ=0.1 (noise/init)"]["no_ld"])
    auc = [r for r in rows if r["metric"].startswith("Oracle AUC")]
    assert auc and all(r["verdict"] == "not tested" and r["direction"] == "↑" for r in auc)


def test_summary_marks_no_ld_better_and_averages_seeds():
    drift = DRIFTS[2]
    records = [_record("d", "e", "fd", DRIFTS[0], 1.0, seed=s) for s in (0, 1)] + \
              [_record("d", "e", "fd", drift, 3.0, seed=s) for s in (0, 1)]
    effects = [{"dataset": "d", "method": "finetune", "editor": "e", "seed": s, "drift": drift.to_dict(),
                "metric": "fd", "difference": 2.0, "significant": s == 0} for s in (0, 1)]
    (row,) = _summary_rows(records, effects)
    assert row["verdict"] == "no LD better (significant in 1/2 seeds)"
    assert row["ld"] == "3.000 (mean of 2 seeds)"


def test_report_has_new_sections_with_valid_inline_figures_and_escapes_text():
    html = render_report(report_inputs())
    for section in ("summary", "metrics", "effects", "sweep", "latents", "samples", "roc", "provenance"):
        assert f'<section id="{section}">' in html
        assert f'href="#{section}"' in html
    assert 'id="summary-table"' in html
    sweep = html.split('<section id="sweep">')[1].split("</section>")[0]
    roc = html.split('<section id="roc">')[1].split("</section>")[0]
    assert sweep.count("<img ") == 2 and roc.count("<img ") == 2
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        _assert_png(base64.b64decode(uri))
    assert "<script" not in html and "<img src=x" not in html  # the hostile markup never appears raw
    assert "&lt;script&gt;window.__pwned" in html and "&lt;img src=x" in html


def _probe(rng, scale: float) -> dict:
    steps = np.array([0, 25, 50])
    means = rng.normal(0, scale, size=(3, 4, 4))
    return {"steps": steps, "channel_mean": means, "channel_mean_square": means**2 + 1.0}


def test_report_shows_each_finetune_loss_curve_next_to_its_latents_at_checkpoints():
    rng = np.random.default_rng(0)
    losses = [{"title": "synth-brain · finetune · seed 0", "dataset": "synth-brain",
               "series": {"no LD": list(np.linspace(0.3, 0.1, 50)), "LD δ=0.1 (noise/none)": [0.3] * 50},
               "latents": {"no LD": _probe(rng, 1.0), "LD δ=0.1 (noise/none)": _probe(rng, 0.1)}}]
    html = render_report({**report_inputs(), "losses": losses})
    training = html.split('<section id="training">')[1].split("</section>")[0]
    assert training.count("<img ") == 2 and "synth-brain · finetune · seed 0" in training
    assert 'alt="generated latents at checkpoints: synth-brain · finetune · seed 0"' in training
    for uri in re.findall(r'src="data:image/png;base64,([^"]+)"', training):
        _assert_png(base64.b64decode(uri))
    assert "No fine-tune trained in this run" in render_report(report_inputs())


def test_report_without_sweep_or_roc_says_so():
    inputs = report_inputs()
    inputs["records"] = [r for r in inputs["records"] if r["drift"]["delta"] == 0.0]
    inputs["effects"], inputs["roc"] = [], []
    html = render_report(inputs)
    assert "No dataset · method · editor with records at two or more δ values." in html
    assert "No AUC metric in this suite" in html
    assert "No pair of cells with and without Latent Drifting" in html and 'id="summary-table"' not in html


def test_long_sections_start_folded_short_ones_open(monkeypatch):
    import ldbench.report.html as report_html

    html = render_report(report_inputs())
    samples = html.split('<section id="samples">')[1].split("</section>")[0]
    assert "<details open><summary>4 figures</summary>" in samples  # the small report: everything open
    monkeypatch.setattr(report_html, "FOLD_FIGURES", 3)
    monkeypatch.setattr(report_html, "FOLD_ROWS", 5)
    html = render_report(report_inputs())
    samples = html.split('<section id="samples">')[1].split("</section>")[0]
    metrics = html.split('<section id="metrics">')[1].split("</section>")[0]
    assert "<details><summary>4 figures</summary>" in samples and samples.count("<img ") == 4
    assert "<details><summary>24 rows, one per cell and metric</summary>" in metrics
    summary = html.split('<section id="summary">')[1].split("</section>")[0]
    assert "<details" not in summary  # the summary is never folded


def test_report_shows_each_built_stage_peak_memory(tmp_path):
    import json

    from ldbench.runner.outputs import stage_resources
    from ldbench.store import Store

    store = Store(tmp_path / "cache")
    store.get_or_build("x", "1", {}, [], lambda tmp: {})
    store.get_or_build("x", "1", {}, [], lambda tmp: {})  # a cache hit: not a built stage
    built, hit = store.events
    assert built["peak_gpu_mem_mb"] is None and built["peak_rss_mb"] > 0 and "peak_rss_mb" not in hit
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"event": "stage", **e}) + "\n" for e in store.events))
    rows = stage_resources(events)
    assert [r["stage"] for r in rows] == ["x"]
    html = render_report({**report_inputs(), "stage_resources": rows})
    assert "Stages built in this run" in html and f"<td>{rows[0]['peak_rss_mb']}</td>" in html
