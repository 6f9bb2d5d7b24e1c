"""What a suite needs of a dataset is checked once the dataset is built, before any network runs."""

from __future__ import annotations

from ldbench.cli import main


def test_instruct_on_a_dataset_without_ages_in_its_captions_stops_before_any_network(tmp_path, capsys):
    code = main(["run", "--suite", "smoke", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                 "--quiet", "--set", "evaluation.extractors=[domain]",
                 "--set", "datasets=[{name: synth-cxr, options: {n_subjects: 6}}]", "--set", "editors=[instruct]"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("ldbench: error: editor instruct: dataset synth-cxr has no age in its captions")
    assert "drop it from the suite's editors" in lines[0]
    built = sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.startswith("."))
    assert built == ["dataset"]  # only the data was built
