"""The review page in a real Chromium (Debian's /usr/bin/chromium through Playwright)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from ticket_triage.review.app import create_app, hash_token, mounted
from ticket_triage.review.store import ReviewStore
from ticket_triage.schema import Decision, Ticket
from ticket_triage.taxonomy import load_taxonomy

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=window.__xss=1><script>window.__xss=1</script>"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import uvicorn

    taxonomy = load_taxonomy(ROOT / "conf/taxonomy/banking77.yaml")
    db = tmp_path_factory.mktemp("review") / "review.sqlite"
    store = ReviewStore(f"sqlite:///{db}")
    seed = [("t-xss", f"Help {XSS} please", "P0", "refunds"),
            ("t2", "my transfer is pending", "P1", "transfers"),
            ("t3", "card did not arrive", "P2", "card_management"),
            ("t4", "what is the fee", "P3", "fees_and_charges")]
    for tid, text, urg, topic in seed:
        store.enqueue(Ticket(id=tid, text=text), Decision(
            topic=topic, confidence=0.55, band="review", urgency=urg, reason="below_review_threshold",
            alternatives=[{"topic": "top_ups", "p": 0.2}], rule_hits=[{"rule": f"r-{XSS}"}],
            explanation={"summary": XSS}, model_version="m1"))
    reviewers = {"alice": hash_token("alice-token", iterations=1000),
                 "bob": hash_token("bob-token", iterations=1000)}
    app = mounted(create_app(store, taxonomy, reviewers, secret_key="test-secret"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 15
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", store, taxonomy
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (do not run playwright install)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def sign_in(page, base, name, token):
    page.goto(f"{base}/review/")
    assert page.url.endswith("/review/login")
    page.fill("#reviewer-name", name)
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("#stats")


def ticket_id(page) -> str:
    return page.inner_text("#ticket-id")


def test_review_flow_in_chromium(served, browser):
    base, store, taxonomy = served
    errors: list[str] = []
    ctx_a = browser.new_context()
    page = ctx_a.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))

    # a wrong token is refused
    page.goto(f"{base}/review/login")
    page.fill("#reviewer-name", "alice")
    page.fill("#token", "nope")
    page.click("#sign-in")
    assert "wrong token" in page.inner_text("#login-error")

    sign_in(page, base, "alice", "alice-token")
    resp = page.goto(f"{base}/review/")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    # P0 first; the XSS payload is shown as text and never runs
    assert ticket_id(page) == "t-xss"
    assert XSS in page.inner_text("#ticket-text")
    assert page.locator("#ticket-text img").count() == 0
    assert page.locator("#ticket-text script").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.inner_text("#queue-size") == "4"

    # a second reviewer does not get the item alice holds
    ctx_b = browser.new_context()
    page_b = ctx_b.new_page()
    sign_in(page_b, base, "bob", "bob-token")
    assert ticket_id(page_b) == "t2"
    page.reload()
    assert ticket_id(page) == "t-xss"  # still alice's

    # confirm with a click
    page.click("#confirm")
    page.wait_for_selector("#flash")
    assert "Confirmed refunds" in page.inner_text("#flash")
    assert ticket_id(page) == "t3"  # t2 is bob's
    assert page.inner_text("#cleared-today") == "1"

    # correct with a number key: "2" is the second taxonomy topic
    second = taxonomy.topic_ids[1]
    with page.expect_navigation():
        page.keyboard.press("2")
    assert f"Corrected to {second}" in page.inner_text("#flash")
    last = store.corrections_since(0)[-1]
    assert (last.ticket_id, last.corrected_topic, last.action, last.reviewer) == (
        "t3", second, "correct", "alice")

    # undo with "u": t3 comes back and the correction is undone
    with page.expect_navigation():
        page.keyboard.press("u")
    assert "Undone" in page.inner_text("#flash") and ticket_id(page) == "t3"
    assert [c.ticket_id for c in store.corrections_since(0)] == ["t-xss"]

    # Enter confirms, "c" confirms
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert ticket_id(page) == "t4"
    with page.expect_navigation():
        page.keyboard.press("c")
    assert page.locator("#empty").count() == 1  # t2 is still bob's
    got = {c.ticket_id: (c.corrected_topic, c.action) for c in store.corrections_since(0)}
    assert got == {"t-xss": ("refunds", "confirm"), "t3": ("card_management", "confirm"),
                   "t4": ("fees_and_charges", "confirm")}

    # bob resolves his item by clicking another topic button
    page_b.click(f'button.topic[value="{taxonomy.topic_ids[0]}"]')
    page_b.wait_for_selector("#empty")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert errors == []
    ctx_a.close()
    ctx_b.close()


def test_post_without_csrf_token_is_refused(served, browser):
    base, store, _ = served
    ctx = browser.new_context()
    page = ctx.new_page()
    sign_in(page, base, "alice", "alice-token")
    status = page.evaluate("""async (base) => {
        const r = await fetch(base + '/review/undo', {method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=forged'});
        return r.status; }""", base)
    assert status == 403
    ctx.close()


def test_a_cookie_copied_before_sign_out_is_worthless_after(served, browser):
    """Issue 14, defect 6: the session cookie stayed valid for 12 h after logout."""
    base, _, _ = served
    ctx = browser.new_context()
    page = ctx.new_page()
    sign_in(page, base, "bob", "bob-token")
    stolen = ctx.cookies()
    assert any(c["name"] == "triage_review" for c in stolen)
    page.click("#logout")
    page.wait_for_url("**/review/login")
    thief = browser.new_context()
    thief.add_cookies(stolen)
    p2 = thief.new_page()
    p2.goto(f"{base}/review/")
    assert p2.url.endswith("/review/login")  # the replayed cookie no longer signs anyone in
    thief.close()
    ctx.close()
