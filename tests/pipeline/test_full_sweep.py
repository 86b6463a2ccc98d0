"""``sweep=full`` end to end on the small fixture: every family of the design card (TF-IDF,
frozen MiniLM, the tag-level ensemble, SetFit, the fine-tuned transformer and the transformer +
TF-IDF ensemble) trains through the
train stage's own code, builds a bundle and is scored, tracked and compared; the winner's bundle
decides. The fine-tuned families are cut to a few steps (the candidates' own overrides, as a user
would shorten them); everything else is ``conf/sweep/full.yaml`` as shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, small_pipeline_params

from ticket_triage.config import model_config

FINE_TUNED = {"setfit", "transformer"}


@pytest.mark.slow
def test_full_sweep_trains_every_family_and_picks_a_winner(tmp_path, base_params, monkeypatch):
    import mlflow

    from ticket_triage import tracking
    from ticket_triage.decision.triage import Triage
    from ticket_triage.stages import run_clean, run_ingest, run_split
    from ticket_triage.training import run_sweep

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    params = small_pipeline_params(base_params, tmp_path, experiment="full-sweep", sweep="full")
    shipped = yaml.safe_load((ROOT / "conf" / "sweep" / "full.yaml").read_text())
    cands = []
    for c in shipped["candidates"]:
        c = dict(c)
        if c["model"] in FINE_TUNED:
            c.update({"max_steps": 3, "max_length": 32})
        elif c["model"] == "transformer_tfidf":  # an ensemble: shorten its fine-tuned member
            members = model_config("transformer_tfidf", root=ROOT)["members"]
            c["members"] = [{**m, "max_steps": 3, "max_length": 32} if m["family"] in FINE_TUNED else m
                            for m in members]
        cands.append(c)
    params["sweep"] = {"name": "full", "candidates": cands}

    run_ingest(params, metrics_path=tmp_path / "m" / "i.json")
    run_clean(params, metrics_path=tmp_path / "m" / "c.json", progress=False)
    run_split(params, metrics_path=tmp_path / "m" / "s.json")
    res = run_sweep(params, metrics_path=tmp_path / "m" / "train.json", progress=False)

    families = [c["family"] for c in res.candidates]
    assert sorted(families) == sorted(model_config(c["model"], root=ROOT)["family"] for c in shipped["candidates"])
    assert FINE_TUNED <= set(families)
    for c in res.candidates:
        assert 0.0 <= c["metrics"]["val/macro_f1"] <= 1.0, c
    assert res.winner in {c["name"] for c in res.candidates}
    assert (Path(res.winner_dir) / "policy.json").is_file()

    # each fine-tuned candidate stopped where it was told, and its bundle carries its own encoder
    cdir = Path(res.winner_dir).parent / "candidates"
    combined = [c for c in res.candidates if c["name"].startswith("transformer_tfidf")]
    assert len(combined) == 1  # the fine-tuned transformer + TF-IDF ensemble, member 0 the transformer
    info = json.loads((cdir / combined[0]["name"] / "classifier" / "members" / "0" / "train_info.json").read_text())
    assert info["steps"] == 3 and info["stopped"] == "max_steps" and info["val_examples"] == 0, info
    for c in res.candidates:
        if c["family"] not in FINE_TUNED:
            continue
        assert json.loads((cdir / c["name"] / "classifier" / "classifier.json").read_text())["family"] == c["family"]
        info = json.loads((cdir / c["name"] / "classifier" / "train_info.json").read_text())
        assert info["steps"] == 3 and info["stopped"] == "max_steps", info
        d = Triage.load(cdir / c["name"]).decide_one({"subject": "", "body": "my transfer is still pending"})
        assert d.topic and d.band in {"auto_route", "draft", "review"}

    tracking.setup(params["tracking"])
    exp = mlflow.get_experiment_by_name("full-sweep")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == res.parent_run_id]
    assert sorted(r.data.tags["model_family"] for r in children) == sorted(families)
    # the fine-tuned candidates' validation curves and stop reasons are on their runs
    client = mlflow.MlflowClient()
    for r in children:
        if r.data.tags["model_family"] in FINE_TUNED:
            assert r.data.tags["finetune_stopped"] == "max_steps"
            assert r.data.metrics["finetune/steps"] == 3
            curve = client.get_metric_history(r.info.run_id, "finetune/val_macro_f1")
            assert curve and curve[-1].step == 3
        else:
            assert "finetune_stopped" not in r.data.tags
