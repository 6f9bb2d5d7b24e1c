"""Paper tables (markdown / LaTeX / CSV) and the regression check against a baseline."""

import csv
import io
import json

import pytest

from ldbench.cli import main
from ldbench.regression import compare, write_baseline
from ldbench.report.tables import build_table, render


def _records(fd_ld=0.30, fd_plain=0.40):
    out = []
    for delta, train, sample, fd, kd in ((0.0, "none", "none", fd_plain, 0.004), (0.1, "noise", "init", fd_ld, 0.003)):
        for metric, value in (("fd", fd), ("kd", kd)):
            out.append({"dataset": "synth-brain", "method": "finetune",
                        "drift": {"delta": delta, "train": train, "sample": sample}, "seed": 0, "editor": "sdedit",
                        "metric": metric, "value": value, "ci95": [value * 0.8, value * 1.2], "n": 120,
                        "extractor": "domain", "provenance": {"suite": "smoke"}})
    return out


def test_table_marks_the_best_value_and_names_the_extractor():
    table = render(build_table(_records()), "markdown")
    ld_row = next(line for line in table.splitlines() if "LD δ=0.1" in line)
    assert "**0.300 [0.240, 0.360]**" in ld_row
    assert "FD [domain]" in table and "not Inception" in table
    no_ld = table.splitlines()[2]
    assert "no LD" in no_ld  # no LD first, as in the paper


def test_floor_then_autoencoder_ceiling_head_every_realism_column_and_never_win_it():
    anchors = [{**r, "method": method, "editor": editor, "drift": {"delta": 0.0, "train": "none", "sample": "none"},
                "value": value, "ci95": [value * 0.9, value * 1.1]}
               for method, editor, value in (("autoencoder", "reconstruction", 0.25), ("real", "held-out", 0.05))
               for r in _records()[:1]]
    other_editor = [{**r, "editor": "text2img"} for r in _records()]
    table = build_table(_records() + other_editor + anchors)
    assert [(m, label) for m, label, _ in table.rows][:2] == [("real", "held-out"), ("autoencoder", "reconstruction")]
    fd_columns = [i for i, h in enumerate(table.columns) if "FD" in h]
    assert len(fd_columns) == 2  # sdedit and text2img: both show the floor and the ceiling
    for i in fd_columns:
        floor, ceiling = table.rows[0][2][i], table.rows[1][2][i]
        assert (floor.value, ceiling.value) == (0.05, 0.25) and not floor.best and not ceiling.best
        assert next(row[2][i] for row in table.rows if "LD δ=0.1" in row[1]).best  # 0.30, not the anchors' lower
    assert "Second row (autoencoder · reconstruction)" in table.caption


def test_latex_and_csv_renderings():
    latex = render(build_table(_records()), "latex")
    assert r"\textbf{0.300" in latex and r"\begin{tabular}" in latex and r"$\delta$" in latex
    rows = list(csv.reader(io.StringIO(render(build_table(_records()), "csv"))))
    assert rows[0][:3] == ["method", "drift", "synth-brain · sdedit · FD [domain] value"]
    assert float(rows[2][2]) == pytest.approx(0.30)


def test_check_flags_only_real_regressions(tmp_path):
    write_baseline(_records(), tmp_path / "b.json")
    baseline = json.loads((tmp_path / "b.json").read_text())
    assert all(f.verdict == "ok" for f in compare(_records(), baseline))
    worse = compare(_records(fd_ld=0.50), baseline)  # FD is lower-is-better: 0.30 -> 0.50 regresses
    assert [f.verdict for f in worse if f.metric == "fd"].count("regressed") == 1
    better = compare(_records(fd_ld=0.10), baseline)
    assert "improved" in {f.verdict for f in better} and "regressed" not in {f.verdict for f in better}
    within = compare(_records(fd_ld=0.31), baseline)  # inside the stated tolerance (abs 0.02 / rel 10%)
    assert all(f.verdict == "ok" for f in within)


def test_tolerances_fall_back_from_the_metric_to_its_family_to_every_metric():
    def finding(metric, before, after, tolerances=None):
        base = {"entries": [dict(_records()[0], metric=metric, value=before)], "tolerances": tolerances or {}}
        (f,) = compare([dict(_records()[0], metric=metric, value=after)], base)
        return f

    # CPU rounding: 5e-5 relative passes on a metric without a tolerance of its own, 1% does not
    assert finding("latent_instability", 0.05, 0.05 * (1 + 5e-5)).verdict == "ok"
    assert finding("latent_instability", 0.05, 0.0505).verdict == "regressed"
    # a trained oracle's AUC, by its family's tolerance whatever the attribute
    assert finding("effectiveness_auc:diagnosis", 0.90, 0.88).verdict == "ok"
    assert finding("effectiveness_auc:diagnosis", 0.90, 0.80).verdict == "regressed"
    assert finding("effectiveness_auc:diagnosis", 0.90, 0.88, {"effectiveness_auc:diagnosis": {"abs": 0.0}}
                   ).verdict == "regressed"  # the metric's own entry comes first
    # the baseline file's "*" replaces the default one for every metric without an entry of its own
    assert finding("latent_instability", 0.05, 0.0505, {"*": {"rel": 0.1}}).verdict == "ok"
    assert finding("fid", 100.0, 104.0, {"*": {"rel": 0.0}}).verdict == "ok"  # FID keeps its own default


def test_check_cli_exit_codes(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"records": _records()}))
    assert main(["check", str(run), "--baseline", str(tmp_path / "b.json"), "--update"]) == 0
    assert main(["check", str(run), "--baseline", str(tmp_path / "b.json")]) == 0
    (run / "results.json").write_text(json.dumps({"records": _records(fd_ld=0.9)}))
    assert main(["check", str(run), "--baseline", str(tmp_path / "b.json")]) == 1
    assert "regressed" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "nowhere"), "--baseline", str(tmp_path / "b.json")]) == 2
    assert main(["table", str(run), "--format", "csv"]) == 0


def test_table_metrics_selection(tmp_path, capsys):
    records = _records()
    for r in list(records):
        for metric, value in (("auc_synthetic", 0.8), ("source_ssim", 0.9)):
            out = dict(r, metric=metric, value=value, ci95=[value - 0.05, value + 0.05],
                       details={"classifier": "resnet10t"} if metric == "auc_synthetic" else {})
            if out not in records:
                records.append(out)
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"records": records}))
    assert main(["table", str(run)]) == 0  # paper: FD, KD and the synthetic-trained AUC, not SSIM
    header = capsys.readouterr().out.splitlines()[0]
    assert "FD [domain]" in header and "KD [domain]" in header and "AUC synthetic" in header
    assert "SSIM" not in header
    assert main(["table", str(run)]) == 0
    assert "Features: domain." in (out := capsys.readouterr().out) and "timm resnet10t" in out
    assert main(["table", str(run), "--metrics", "all"]) == 0
    assert "SSIM vs source" in capsys.readouterr().out.splitlines()[0]
    assert main(["table", str(run), "--metrics", "source_ssim"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "SSIM vs source" in header and "FD" not in header
    assert main(["table", str(run), "--metrics", "fd,nonsense"]) == 2
    err = capsys.readouterr().err
    assert "nonsense" in err and "auc_synthetic" in err
    assert main(["table", str(run), "--metrics", "fid"]) == 2
    assert "hold none of fid" in capsys.readouterr().err
