"""Unit tests for ticket_triage.training: the MLflow parent run of a sweep."""

from __future__ import annotations

import copy

import pytest

pytestmark = pytest.mark.slow  # MLflow store setup: ~15 s

from ticket_triage.data import write_jsonl


def test_a_crashed_sweep_is_recorded_failed_not_finished(tmp_path, base_params, small_rows, monkeypatch):
    import mlflow

    from ticket_triage import training

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    p = copy.deepcopy(base_params)
    p["paths"] = {**p["paths"], "split": str(tmp_path / "split"), "train": str(tmp_path / "train")}
    write_jsonl(tmp_path / "split" / "train.jsonl", small_rows[:30])
    write_jsonl(tmp_path / "split" / "validation.jsonl", small_rows[30:])
    p["tracking"] = {"experiment": "crash-test"}

    def crash(*args, **kwargs):
        raise RuntimeError("candidate exploded")

    monkeypatch.setattr(training, "train_candidate", crash)
    with pytest.raises(RuntimeError, match="exploded"):
        training.run_sweep(p, metrics_path=tmp_path / "m.json", progress=False)
    runs = mlflow.search_runs(experiment_names=["crash-test"], output_format="list")
    parent = [r for r in runs if r.data.tags.get("mlflow.parentRunId") is None]
    assert len(parent) == 1 and parent[0].info.status == "FAILED"
    assert all(r.info.status == "FAILED" for r in runs)
