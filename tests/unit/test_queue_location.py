"""Where the review queue and the helpdesk outbox live (issue 16, item 5): the project root
under `make serve`, a documented data folder for a served Bento -- never inside the Bento
store -- and `TRIAGE_HOME` to make a served Bento write the project's queue, so its
corrections reach `triage feedback export`."""

from __future__ import annotations

from pathlib import Path

from ticket_triage.review.store import ReviewStore
from ticket_triage.storage import anchored_sqlite_url, data_home

ROOT = Path(__file__).resolve().parents[2]


def _fake_bento(tmp_path: Path) -> Path:
    """The layout `bentoml build` makes: <store>/bentos/<name>/<tag>/{bento.yaml, src/...}."""
    bento = tmp_path / "bentoml" / "bentos" / "ticket-triage" / "abc123"
    (bento / "src" / "conf").mkdir(parents=True)
    (bento / "bento.yaml").write_text("service: serving.service:TicketTriage\n")
    (bento / "src" / "conf" / "config.yaml").write_text("defaults: []\n")
    return bento


def test_served_bento_never_writes_its_queue_inside_the_bento_store(tmp_path, monkeypatch):
    bento = _fake_bento(tmp_path)
    monkeypatch.chdir(bento / "src")  # a Bento's working directory
    monkeypatch.delenv("TRIAGE_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    url = anchored_sqlite_url("sqlite:///var/review.sqlite")
    path = Path(url[len("sqlite:///"):])
    assert not str(path).startswith(str(tmp_path / "bentoml"))
    assert path == (tmp_path / "xdg" / "ticket-triage" / "var" / "review.sqlite").resolve()
    assert data_home() == tmp_path / "xdg" / "ticket-triage"


def test_make_serve_uses_the_project_root(monkeypatch):
    monkeypatch.delenv("TRIAGE_HOME", raising=False)
    monkeypatch.chdir(ROOT / "serving")
    assert anchored_sqlite_url("sqlite:///var/review.sqlite") == \
        f"sqlite:///{(ROOT / 'var' / 'review.sqlite').resolve()}"


def test_a_served_bentos_corrections_reach_feedback_export(tmp_path, monkeypatch):
    """The Bento (TRIAGE_HOME=<project>) records a helpdesk agent's correction; `triage
    feedback export`, run in the project, exports it."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("TRIAGE_HOME", str(project))
    monkeypatch.delenv("TRIAGE_REVIEW_DB_URL", raising=False)
    bento = _fake_bento(tmp_path)
    monkeypatch.chdir(bento / "src")
    served = ReviewStore.from_config({"db_url": "sqlite:///var/review.sqlite"})
    served.record_feedback(ticket_id="4711", predicted_topic="card_management",
                           predicted_urgency="P3", corrected_topic="card_payments",
                           corrected_urgency=None, reviewer="zendesk:42", source="helpdesk:zendesk",
                           text="my card payment was declined")
    assert not list((bento).rglob("*.sqlite"))
    served.engine.dispose()
    monkeypatch.chdir(ROOT)  # the project's CLI, with its params.yaml
    from ticket_triage.cli import main

    out = tmp_path / "feedback"
    assert main(["feedback", "export", "--out", str(out)]) == 0
    exported = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert "4711" in exported and "card_payments" in exported
