"""Shared fixtures: the composed config, the small ticket fixture and a TF-IDF bundle trained
on it in a couple of seconds, once per test session, through the real library code."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import FIXTURES, ROOT, SHARED  # noqa: E402,F401  (one definition, in helpers)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# ONNX exports of the encoder (ticket_triage.models.onnx_encoder) go to a per-run folder,
# shared with the servers the tests start (they inherit the environment)
if "TRIAGE_CACHE_DIR" not in os.environ:
    os.environ["TRIAGE_CACHE_DIR"] = tempfile.mkdtemp(prefix="triage-cache-")
    atexit.register(shutil.rmtree, os.environ["TRIAGE_CACHE_DIR"], ignore_errors=True)  # ~110 MB of exports


@pytest.fixture(scope="session")
def base_params() -> dict:
    from ticket_triage.config import compose

    return compose(["model=tfidf_logreg", "sweep=single"], root=ROOT)


@pytest.fixture(scope="session")
def small_rows(base_params) -> list[dict]:
    """tests/fixtures/tickets_small.csv, ingested and cleaned (48 tickets, 4 topics)."""
    from ticket_triage.data import clean_tickets
    from ticket_triage.ingest.readers import read_tickets
    from ticket_triage.taxonomy import parse_taxonomy

    tickets, rejected, _ = read_tickets(FIXTURES / "tickets_small.csv", "csv",
                                        {"id": "id", "created_at": "created_at", "subject": "subject",
                                         "body": "body", "tags": "tags"})
    assert not rejected
    kept, _, _, _ = clean_tickets(tickets, parse_taxonomy(base_params["taxonomy"]), base_params["clean"])
    return kept


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, base_params, small_rows) -> Path:
    """A loadable model bundle (TF-IDF, fixed 0.85/0.6 thresholds) trained on the fixture."""
    import copy

    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    params = copy.deepcopy(base_params)
    params["thresholds"]["tune"] = False
    hp = {k: v for k, v in params["model"].items() if k != "family"}
    clf = build_classifier("tfidf_logreg", **hp)
    clf.fit([r["text"] for r in small_rows], [r["topic"] for r in small_rows], progress=False)
    return build_bundle(clf, small_rows, small_rows, params, tmp_path_factory.mktemp("bundle"),
                        model_version="tiny-test")


# ---- databases: the shared state runs on SQLite and on a real PostgreSQL ------------------
@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL 15 server for the whole session (tests/postgres.py). Without the Debian
    package the PostgreSQL cases skip here, and fail under CI (CI must test both databases)."""
    from postgres import PostgresServer

    try:
        server = PostgresServer().start()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty database URL: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("postgres_server").create_database()
