"""`triage helpdesk run` / `sync --once` / `trust` as a user runs them: real processes, the
tiny model bundle, a fake Zendesk on 127.0.0.1. The worker is killed (-9) twice in the middle
of a sync -- once while polling, once with a note applied but not acknowledged -- and after
restarts every ticket has its draft exactly once."""

from __future__ import annotations

import copy
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fakes"))
from zendesk_server import FakeZendesk  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def _rows(n: int) -> list[dict]:
    with open(ROOT / "tests/fixtures/tickets_small.csv", newline="") as f:
        return list(csv.DictReader(f))[:n]


@pytest.fixture
def setup(tmp_path, base_params, tiny_bundle):
    zd = FakeZendesk(page_size=4).start()
    for i, r in enumerate(_rows(12)):
        zd.add_ticket(1000 + i, r["subject"], r["body"], updated_at=f"2026-01-02T10:00:{i:02d}Z")
    params = copy.deepcopy(base_params)
    params["review"]["db_url"] = f"sqlite:///{tmp_path / 'review.sqlite'}"
    params["review"]["taxonomy_path"] = str(ROOT / params["review"]["taxonomy_path"])
    params["helpdesk"].update({"base_url": zd.url, "timeout_s": 2, "audit_share": 0,
                               "outbox": {"max_attempts": 20, "backoff_base_s": 0.2,
                                          "backoff_max_s": 1, "lease_s": 1}})
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ZENDESK_EMAIL": "bot@example.com",
           "ZENDESK_API_TOKEN": "tok", "TRIAGE_LLM_ENABLED": "false"}
    env.pop("TRIAGE_REVIEW_DB_URL", None)
    yield zd, p, env, tmp_path, tiny_bundle
    zd.release.set()
    zd.stop()


def _cmd(action: str, params: Path, bundle: Path | None = None, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "ticket_triage.cli", "helpdesk", action, "--params", str(params)]
    if bundle is not None:
        cmd += ["--bundle", str(bundle)]
    return cmd + list(extra)


def _start(setup, *extra):
    zd, params, env, tmp, bundle = setup
    return subprocess.Popen(_cmd("run", params, bundle, "--interval", "0.2", "--health-file",
                                 str(tmp / "health.json"), *extra),
                            env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _kill9(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.slow
def test_worker_killed_mid_sync_twice_loses_nothing_and_applies_nothing_twice(setup):
    zd, params, env, tmp, bundle = setup
    # 1. killed while polling: the second export page never answers
    zd.stall_after("GET", r"/incremental/tickets/cursor\.json$", nth=2)
    proc = _start(setup)
    assert zd.stalled.wait(60), proc.stderr.read() if proc.poll() is not None else "no poll"
    _kill9(proc)
    assert all(zd.notes_of(1000 + i) == [] for i in range(12))
    zd.release.set()
    # 2. killed with the fifth note applied by Zendesk but never acknowledged
    zd.stall_after("PUT", r"/api/v2/tickets/\d+\.json$", nth=5)
    proc = _start(setup)
    assert zd.stalled.wait(60), proc.stderr.read() if proc.poll() is not None else "no write"
    _kill9(proc)
    assert sum(len(zd.notes_of(1000 + i)) for i in range(12)) == 5
    zd.release.set()
    zd._stall = None
    # 3. a clean run finishes the job; SIGTERM stops it gracefully
    proc = _start(setup)
    health = tmp / "health.json"

    def done() -> bool:
        try:
            h = json.loads(health.read_text())
        except (OSError, ValueError):
            return False
        return h.get("outbox", {}).get("zendesk") == {"sent": 24}

    deadline = time.time() + 60
    while not done() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert done(), (proc.poll(), health.read_text() if health.exists() else "no health file")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    h = json.loads(health.read_text())
    assert h["status"] == "stopped" and h["pid"] == proc.pid
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["msg"] == "stopping" and r.get("signal") == "SIGTERM" for r in logs)
    assert any(r["msg"] == "pass" for r in logs)
    assert "drafted" in out  # the summary
    for i in range(12):
        notes = zd.notes_of(1000 + i)
        assert len(notes) == 1, (1000 + i, notes)  # nothing lost, nothing applied twice
        assert any(t.startswith("triage_draft_") for t in zd.tags_of(1000 + i))
    import sqlalchemy as sa

    from ticket_triage.storage import helpdesk_drafts, helpdesk_outbox, make_engine

    eng = make_engine(f"sqlite:///{tmp / 'review.sqlite'}")
    with eng.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(helpdesk_drafts)).scalar() == 12
        attempts = [r.attempts for r in c.execute(sa.select(helpdesk_outbox))]
    assert len(attempts) == 24 and max(attempts) >= 2  # the cut-off note was retried, once posted
    eng.dispose()


@pytest.mark.slow
def test_sync_once_then_trust_report(setup):
    zd, params, env, tmp, bundle = setup
    r = subprocess.run(_cmd("sync", params, bundle, "--once", "--health-file",
                            str(tmp / "h.json")), env=env, cwd=tmp, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "zendesk: polling" in r.stderr and "write(s) delivered" in r.stderr  # progress
    line = [x for x in r.stdout.splitlines() if x.strip().startswith("zendesk")][0].split()
    assert line[0] == "zendesk" and line[1] == "12" and int(line[3]) == 12  # received, drafted
    r = subprocess.run(_cmd("trust", params, None), env=env, cwd=tmp, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "per-label trust" in r.stdout and "lower" in r.stdout
    r = subprocess.run(_cmd("sync", params, bundle), env=env, cwd=tmp, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "--once" in r.stderr
