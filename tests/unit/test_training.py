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


def test_a_candidate_with_the_cascade_logs_its_trade_off_plot(tmp_path, base_params, small_rows, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from ticket_triage import training

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    p = copy.deepcopy(base_params)
    p["paths"] = {**p["paths"], "split": str(tmp_path / "split"), "train": str(tmp_path / "train")}
    write_jsonl(tmp_path / "split" / "train.jsonl", small_rows)
    write_jsonl(tmp_path / "split" / "validation.jsonl", small_rows)
    p["tracking"] = {"experiment": "cascade-plot"}
    p["thresholds"].update({"tune": True, "target_precision": 0.75, "confidence": 0.8, "min_support": 5,
                            "cross_fit_folds": 3, "strategy": "pooled", "cold_start_min_examples": 1})
    p["thresholds"]["cascade"] = {**dict(p["thresholds"].get("cascade") or {}), "enabled": True,
                                  "ood_max_in_scope_flagged": 0.1}
    training.run_sweep(p, metrics_path=tmp_path / "m.json", progress=False)
    runs = mlflow.search_runs(experiment_names=["cascade-plot"], output_format="list")
    child = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert child
    names = {a.path for a in MlflowClient().list_artifacts(child[0].info.run_id, "plots")}
    assert {"plots/cascade_tradeoff.png", "plots/cascade_tradeoff.csv", "plots/val_confusion.png"} <= names
