"""Continuous evaluation end to end on the fixture bundle: outputs, history, comparison with
the previous run, a flagged drop that names the degraded label, drift, MLflow logging."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from ticket_triage.bundles import resolve_bundle
from ticket_triage.models.embeddings import CachedClassifier as EmbeddingCache
from ticket_triage.monitoring.continuous import run_continuous_eval
from ticket_triage.monitoring.traffic import feedback_rows, read_tickets_file
from ticket_triage.data import write_jsonl

SHIFT = ["my crypto wallet staking rewards vanished after the blockchain upgrade",
         "staking rewards missing from crypto wallet, blockchain validator offline",
         "cannot withdraw crypto from wallet, staking locked by blockchain validator",
         "blockchain validator slashed my staking rewards in the crypto wallet",
         "crypto wallet shows zero staking rewards since the validator upgrade"]
EXTRA = ["please help", "urgent", "since monday", "again", "no reply yet", "thanks", "asap", "today"]


def _params(base_params: dict, tmp_path: Path) -> dict:
    p = copy.deepcopy(base_params)
    p["paths"].update({"split": str(tmp_path / "split"), "heldout": str(tmp_path / "heldout.jsonl"),
                       "feedback": str(tmp_path / "feedback"), "train": str(tmp_path / "train")})
    p["tracking"]["artifact_location"] = str(tmp_path / "mlartifacts")
    p["monitor"]["continuous"].update({"out_dir": str(tmp_path / "out"), "history_dir": str(tmp_path / "history"),
                                       "recent_path": str(tmp_path / "recent.jsonl")})
    p["monitor"]["compare"]["bootstrap_n"] = 300
    return p


@pytest.fixture
def setup(tmp_path, base_params, small_rows, monkeypatch):
    """Train split, held-out set, recent traffic and feedback files for the fixture bundle."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.delenv("TRIAGE_BUNDLE", raising=False)
    rows = [dict(r) for r in small_rows]
    write_jsonl(tmp_path / "split" / "train.jsonl", rows)
    write_jsonl(tmp_path / "heldout.jsonl", rows)
    write_jsonl(tmp_path / "recent.jsonl", [{**r, "id": f"R{i}", "topic": None} for i, r in enumerate(rows)])
    fb = [{"ticket_id": rows[0]["id"], "topic": "card_management", "predicted_topic": rows[0]["topic"],
           "action": "correct", "source": "review", "text": rows[0]["text"], "corrected_at": "2025-02-01T10:00:00+00:00"},
          {"ticket_id": "NEW1", "topic": "transfers", "predicted_topic": "transfers", "action": "confirm",
           "source": "audit", "text": "My bank transfer has been pending for three days.",
           "corrected_at": "2025-02-02T10:00:00+00:00"},
          {"ticket_id": "NEW2", "topic": "top_ups", "predicted_topic": "top_ups", "action": "confirm",
           "source": "audit", "text": "Top up failed with my card.", "corrected_at": "2025-02-02T11:00:00+00:00"},
          {"ticket_id": "NOTEXT", "topic": "top_ups", "action": "correct", "source": "review", "text": ""}]
    write_jsonl(tmp_path / "feedback" / "corrections-20250202T120000Z.jsonl", fb)
    return _params(base_params, tmp_path), rows


def test_two_runs_compare_then_a_drop_is_flagged_with_its_label(setup, tiny_bundle, tmp_path):
    import mlflow

    params, rows = setup
    out = tmp_path / "out"
    first = run_continuous_eval(params, bundle_dir=tiny_bundle, track=True)
    assert first["first_run"] and first["comparison"] is None
    assert first["status"] in ("ok", "watch", "retrain recommended")
    summary = (out / "summary.md").read_text()
    assert f"**Status: {first['status'].upper()}**" in summary and "First run" in summary
    for name in ("summary.md", "result.json", "metrics.json", "drift.json", "failure_catalog.md",
                 "failure_catalog.html", "noise_audit.csv", "cost_per_path.csv", "cost.png",
                 "plots/heldout_confusion.png", "plots/heldout_reliability.png",
                 "plots/heldout_coverage_precision.png", "plots/confidence_over_time.png",
                 "plots/f1_over_time.png"):
        assert (out / name).is_file(), name
    # the review band against the capacity, by reason, for recent traffic and the held-out set
    load = first["review_load"]["recent"]
    assert load["tickets"] == first["data"]["recent"] and load["capacity_per_day"] == params["thresholds"]["review_capacity"]
    assert "language" in {e["reason"] for e in load["by_reason"]} and load["within_capacity"] in (True, False)
    assert "## Review band against capacity" in summary and load["message"] in summary.replace("\\", "")
    assert first["data"]["recent_labelled"] == 3  # the correction without text is skipped
    assert first["data"]["overridden"] == 1 and first["data"]["audited"] == 2
    assert first["metrics"]["heldout/accuracy"] > 0.8
    assert "recent_labelled/accuracy" in first["metrics"]
    # created_at spans several weeks: confidence periods come from it
    assert first["confidence_periods"].startswith("by W period")
    assert len(list((tmp_path / "history").glob("*.json"))) == 1

    second = run_continuous_eval(params, bundle_dir=tiny_bundle, track=True)
    comp = second["comparison"]
    assert comp is not None and second["previous_run"] == first["run"] and not second["first_run"]
    assert comp["paired"] and not comp["drop"]
    for key in ("accuracy", "macro_f1", "coverage", "auto_precision", "ece"):
        assert key in comp["deltas"]
    assert comp["deltas"]["accuracy"]["delta"] == pytest.approx(0.0)
    assert second["timings"]["noise_audit_cached"] == 1.0  # train split unchanged: audit reused

    # degrade: every held-out ticket of one topic now carries another label
    bad = "transfers"
    held = [{**r, "topic": "top_ups"} if r["topic"] == bad else r for r in rows]
    write_jsonl(Path(params["paths"]["heldout"]), held)
    third = run_continuous_eval(params, bundle_dir=tiny_bundle, track=True)
    comp = third["comparison"]
    assert comp["drop"], comp["main"]["reason"]
    assert bad in [c["label"] for c in comp["main"]["culprits"]]
    assert comp["deltas"]["accuracy"]["delta"] < -0.15 and comp["deltas"]["accuracy"]["ci_high"] < 0
    assert third["status"] == "retrain recommended"
    summary = (out / "summary.md").read_text()
    assert "**Status: RETRAIN RECOMMENDED**" in summary and bad in summary
    worst = comp["per_label"][0]
    assert worst["delta"] < 0 and worst["ci_high"] < 0

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    assert params["tracking"]["monitor_experiment"] == "monitor"  # the composed default
    exp = mlflow.get_experiment_by_name("monitor")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    assert len(runs) == 3
    assert mlflow.get_experiment_by_name("continuous-eval") is None  # the old name is not created
    latest = mlflow.get_run(third["mlflow_run_id"])
    assert latest.data.tags["status"] == "retrain recommended" and latest.data.tags["stage"] == "monitor"
    assert latest.info.run_name.startswith("monitor-")
    assert latest.data.metrics["compare/drop"] == 1.0
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(third["mlflow_run_id"], "continuous")}
    assert "continuous/summary.md" in arts


def test_an_old_params_yaml_and_an_old_store_keep_working(setup, tiny_bundle, tmp_path):
    """A params.yaml composed before the rename (``eval:``, no ``monitor:``; a tracking section
    without ``monitor_experiment``) runs as before with one warning naming the fix; an MLflow
    store made before the rename keeps its ``continuous-eval`` runs, found beside the new ones."""
    import warnings

    import mlflow

    from ticket_triage import tracking

    params, _ = setup
    old = copy.deepcopy(params)
    old["eval"] = old.pop("monitor")
    old["tracking"].pop("monitor_experiment")
    tracking.setup(old["tracking"], experiment="continuous-eval")  # a run logged before the rename
    with tracking.run("continuous-eval-old"):
        tracking.log_metrics({"heldout/accuracy": 0.5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_continuous_eval(old, bundle_dir=tiny_bundle, track=True)
    ours = [w for w in caught if "`eval:`" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, FutureWarning), [str(w.message) for w in caught]
    assert "triage config compose" in str(ours[0].message) and "monitor" in str(ours[0].message)
    # the old section's settings were used (out_dir, history_dir and recent_path point into tmp_path)
    assert (tmp_path / "out" / "summary.md").is_file() and len(list((tmp_path / "history").glob("*.json"))) == 1
    assert res["data"]["recent"] == len(read_tickets_file(tmp_path / "recent.jsonl"))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/m.db")
    assert mlflow.get_run(res["mlflow_run_id"]).info.experiment_id == mlflow.get_experiment_by_name("monitor").experiment_id
    names = tracking.monitor_experiment_names(old["tracking"])
    assert names == ["monitor", "continuous-eval"]
    found = mlflow.search_runs(experiment_names=names, output_format="list")
    assert {r.info.run_name for r in found} == {"continuous-eval-old", mlflow.get_run(res["mlflow_run_id"]).info.run_name}


def test_injected_shift_in_recent_traffic_is_not_ok(setup, tiny_bundle, tmp_path):
    params, rows = setup
    rng = np.random.default_rng(0)
    recent = [{"id": f"S{i}", "text": SHIFT[i % len(SHIFT)] + " " + " ".join(rng.choice(EXTRA, 2))}
              for i in range(80)]
    recent += [{"id": f"R{i}", "text": r["text"]} for i, r in enumerate(rows[:10])]
    write_jsonl(tmp_path / "shift.jsonl", recent)
    res = run_continuous_eval(params, bundle_dir=tiny_bundle, recent_path=tmp_path / "shift.jsonl", track=False)
    assert res["drift"]["status"] != "ok", res["drift"]
    assert res["status"] != "ok"
    assert set(res["drift"]["fired"]) & {"label_shift", "confidence", "new_vocabulary"}
    assert any("drift" in r for r in res["reasons"])
    # no created_at in this traffic: the confidence plot falls back to one column per run
    assert res["confidence_periods"] == "by evaluation run"
    assert "mlflow_run_id" not in res


def test_resolve_bundle_order(setup, tiny_bundle, tmp_path, monkeypatch):
    """Continuous evaluation resolves its bundle through ticket_triage.bundles (the one order)."""
    params, _ = setup
    winner = Path(params["paths"]["train"]) / "winner"
    kw = {"tracking_cfg": params.get("tracking"), "local_winner": winner}
    assert resolve_bundle(tiny_bundle, **kw) == (Path(tiny_bundle), "given")
    monkeypatch.setenv("TRIAGE_BUNDLE", str(tiny_bundle))
    assert resolve_bundle(**kw)[1] == "env:TRIAGE_BUNDLE"
    monkeypatch.delenv("TRIAGE_BUNDLE")
    with pytest.raises(FileNotFoundError, match="champion"):  # empty registry, no winner
        resolve_bundle(**kw)
    import shutil

    shutil.copytree(tiny_bundle, tmp_path / "train" / "winner")
    path, note = resolve_bundle(**kw)
    assert path == tmp_path / "train" / "winner" and "no champion" in note


def test_read_tickets_file_and_feedback(tmp_path, setup):
    (tmp_path / "r.csv").write_text("id,text,created_at\n1,hello there,2025-01-01\n,second ticket,\n")
    rows = read_tickets_file(tmp_path / "r.csv")
    assert [r["id"] for r in rows] == ["1", "row1"] and rows[1]["created_at"] is None
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="text"):
        read_tickets_file(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="recent_path"):
        read_tickets_file(tmp_path / "missing.jsonl")
    fb = feedback_rows(tmp_path / "feedback")
    assert {r["id"] for r in fb} == {"T0001", "NEW1", "NEW2"}
    assert [r["overridden"] for r in fb if r["id"] == "T0001"] == [True]
    assert sum(r["audit"] for r in fb) == 2


class _FakeClf:
    labels = ["a", "b"]

    def __init__(self, with_emb: bool = True, normalize: bool = True):
        self.params = {"normalize": normalize}
        self.with_emb = with_emb
        self.embedded: list[str] = []
        self.proba_calls = 0

    def embed(self, texts):
        if not self.with_emb:
            return None
        self.embedded += list(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    def predict_proba_embeddings(self, emb):
        return np.tile([0.3, 0.7], (len(emb), 1))

    def predict_proba(self, texts):
        self.proba_calls += 1
        return np.tile([0.6, 0.4], (len(texts), 1))


def test_embedding_cache_embeds_each_text_once():
    clf = _FakeClf()
    cache = EmbeddingCache(clf)
    p = cache.predict_proba(["x", "yy"])
    assert p[0, 1] == pytest.approx(0.7) and clf.proba_calls == 0
    e = cache.embed(["yy", "x", "zzz", "x"])
    assert clf.embedded == ["x", "yy", "zzz"]
    assert e.shape == (4, 2) and e[0, 0] == 2 and e[2, 0] == 3
    assert cache.labels == ["a", "b"]  # delegated
    # normalize false: classification goes through the model itself
    plain = EmbeddingCache(_FakeClf(normalize=False))
    assert plain.predict_proba(["x"])[0, 0] == pytest.approx(0.6)
    none = EmbeddingCache(_FakeClf(with_emb=False))
    assert none.embed(["x"]) is None and none.predict_proba(["x"])[0, 0] == pytest.approx(0.6)


def test_reference_rows_reuse_the_bundles_training_embeddings(tmp_path):
    from types import SimpleNamespace

    from ticket_triage.config import ContinuousConfig
    from ticket_triage.monitoring.traffic import reference_rows

    clf = _FakeClf()
    nb = SimpleNamespace(texts=["t one", "t two", "t three"], emb=np.eye(3, 2, dtype=np.float32))
    triage = SimpleNamespace(classifier=EmbeddingCache(clf), neighbours=nb)
    rows, source = reference_rows(triage, ContinuousConfig(reference_max_rows=2), tmp_path, seed=0)
    assert len(rows) == 2 and {r["text"] for r in rows} <= set(nb.texts) and "bundle" in source
    emb = triage.classifier.embed([r["text"] for r in rows])
    assert clf.embedded == [] and emb.shape == (2, 2)  # no encoder pass for the reference
    # without stored embeddings (TF-IDF) the train split file is read
    write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}])
    rows, source = reference_rows(SimpleNamespace(classifier=EmbeddingCache(_FakeClf(with_emb=False)),
                                                  neighbours=None), ContinuousConfig(), tmp_path, seed=0)
    assert [r["id"] for r in rows] == ["a", "b"] and source.endswith("train.jsonl")
