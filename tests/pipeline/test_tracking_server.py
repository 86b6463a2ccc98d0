"""MLflow against a tracking server with a PostgreSQL backend store (the multi-machine setup in
the README, "When one machine is not enough"): `mlflow server` is really started on a free
port over a fresh database of the test PostgreSQL server, a run is logged through HTTP with
the project's tracking helpers, and the run is read back from PostgreSQL itself."""

from __future__ import annotations

import os

import pytest
from helpers import start_mlflow_server, stop_process_group


@pytest.mark.slow  # the server migrates a fresh database at start (~20-60 s on 2 busy cores)
def test_runs_logged_through_an_mlflow_server_land_in_postgresql(tmp_path, postgres_server,
                                                                  monkeypatch):
    import sqlalchemy as sa

    db_url = postgres_server.create_database("mlflow_" + os.urandom(4).hex())
    proc, uri = start_mlflow_server(db_url, tmp_path / "mlflow-server.log",
                                    "--artifacts-destination", str(tmp_path / "artifacts"),
                                    env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        import mlflow

        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("scale-out-check")
        with mlflow.start_run(run_name="through-the-server") as run:
            mlflow.log_param("engine", "spark")
            mlflow.log_metric("tickets_per_s", 123.0)
            (tmp_path / "note.txt").write_text("artifact through the server")
            mlflow.log_artifact(str(tmp_path / "note.txt"))
        got = mlflow.get_run(run.info.run_id)
        assert got.data.metrics["tickets_per_s"] == 123.0
        # stored by the server in its artifact destination
        assert any((tmp_path / "artifacts").rglob("note.txt"))

        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                name = conn.execute(sa.text("SELECT name FROM runs WHERE run_uuid = :r"),
                                    {"r": run.info.run_id}).scalar()
                value = conn.execute(sa.text(
                    "SELECT value FROM latest_metrics WHERE run_uuid = :r AND key = 'tickets_per_s'"),
                    {"r": run.info.run_id}).scalar()
        finally:
            engine.dispose()
        assert name == "through-the-server" and value == 123.0
        mlflow.set_tracking_uri(previous)  # later tests in this process use their own store
    finally:
        stop_process_group(proc)
