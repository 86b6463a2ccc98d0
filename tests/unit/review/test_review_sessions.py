"""Review page sign-in (issue 14, defect 6): server-side sessions revoked on logout, sign-in
throttled; and the taxonomy path resolved against the project root (503 under ``make serve``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ticket_triage.review.app import create_app, hash_token, mounted
from ticket_triage.review.sessions import Sessions, SignInThrottle
from ticket_triage.review.store import ReviewStore
from ticket_triage.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def client(tmp_path):
    app = create_app(ReviewStore(f"sqlite:///{tmp_path / 'r.sqlite'}"),
                     load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml"),
                     {"alice": hash_token("alice-token", iterations=1000)}, secret_key="s3cret",
                     max_sign_in_failures=3, sign_in_window_s=600)
    with TestClient(mounted(app), base_url="http://testserver") as c:
        yield c


def csrf(client, path="/review/login") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def sign_in(client, token="alice-token", name="alice"):
    return client.post("/review/login", data={"reviewer": name, "token": token, "csrf": csrf(client)},
                       follow_redirects=False)


def test_cookie_is_worthless_after_logout(client):
    assert sign_in(client).status_code == 303
    stolen = dict(client.cookies)
    assert client.get("/review/stats.json").status_code == 200
    token = csrf(client, "/review/")
    assert client.post("/review/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    client.cookies.clear()
    for k, v in stolen.items():  # an attacker replays the cookie copied before logout
        client.cookies.set(k, v)
    assert client.get("/review/stats.json").status_code == 401
    r = client.get("/review/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/review/login")


def test_sign_in_attempts_are_throttled(client):
    for _ in range(3):
        assert sign_in(client, token="wrong").status_code == 401
    r = sign_in(client)  # even the right token waits now
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in r.text


def test_sessions_and_throttle_units():
    now = [1000.0]
    s = Sessions(60, clock=lambda: now[0])
    sid = s.open("alice")
    assert s.reviewer(sid) == "alice" and s.reviewer("forged") is None and s.reviewer(None) is None
    now[0] += 61
    assert s.reviewer(sid) is None  # expired server-side, whatever the cookie says
    sid = s.open("bob")
    s.close(sid)
    assert s.reviewer(sid) is None
    t = SignInThrottle(2, 100, clock=lambda: now[0])
    t.failed("ip:1")
    assert t.retry_after("ip:1") == 0
    t.failed("ip:1")
    assert 0 < t.retry_after("ip:1", "name:x") <= 100
    now[0] += 101
    assert t.retry_after("ip:1") == 0


def test_review_taxonomy_path_is_anchored_at_the_project_root(monkeypatch):
    from ticket_triage.service.mounts import _taxonomy_path

    monkeypatch.chdir(ROOT / "serving")  # where `make serve` runs bentoml
    path = Path(_taxonomy_path({"taxonomy_path": "conf/taxonomy/banking77.yaml"}))
    assert path.is_absolute() and path.is_file()
    assert _taxonomy_path({"taxonomy_path": str(path)}) == str(path)
