"""Every plot writes a valid PNG (and its CSV); nothing is drawn through pyplot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ticket_triage.monitoring import plots
PNG = b"\x89PNG\r\n\x1a\n"


def _valid_png(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_import_does_not_load_matplotlib():
    code = "import sys, ticket_triage.monitoring.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("k", [3, 77])
def test_confusion_matrix(tmp_path, k):
    rng = np.random.default_rng(0)
    labels = [f"label_{i}" for i in range(k)]
    y = rng.choice(labels, 400)
    p = np.where(rng.random(400) < 0.7, y, rng.choice(labels, 400)).astype(object)
    p[0] = None  # out-of-scope prediction -> "<other>" column
    out = plots.plot_confusion_matrix(y, p, labels, tmp_path / f"cm{k}.png")
    img = _valid_png(out)
    if k == 77:
        assert img.shape[0] > 1000  # grows with the label count
    csv = out.with_suffix(".csv").read_text().splitlines()
    assert csv[0] == "actual,predicted" and len(csv) == 401


def test_reliability_and_coverage(tmp_path):
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, 500)
    correct = rng.random(500) < conf
    _valid_png(plots.plot_reliability(conf, correct, tmp_path / "rel.png"))
    out = plots.plot_coverage_precision(conf, correct, tmp_path / "cov.png", target_precision=0.9)
    _valid_png(out)
    assert out.with_suffix(".csv").read_text().startswith("threshold,coverage,precision")


def test_over_time_plots(tmp_path):
    rng = np.random.default_rng(2)
    periods = rng.choice(["2025-01", "2025-02", "2025-03"], 300)
    _valid_png(plots.plot_confidence_over_time(rng.random(300), periods, tmp_path / "conf.png"))
    few = {p: {"a": 0.9, "b": 0.7} for p in ["2025-01", "2025-02"]}
    _valid_png(plots.plot_f1_over_time(few, tmp_path / "f1.png"))
    many = {p: {f"l{i}": float(rng.random()) for i in range(40)} for p in ["w1", "w2", "w3"]}
    out = plots.plot_f1_over_time(many, tmp_path / "f1_many.png")
    _valid_png(out)
    assert len(out.with_suffix(".csv").read_text().splitlines()) == 1 + 120


def test_cost_stacked_and_errors(tmp_path):
    import pandas as pd

    frame = pd.DataFrame([{"policy": "ours", "model": 6.0, "llm": 40.0, "review": 900.0},
                          {"policy": "all to LLM", "model": 0.0, "llm": 500.0, "review": 0.0}])
    parts = {"model": "model inference", "llm": "LLM calls", "review": "reviewer time"}
    out = plots.plot_cost_stacked(frame, parts, tmp_path / "c.png", subtitle="measured on 3 tickets")
    _valid_png(out)
    table = pd.read_csv(out.with_suffix(".csv"))
    assert list(table.columns) == ["policy", "model", "llm", "review", "total"]
    assert table["total"].tolist() == [946.0, 500.0]
    with pytest.raises(ValueError, match=".png"):
        plots.plot_cost_stacked(frame, parts, tmp_path / "c.jpg")
    with pytest.raises(ValueError, match="no column"):
        plots.plot_cost_stacked(frame, {"people": "x"}, tmp_path / "d.png")
    with pytest.raises(ValueError, match="period, label, f1"):
        import pandas as pd

        plots.plot_f1_over_time(pd.DataFrame({"period": ["x"]}), tmp_path / "f.png")
