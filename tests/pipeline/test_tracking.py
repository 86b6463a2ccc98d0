"""What a user sees in MLflow after train -> evaluate -> promote (on the small fixture, in a
temporary store): a training experiment, datasets logged as inputs with their DVC md5,
descriptions on runs and model versions, the champion/challenger comparison as a run, and a
pyfunc whose environment rebuilds without this project installed."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

pytestmark = pytest.mark.slow


def _md5(path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, base_params):
    """The stages' library functions once, into a temporary MLflow store."""
    from ticket_triage import tracking
    from ticket_triage.stages import run_evaluate, run_promote
    from ticket_triage.stages import run_clean, run_ingest, run_split
    from ticket_triage.training import run_sweep

    tmp = tmp_path_factory.mktemp("tracked")
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlruns.db"
    p = copy.deepcopy(base_params)
    p["data"] = {"name": "small", "format": "csv", "path": str(FIXTURES / "tickets_small.csv"),
                 "mapping": {"id": "id", "created_at": "created_at", "subject": "subject", "body": "body",
                             "tags": "tags"}}
    p["paths"] = {k: str(tmp / k) for k in ("ingest", "clean", "split", "train", "evaluate", "promote")}
    p["paths"].update({"heldout": str(tmp / "heldout.jsonl"), "feedback": str(tmp / "feedback")})
    p["split"]["heldout_size"] = 6
    p["thresholds"]["tune"] = False
    p["tracking"] = {"experiment": "ticket-triage"}
    try:
        run_ingest(p, metrics_path=tmp / "m" / "i.json")
        run_clean(p, metrics_path=tmp / "m" / "c.json", progress=False)
        run_split(p, metrics_path=tmp / "m" / "s.json")
        sweep = run_sweep(p, metrics_path=tmp / "m" / "t.json", progress=False)
        ev = run_evaluate(p, metrics_path=tmp / "m" / "e.json", plots_dir=tmp / "plots")
        first = run_promote(p)
        ev2 = run_evaluate(p, metrics_path=tmp / "m" / "e2.json", plots_dir=tmp / "plots2")
        second = run_promote(p)
        tracking.setup(p["tracking"])
        yield {"params": p, "tmp": tmp, "sweep": sweep, "ev": ev, "ev2": ev2, "promotions": [first, second]}
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def _runs(stage):
    import mlflow

    exp = mlflow.get_experiment_by_name("ticket-triage")
    return [r for r in mlflow.search_runs([exp.experiment_id], output_format="list")
            if r.data.tags.get("stage") == stage]


def test_training_experiment_not_genai(tracked):
    import mlflow

    exp = mlflow.get_experiment_by_name("ticket-triage")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "train-<sweep>" in exp.tags["mlflow.note.content"]


def test_datasets_logged_with_source_digest_and_split(tracked):
    split = Path(tracked["params"]["paths"]["split"])
    cand = [r for r in _runs("train") if "mlflow.parentRunId" in r.data.tags]
    assert cand
    for r in cand:
        inputs = {i.tags[0].value: i.dataset for i in r.inputs.dataset_inputs}
        assert set(inputs) == {"training", "validation"}
        assert inputs["training"].digest == _md5(split / "train.jsonl")
        assert inputs["validation"].digest == _md5(split / "validation.jsonl")
        assert json.loads(inputs["training"].source)["uri"] == (split / "train.jsonl").resolve().as_uri()
        assert inputs["training"].name == "small-train"
        assert json.loads(inputs["training"].profile)["num_rows"] == len((split / "train.jsonl").read_text().splitlines())
    ev = _runs("evaluate")
    assert {i.tags[0].value for r in ev for i in r.inputs.dataset_inputs} == {"test", "heldout"}


def test_runs_and_versions_are_described(tracked):
    from mlflow import MlflowClient

    for stage in ("train", "evaluate", "promote"):
        for r in _runs(stage):
            assert len(r.data.tags.get("mlflow.note.content", "")) > 40, (stage, r.info.run_name)
    client = MlflowClient()
    assert "champion" in client.get_registered_model("ticket-triage").description
    v = client.get_model_version("ticket-triage", tracked["ev"]["registered_version"])
    assert "held-out accuracy" in v.description and tracked["sweep"].winner in v.description
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    names = [r.info.run_name for r in _runs("train")]
    assert all(n.startswith("train-") and n.endswith(sha or "nogit") for n in names), names


def test_promotion_compares_champion_and_challenger(tracked):
    first, second = tracked["promotions"]
    runs = sorted(_runs("promote"), key=lambda r: r.info.start_time)
    assert len(runs) == 2
    assert runs[0].data.tags["promoted"] == "true" and runs[0].data.tags["previous_champion"] == "None"
    later = runs[1].data
    assert later.tags["challenger_version"] == second["challenger_version"]
    assert {"challenger/heldout_accuracy", "champion/heldout_accuracy"} <= set(later.metrics)
    assert later.tags["mlflow.note.content"].startswith(second["reason"])
    assert runs[1].info.run_name == f"promote-v{second['challenger_version']}-vs-v{first['champion_version']}-" \
        + runs[1].info.run_name.split("-")[-1]


def test_pyfunc_environment_rebuilds_without_the_project(tracked, tmp_path):
    """requirements.txt pins installed, index-resolvable versions (no 'ticket-triage'), and the
    model loads and predicts in a fresh interpreter from its own copy of the package."""
    import mlflow
    from importlib.metadata import version

    uri = f"models:/ticket-triage/{tracked['ev']['registered_version']}"
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(tmp_path / "model")))
    reqs = [line for line in (local / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert not any(line.split("==")[0].startswith("ticket") for line in reqs)
    for line in reqs:
        name, _, pin = line.partition("==")
        assert pin, f"{line} is not an exact pin"
        assert pin == version(name).split("+")[0], line
    assert {"scikit-learn", "numpy", "pandas", "mlflow", "onnxruntime"} <= {r.split("==")[0] for r in reqs}
    assert (local / "code" / "ticket_triage" / "decision" / "triage.py").is_file()
    mlmodel = (local / "MLmodel").read_text()
    assert "signature:" in mlmodel and "saved_input_example_info" in mlmodel
    script = ("import json, sys, mlflow, pandas as pd\n"
              f"m = mlflow.pyfunc.load_model({str(local)!r})\n"
              "import ticket_triage\n"
              "out = m.predict(pd.DataFrame([{'subject': '', 'body': 'my transfer is still pending'}]))\n"
              "print(json.dumps({'file': ticket_triage.__file__, 'topic': out['topic'][0]}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(local)), got
    assert got["topic"] == "transfers"


def test_setup_follows_the_config_each_time_but_keeps_the_users_environment(tmp_path, monkeypatch):
    """MLflow exports the URIs it is given into os.environ; a second setup() with another store must
    not be pinned to the first by that write (the registry stayed at the first database and a
    version was registered there), while a URI the user exported wins every time."""
    import mlflow

    from ticket_triage import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(tracking, "_WRITTEN", {})
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    assert tracking.setup({"uri": a, "experiment": "x"}) == a
    assert mlflow.get_registry_uri() == a
    assert tracking.setup({"uri": b, "experiment": "x"}) == b
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (b, b)

    user, user_registry = f"sqlite:///{tmp_path}/user.db", f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", user_registry)
    for cfg_uri in (a, b):
        assert tracking.setup({"uri": cfg_uri, "experiment": "x"}) == user
        assert mlflow.get_registry_uri() == user_registry
