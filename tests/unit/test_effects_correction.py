"""LD effects corrected for multiple comparisons: adjusted p in the records, the tables and the report."""

import numpy as np
import pytest

from ldbench.config import load_suite
from ldbench.drift import NO_DRIFT, Drift
from ldbench.errors import UserError
from ldbench.report.tables import effects_rows, effects_table_markdown
from ldbench.runner.effects import correct_effects

LD = Drift(0.1, train="noise", sample="init")


def _effect(metric: str, p: float) -> dict:
    return {"dataset": "d", "method": "m", "editor": "e", "seed": 0, "drift": LD.to_dict(),
            "baseline_drift": NO_DRIFT.to_dict(), "metric": metric, "extractor": "domain", "ld_value": 1.0,
            "no_ld_value": 0.9, "difference": 0.1, "ci95": [0.01, 0.2], "p_value": p, "significant": p < 0.05,
            "test": "paired bootstrap", "B": 200, "n": 40}


def test_holm_decides_significance_over_the_whole_family():
    effects = [_effect("fd", 0.001)] + [_effect(f"composition_l1:{k}", 0.02) for k in range(1, 20)]
    correct_effects(effects, "holm")
    assert all(e["correction"] == "holm" and e["family_size"] == 20 for e in effects)
    assert effects[0]["p_adjusted"] == pytest.approx(0.02) and effects[0]["significant"]
    # 0.02 is below 0.05 on its own but not after the correction for 20 tests
    assert all(e["p_adjusted"] == pytest.approx(0.02 * 19) and not e["significant"] for e in effects[1:])
    assert all(e["p_value"] == 0.02 for e in effects[1:])  # the raw p is kept
    none = correct_effects([_effect("fd", 0.02) for _ in range(20)], "none")
    assert all(e["significant"] and e["p_adjusted"] == 0.02 for e in none)
    assert correct_effects([], "holm") == []


def test_effects_table_and_report_show_raw_and_adjusted_p():
    effects = correct_effects([_effect("fd", 0.001), _effect("kd", 0.04)], "holm")
    rows = effects_rows(effects)
    assert [r["p"] for r in rows] == ["0.001", "0.04"]
    assert [r["p_adjusted"] for r in rows] == ["0.002", "0.04"]
    text = effects_table_markdown(effects)
    assert "| adjusted p |" in text and "Holm" in text and "all 2 LD effects" in text
    old = effects_rows([_effect("fd", 0.01)])  # results written before the correction existed
    assert old[0]["p_adjusted"] == "—"
    assert "no multiple-comparison correction" in effects_table_markdown([_effect("fd", 0.01)])


def test_ld_effects_records_carry_the_correction():
    from ldbench.config import Evaluation
    from ldbench.runner.effects import CellEvidence, ld_effects

    rng = np.random.default_rng(0)
    values = rng.random(30)

    def cell(drift, shift):
        return CellEvidence(dataset="d", method="m", editor="e", seed=0, drift=drift,
                            records=[{"metric": "source_l1", "value": float((values + shift).mean()),
                                      "extractor": "pixels", "n": 30, "details": {}}],
                            items={"mean__source_l1": values + shift}, features=None, pairing="same")

    effects = ld_effects([cell(NO_DRIFT, 0.0), cell(LD, 0.05)], Evaluation(bootstrap=100, multiple_comparisons="bh"))
    assert len(effects) == 1 and effects[0]["correction"] == "bh" and effects[0]["significant"]
    assert effects[0]["p_adjusted"] == effects[0]["p_value"]  # a family of one


def test_suite_option_is_validated():
    assert load_suite("smoke").evaluation.multiple_comparisons == "holm"
    assert load_suite("smoke", ["evaluation.multiple_comparisons=bh"]).evaluation.multiple_comparisons == "bh"
    with pytest.raises(UserError) as info:
        load_suite("smoke", ["evaluation.multiple_comparisons=bonferroni"])
    assert "multiple_comparisons must be one of holm, bh, none" in str(info.value)


def test_html_report_shows_adjusted_p_and_the_correction():
    from ldbench.report.html import render_report
    from tests.unit.test_report_html import report_inputs

    inputs = report_inputs()
    correct_effects(inputs["effects"], "holm")
    html = render_report(inputs)
    table = html.split('<table id="effects-table">')[1].split("</table>")[0]
    assert "<th>adjusted p</th>" in table
    n = len(inputs["effects"])
    assert f"<td>{min(1.0, 0.01 * n):.3g}</td>" in table
    assert f"Holm (family-wise error rate) correction over all {n} LD effects" in html
