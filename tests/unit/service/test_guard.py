"""The classify API's guard (issue 14, defect 7): optional API key (required beyond loopback),
JSON only (415), caller identity stamped by the server, review quota per caller."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ticket_triage.service.guard import ApiGuard, ReviewQuota, is_loopback, load_keys

KEY = "k" * 32


async def echo(scope, receive, send):
    """The app behind the guard: echoes the identity headers it was given."""
    h = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps({"client": h.get("x-triage-client"), "auth": h.get("x-triage-auth")}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def call(guard, path="/classify", *, client=("127.0.0.1", 5000), headers=None, body=b"{}", method="POST"):
    async def go():
        transport = httpx.ASGITransport(app=guard, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            return await c.request(method, path, content=body,
                                   headers={"content-type": "application/json", **(headers or {})})
    return asyncio.run(go())


def test_without_a_key_only_loopback_may_classify():
    guard = ApiGuard(echo, keys=[])
    assert call(guard).status_code == 200
    assert call(guard, client=("::1", 1)).status_code == 200
    r = call(guard, client=("10.1.2.3", 5000))
    assert r.status_code == 403 and "TRIAGE_API_KEYS" in r.json()["error"]
    assert call(guard, "/classify_batch", client=("192.168.0.9", 1)).status_code == 403
    assert call(guard, "/livez", client=("10.1.2.3", 1), method="GET").status_code == 200  # health stays open


def test_with_a_key_it_is_required_from_everyone():
    guard = ApiGuard(echo, keys=load_keys({"TRIAGE_API_KEYS": f"{KEY}, {'z' * 20}"}))
    r = call(guard)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert call(guard, headers={"authorization": "Bearer wrong-key-wrong-key"}).status_code == 401
    ok = call(guard, client=("10.1.2.3", 1), headers={"authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200 and ok.json()["auth"] == "1" and ok.json()["client"].startswith("key:")
    assert call(guard, headers={"x-api-key": "z" * 20}).status_code == 200
    # /info/ready: open, but a wrong key is refused and only a right key marks the caller authenticated
    assert call(guard, "/info/ready", method="GET").json()["auth"] == "0"
    assert call(guard, "/info/ready", method="GET", headers={"x-api-key": KEY}).json()["auth"] == "1"
    assert call(guard, "/info/ready", method="GET", headers={"x-api-key": "nope-nope-nope-nope"}).status_code == 401


def test_identity_headers_cannot_be_forged():
    guard = ApiGuard(echo, keys=[])
    r = call(guard, headers={"x-triage-auth": "1", "x-triage-client": "key:admin"})
    assert r.json() == {"client": "ip:127.0.0.1", "auth": "0"}


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""])
def test_non_json_bodies_get_415(ctype):
    guard = ApiGuard(echo, keys=[])
    async def go():
        transport = httpx.ASGITransport(app=guard, client=("127.0.0.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            return await c.post("/classify", content=b'{"body": "x"}',
                                headers={"content-type": ctype} if ctype else {})
    r = asyncio.run(go())
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert call(guard, headers={"content-type": "application/json; charset=utf-8"}).status_code == 200


def test_short_keys_are_refused():
    with pytest.raises(ValueError, match="shorter than 16"):
        load_keys({"TRIAGE_API_KEYS": "abc"})
    assert load_keys({}) == []


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.9.1")
    assert not is_loopback("10.0.0.1") and not is_loopback("") and not is_loopback("example.com")


def test_review_quota_refills():
    now = [0.0]
    q = ReviewQuota(60, clock=lambda: now[0])
    assert q.wait("a") == 0
    q.spend("a", 60)
    assert q.wait("a") == pytest.approx(1.0)  # one item a second
    assert q.wait("b") == 0  # per caller
    q.spend("a", 30)  # queued anyway (the bucket goes below zero): the caller waits longer
    assert q.wait("a") == pytest.approx(31.0)
    now[0] += 31
    assert q.wait("a") == 0
    assert ReviewQuota(0).wait("x") == 0  # 0 = no limit
