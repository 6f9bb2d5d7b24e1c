"""The report's figures kept on disk by a hash of what drew them."""

import numpy as np

from ldbench.report import figure_cache, plots
from ldbench.report.figure_cache import figures_kept_in, kept


def _counting_figure():
    drawn = []

    @kept
    def figure(values, title=""):
        drawn.append(title)
        return b"png:" + title.encode()

    return figure, drawn


def test_a_kept_figure_is_drawn_once_per_input(tmp_path):
    figure, drawn = _counting_figure()
    values = {"a": np.arange(5.0), "b": [(0.0, 1.0, None)]}
    with figures_kept_in(tmp_path):
        first = figure(values["a"], title="t")
        assert figure(values["a"], title="t") == first and len(drawn) == 1
        changed = values["a"].copy()
        changed[2] += 1e-12  # one value in the last bits: another figure
        figure(changed, title="t")
        figure(values["a"], title="u")
        figure(values["a"].astype(np.float32), title="t")  # same values, another dtype
        assert len(drawn) == 4
    assert len(list(tmp_path.glob("figure-*.png"))) == 4 and not list(tmp_path.glob(".tmp-*"))
    figure(values["a"], title="t")  # outside the block: drawn, nothing kept
    assert len(drawn) == 5 and len(list(tmp_path.iterdir())) == 4


def test_an_input_the_key_cannot_describe_is_drawn_every_time(tmp_path):
    figure, drawn = _counting_figure()

    class Opaque:
        pass

    with figures_kept_in(tmp_path):
        figure([Opaque()], title="t")
        figure([Opaque()], title="t")
    assert len(drawn) == 2 and not list(tmp_path.iterdir())


def test_edits_to_the_drawing_code_draw_afresh(tmp_path, monkeypatch):
    key = figure_cache.figure_key("loss_curves", ({"a": [1.0, 0.5]},), {})
    monkeypatch.setattr(figure_cache, "_drawing_code", lambda: b"plots.py as edited")
    assert figure_cache.figure_key("loss_curves", ({"a": [1.0, 0.5]},), {}) != key


def test_a_kept_report_figure_is_the_figure_drawn(tmp_path):
    series = {"finetune · no LD": [1.0 / (i + 1) for i in range(40)]}
    drawn = plots.loss_curves(series, title="loss")
    with figures_kept_in(tmp_path):
        stored = plots.loss_curves(series, title="loss")
        read = plots.loss_curves(series, title="loss")
    assert drawn[:8] == b"\x89PNG\r\n\x1a\n" and drawn == stored == read
    assert read == next(tmp_path.glob("loss_curves-*.png")).read_bytes()
