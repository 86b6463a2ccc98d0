"""The DVC stages' library functions, end to end on the small fixture, into tmp_path:
ingest -> clean -> split -> train (a 2-candidate sweep tracked in a temporary MLflow store)
-> evaluate (registers the challenger) -> promote (champion alias flow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import ROOT
from helpers import small_pipeline_params


@pytest.fixture
def params(tmp_path, base_params, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    return small_pipeline_params(base_params, tmp_path, experiment="ticket-triage-test", sweep="test")


def test_data_stages_conserve_counts(params, tmp_path):
    from ticket_triage.stages import run_clean, run_ingest, run_split

    ing = run_ingest(params, metrics_path=tmp_path / "m" / "ingest.json")
    assert ing["rows_in"] == ing["tickets_out"] + ing["rejected"] == 48
    cl = run_clean(params, metrics_path=tmp_path / "m" / "clean.json", progress=False)
    assert cl["conserved"] and cl["tickets_in"] == 48
    sp = run_split(params, metrics_path=tmp_path / "m" / "split.json")
    assert sp["strategy"] == "date"
    assert sum(s["size"] for s in sp["splits"].values()) + sp["heldout"]["size"] == cl["kept"]
    assert Path(params["paths"]["heldout"]).is_file()
    # the rejected/set-aside files exist even when empty (nothing is dropped silently)
    assert (Path(params["paths"]["ingest"]) / "rejected.jsonl").is_file()
    assert json.loads((tmp_path / "m" / "split.json").read_text())["split/heldout"] == 6


def test_sweep_evaluate_promote(params, tmp_path):
    import mlflow

    from ticket_triage import tracking
    from ticket_triage.stages import run_evaluate, run_promote
    from ticket_triage.stages import run_clean, run_ingest, run_split
    from ticket_triage.training import run_sweep

    run_ingest(params, metrics_path=tmp_path / "m" / "i.json")
    run_clean(params, metrics_path=tmp_path / "m" / "c.json", progress=False)
    run_split(params, metrics_path=tmp_path / "m" / "s.json")
    res = run_sweep(params, metrics_path=tmp_path / "m" / "train.json", progress=False)
    assert len(res.candidates) == 2 and res.winner in {c["name"] for c in res.candidates}
    assert (Path(res.winner_dir) / "policy.json").is_file()

    tracking.setup(params["tracking"])
    exp = mlflow.get_experiment_by_name("ticket-triage-test")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == res.parent_run_id]
    assert len(parents) == 1 and len(children) == 2
    for r in children:
        assert r.data.tags["model_family"] == "tfidf_logreg" and r.data.tags["stage"] == "train"
        assert "git_sha" in r.data.tags and "data_md5" in r.data.tags
        assert {"val/accuracy", "val/macro_f1", "val/ece", "val/coverage", "val/auto_precision",
                "train/seconds", "val/latency_ms_per_ticket"} <= set(r.data.metrics)
        assert "model.family" in r.data.params

    ev = run_evaluate(params, metrics_path=tmp_path / "eval" / "metrics.json", plots_dir=tmp_path / "eval" / "plots")
    assert ev["registered_version"] == "1"
    assert {"test/accuracy", "heldout/accuracy"} <= set(ev["metrics"])
    assert (tmp_path / "eval" / "plots" / "test_confusion.png").is_file()
    first = run_promote(params)
    assert first["promoted"] and first["champion_version"] == "1"  # the first model of a dataset
    assert str(tracking.alias_version("champion", dataset="small").version) == "1"
    assert first["alias"] == "champion-small"
    tags = tracking.version_tags(tracking.alias_version("champion", dataset="small"))
    assert tags["dataset"] == "small" and tags["taxonomy"] == "banking-support" and tags["taxonomy_version"] == "1"
    assert tags["dataset_fingerprint"].startswith("sha256:")

    # a worse challenger (held-out accuracy far below the champion) is not promoted
    ev2 = run_evaluate(params, metrics_path=tmp_path / "eval" / "metrics2.json", plots_dir=tmp_path / "eval" / "p2")
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag("ticket-triage", ev2["registered_version"], "heldout_accuracy", "0.1")
    second = run_promote(params)
    assert not second["promoted"] and "keep champion" in second["reason"]
    assert str(tracking.alias_version("champion", dataset="small").version) == "1"
    assert str(tracking.alias_version("challenger", dataset="small").version) == ev2["registered_version"]

    # a challenger of another taxonomy version is not compared: refused, the alias unchanged
    from ticket_triage.stages import PromotionRefused

    ev3 = run_evaluate(params, metrics_path=tmp_path / "eval" / "metrics3.json", plots_dir=tmp_path / "eval" / "p3")
    MlflowClient().set_model_version_tag("ticket-triage", ev3["registered_version"], "taxonomy_version", "2")
    with pytest.raises(PromotionRefused, match="taxonomy_version: champion '1', challenger '2'.*promote.force=true"):
        run_promote(params)
    assert str(tracking.alias_version("champion", dataset="small").version) == "1"
    forced = run_promote({**params, "promote": {**params["promote"], "force": True}})
    assert forced["promoted"] and str(tracking.alias_version("champion", dataset="small").version) == ev3["registered_version"]

    # the champion loads back from the registry through the same decision code
    from ticket_triage.decision.triage import Triage

    bundle = tracking.download_bundle("champion", dst=tmp_path / "dl", dataset="small")
    d = Triage.load(bundle).decide_one({"subject": "", "body": "my transfer is still pending"})
    assert d.topic == "transfers"
    assert Triage.load(bundle).policy.dataset == "small"
    with pytest.raises(LookupError, match="champion-other"):  # no other dataset's champion is served
        tracking.download_bundle("champion", dst=tmp_path / "dl2", dataset="other")


def test_hydra_compose_every_group():
    """Every member of every config group composes."""
    from ticket_triage.config import compose

    for group in ("model", "thresholds", "sweep", "llm", "rules", "data"):
        for f in sorted((ROOT / "conf" / group).glob("*.yaml")):
            cfg = compose([f"{group}={f.stem}"])
            assert cfg[group] is not None, f"{group}={f.stem}"


def test_empty_training_data_fails_clearly(params, tmp_path):
    from ticket_triage.training import run_sweep

    split = Path(params["paths"]["split"])
    split.mkdir(parents=True)
    for n in ("train", "validation", "test"):
        (split / f"{n}.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty"):
        run_sweep(params, track=False, metrics_path=tmp_path / "m.json")
    shutil.rmtree(split)


def test_train_script_exits_non_zero_with_a_clear_message(tmp_path):
    """A label with too few examples: the stage script says so and exits 2 (no traceback)."""
    import subprocess
    import sys

    import yaml

    from ticket_triage.config import compose

    p = compose(["model=tfidf_logreg", "sweep=single"])
    p["paths"]["split"] = str(tmp_path / "split")
    p["paths"]["train"] = str(tmp_path / "train")
    (tmp_path / "split").mkdir()
    rows = [{"id": f"r{i}", "text": f"my transfer is pending {i}", "topic": "transfers"} for i in range(5)]
    rows.append({"id": "x", "text": "lost card", "topic": "fraud_and_security"})
    for n in ("train", "validation", "test"):
        (tmp_path / "split" / f"{n}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "conf").symlink_to(ROOT / "conf")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    res = subprocess.run([sys.executable, str(ROOT / "pipelines" / "train.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "fewer than 2 training examples: fraud_and_security (1)" in res.stderr
    assert "Traceback" not in res.stderr
