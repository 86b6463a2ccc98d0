"""The review page: a small Starlette app, server-rendered with Jinja2 (autoescape on).

``create_app(store, taxonomy, reviewers)`` returns an ASGI app whose routes are relative to
where it is mounted (the BentoML service mounts it at ``/review``; ``serve_review`` mounts it
at ``/review`` too). Links are built from the ASGI ``root_path``, so any mount point works.

Security: reviewers sign in with a personal token, checked against a stored hash with
``hmac.compare_digest``; failed sign-ins are throttled per client address and per reviewer name
(:class:`SignInThrottle`: 429 with ``Retry-After``); sessions are server-side (:class:`Sessions`:
the signed, ``HttpOnly``, ``SameSite=Strict`` cookie only carries a random session id, which
logout revokes, so a copied cookie is worthless after logout or expiry);
every POST carries a per-session CSRF token (and a cross-origin ``Origin`` is refused);
responses carry a CSP without inline script (``script-src 'self'``), ``nosniff``,
``frame-ancestors 'none'``. Ticket text is attacker-controlled and is always escaped.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

from ticket_triage.config import DEFAULT_REVIEW_DB_URL, ReviewConfig
from ticket_triage.review.sessions import Sessions, SignInThrottle
from ticket_triage.review.store import ReviewError, ReviewStore
from ticket_triage.schema import URGENCIES

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ticket_triage.taxonomy import Taxonomy

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
TEMPLATE_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"
TOPIC_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
PBKDF2_ITERATIONS = 100_000

SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self'; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make POST Origin "null"
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}


# ---- reviewer tokens -------------------------------------------------------------------
def hash_token(token: str, *, iterations: int = PBKDF2_ITERATIONS, salt: str | None = None) -> str:
    """Hash a reviewer token for config: ``pbkdf2_sha256$<iterations>$<salt>$<hex>``."""
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac("sha256", token.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_token(token: str, stored: str) -> bool:
    """Check ``token`` against a stored hash (``pbkdf2_sha256$...`` or ``sha256:<hex>``)."""
    if stored.startswith("pbkdf2_sha256$"):
        try:
            _, iters, salt, digest = stored.split("$", 3)
            got = hashlib.pbkdf2_hmac("sha256", token.encode(), salt.encode(), int(iters)).hex()
        except ValueError:
            return False
        return hmac.compare_digest(got, digest)
    if stored.startswith("sha256:"):
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), stored[7:])
    return False


def load_reviewers(configured: Mapping[str, str] | None = None,
                   env_var: str | None = "TRIAGE_REVIEWERS") -> dict[str, str]:
    """Reviewer name -> token hash, from config plus ``$TRIAGE_REVIEWERS`` (``name=hash,...``)."""
    out = {str(k): str(v) for k, v in (configured or {}).items() if v}
    raw = os.environ.get(env_var, "") if env_var else ""
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, h = part.partition("=")
        if not sep or not name or not h:
            raise ValueError(f"${env_var}: entry {part!r} is not 'name=hash'; create hashes "
                             "with ticket_triage.review.app.hash_token(token)")
        out[name.strip()] = h.strip()
    for name, h in out.items():
        if not (h.startswith("pbkdf2_sha256$") or h.startswith("sha256:")):
            raise ValueError(f"reviewer {name!r}: token hash must start with 'pbkdf2_sha256$' or "
                             "'sha256:'; never store the plain token")
    return out


# ---- app -------------------------------------------------------------------------------
class _SecurityHeaders:
    """Pure ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.encode() not in present:
                        headers.append((k.encode(), v.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _base(request: "Request") -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def create_app(store: ReviewStore, taxonomy: "Taxonomy | list[str]",
               reviewers: Mapping[str, str], *, secret_key: str | None = None,
               cookie_secure: bool = False, session_max_age_s: int = 12 * 3600,
               title: str = "Ticket review", max_sign_in_failures: int = 5,
               sign_in_window_s: float = 900.0) -> "Starlette":
    """The review app. ``reviewers`` maps name -> token hash (see :func:`hash_token`).

    ``taxonomy`` is a :class:`~ticket_triage.taxonomy.Taxonomy` (or a plain list of topic
    ids); its first ten topics get the number keys 1-9, 0. Without ``secret_key`` a random
    one is made, so sessions end when the process restarts.
    """
    import jinja2
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    if not reviewers:
        raise ValueError("no reviewers configured: add review.reviewers (name: token hash) or "
                         "set TRIAGE_REVIEWERS=name=hash; hashes come from hash_token(token)")
    reviewers = load_reviewers(reviewers, env_var=None)  # validates hash formats
    dummy_hash = hash_token(secrets.token_hex(16))  # for unknown names (constant-time-ish)
    sessions = Sessions(session_max_age_s)
    throttle = SignInThrottle(max_sign_in_failures, sign_in_window_s)
    topics = list(taxonomy.topic_ids) if hasattr(taxonomy, "topic_ids") else list(taxonomy)
    descriptions = ({t.id: t.description for t in taxonomy.topics}
                    if hasattr(taxonomy, "topics") else {})
    if not secret_key:
        log.warning("review app: no secret key configured; sessions end on restart "
                    "(set review.secret_env's variable)")
        secret_key = secrets.token_urlsafe(32)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    static_version = str(int(max(p.stat().st_mtime for p in STATIC_DIR.iterdir())))

    def render(request: "Request", name: str, status: int = 200, **ctx: Any) -> "Response":
        ctx.update(base=_base(request), title=title, csrf=_csrf(request),
                   static_version=static_version,
                   reviewer=request.session.get("reviewer"),
                   flash=request.session.pop("flash", None))
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    def _csrf(request: "Request") -> str:
        tok = request.session.get("csrf")
        if not tok:
            tok = secrets.token_urlsafe(32)
            request.session["csrf"] = tok
        return tok

    async def _checked_form(request: "Request") -> Any:
        origin = request.headers.get("origin")
        if origin and origin != "null":
            if urlsplit(origin).netloc != request.headers.get("host", ""):
                raise _Forbidden("cross-origin request refused")
        elif origin == "null":
            raise _Forbidden("cross-origin request refused")
        form = await request.form()
        sent = str(form.get("csrf", ""))
        expected = request.session.get("csrf", "")
        if not expected or not hmac.compare_digest(sent, expected):
            raise _Forbidden("missing or wrong CSRF token; reload the page and try again")
        return form

    def _redirect(request: "Request", path: str = "/") -> "Response":
        return RedirectResponse(_base(request) + path, status_code=303)

    def _reviewer(request: "Request") -> str | None:
        name = sessions.reviewer(request.session.get("sid"))
        return name if name in reviewers and name == request.session.get("reviewer") else None

    async def queue(request: "Request") -> "Response":
        who = _reviewer(request)
        if who is None:
            return _redirect(request, "/login")
        item = store.claim_next(who)
        stats = store.stats()
        alternatives, topic_buttons = [], []
        if item is not None:
            alternatives = [a for a in (item.decision.alternatives or [])
                            if isinstance(a, dict) and a.get("topic") != item.topic][:3]
        for i, t in enumerate(topics):
            topic_buttons.append({"id": t, "key": TOPIC_KEYS[i] if i < len(TOPIC_KEYS) else "",
                                  "description": descriptions.get(t, ""),
                                  "proposed": item is not None and t == item.topic})
        return render(request, "review.html", item=item, stats=stats, topics=topic_buttons,
                      alternatives=alternatives, urgencies=list(URGENCIES),
                      explanation=_flat_explanation(item.decision.explanation) if item else [],
                      rule_hits=_rule_names(item.decision.rule_hits) if item else [],
                      age=_age(item.created_at, store.clock()) if item else "")

    async def login_page(request: "Request") -> "Response":
        return render(request, "login.html", error=None)

    async def login(request: "Request") -> "Response":
        form = await _checked_form(request)
        name = str(form.get("reviewer", "")).strip()
        token = str(form.get("token", ""))
        keys = ("ip:" + (request.client.host if request.client else "?"), "name:" + name[:100])
        wait = throttle.retry_after(*keys)
        if wait > 0:
            resp = render(request, "login.html", status=429,
                          error=f"Too many failed sign-ins; try again in {int(wait) + 1} s.")
            resp.headers["retry-after"] = str(int(wait) + 1)
            return resp
        stored = reviewers.get(name)
        # Verify against a dummy hash for unknown names so timing does not reveal them.
        ok = verify_token(token, stored or dummy_hash) and stored is not None
        if not ok:
            throttle.failed(*keys)
            return render(request, "login.html", status=401,
                          error="Unknown reviewer or wrong token.")
        throttle.succeeded(keys[1])
        sessions.close(request.session.get("sid"))
        request.session.clear()
        request.session["sid"] = sessions.open(name)
        request.session["reviewer"] = name
        request.session["csrf"] = secrets.token_urlsafe(32)  # rotate on sign-in
        return _redirect(request)

    async def logout(request: "Request") -> "Response":
        await _checked_form(request)
        who = _reviewer(request)
        cur = store.current(who) if who else None
        if cur is not None:
            store.release(cur.id, who)
        sessions.close(request.session.get("sid"))  # the cookie is worthless from now on
        request.session.clear()
        return _redirect(request, "/login")

    async def resolve(request: "Request") -> "Response":
        who = _reviewer(request)
        if who is None:
            return _redirect(request, "/login")
        form = await _checked_form(request)
        topic = str(form.get("topic", ""))
        urgency = str(form.get("urgency", "")) or None
        if topic not in topics:
            request.session["flash"] = f"Unknown topic {topic!r}; pick one of the buttons."
            return _redirect(request)
        try:
            c = store.resolve(int(request.path_params["item_id"]), who, topic, urgency)
            request.session["flash"] = (f"Confirmed {c.corrected_topic}." if c.action == "confirm"
                                        else f"Corrected to {c.corrected_topic}.")
        except ReviewError as exc:
            request.session["flash"] = str(exc)
        return _redirect(request)

    async def undo(request: "Request") -> "Response":
        who = _reviewer(request)
        if who is None:
            return _redirect(request, "/login")
        await _checked_form(request)
        try:
            item = store.undo(who)
            request.session["flash"] = f"Undone: ticket {item.ticket_id} is back."
        except ReviewError as exc:
            request.session["flash"] = str(exc)
        return _redirect(request)

    async def stats(request: "Request") -> "Response":
        if _reviewer(request) is None:
            return JSONResponse({"error": "sign in first"}, status_code=401)
        s = store.stats()
        return JSONResponse({"queue_size": s.queue_size, "claimed": s.claimed,
                             "cleared_today": s.cleared_today,
                             "median_seconds": s.median_seconds,
                             "cleared_per_day": s.cleared_per_day})

    async def forbidden(request: "Request", exc: Exception) -> "Response":
        return HTMLResponse(f"<!doctype html><title>Forbidden</title><p>{_esc(str(exc))}</p>",
                            status_code=403)

    routes = [
        Route("/", queue, methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/items/{item_id:int}/resolve", resolve, methods=["POST"]),
        Route("/undo", undo, methods=["POST"]),
        Route("/stats.json", stats, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret_key, session_cookie="triage_review",
                   max_age=session_max_age_s, same_site="strict", https_only=cookie_secure),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={_Forbidden: forbidden})
    app.state.store = store
    app.state.sessions, app.state.throttle = sessions, throttle
    return app


class _Forbidden(Exception):
    pass


def _esc(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def _age(created_at: float, now: float) -> str:
    s = max(0, int(now - created_at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit}"
    return f"{s} s"


def _flat_explanation(expl: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Explanation dict -> (key, value) rows for display (values stringified, escaped later)."""
    rows: list[tuple[str, str]] = []
    if isinstance(expl, dict):
        for k, v in expl.items():
            if isinstance(v, dict):
                rows += _flat_explanation(v, f"{prefix}{k}.")
            elif isinstance(v, list):
                parts = []
                for x in v[:5]:
                    if isinstance(x, dict):
                        parts.append(", ".join(f"{a}={b}" for a, b in list(x.items())[:4]))
                    else:
                        parts.append(str(x))
                rows.append((f"{prefix}{k}", " | ".join(parts)))
            else:
                rows.append((f"{prefix}{k}", str(v)))
    elif expl:
        rows.append(("explanation", str(expl)))
    return rows[:20]


def _rule_names(hits: Any) -> list[str]:
    out = []
    for h in hits or []:
        if isinstance(h, dict):
            out.append(str(h.get("rule") or h.get("name") or h.get("id") or h))
        else:
            out.append(str(h))
    return out


def app_from_config(cfg: "Mapping[str, Any] | ReviewConfig", *, taxonomy_path: str | None = None,
                    store: ReviewStore | None = None) -> "Starlette":
    """Build the app from the ``review`` section of params.yaml (used by the service too)."""
    from ticket_triage.taxonomy import load_taxonomy

    cfg = ReviewConfig.from_dict(cfg)
    tax_path = taxonomy_path or cfg.taxonomy_path
    if not tax_path:
        raise ValueError("review: no taxonomy path; pass taxonomy_path or set review.taxonomy_path")
    secret_env = cfg.secret_env or ReviewConfig.secret_env
    return create_app(store or ReviewStore.from_config(cfg), load_taxonomy(tax_path),
                      load_reviewers(cfg.reviewers or {}, cfg.reviewers_env or ReviewConfig.reviewers_env),
                      secret_key=os.environ.get(secret_env),
                      cookie_secure=bool(cfg.cookie_secure),
                      session_max_age_s=int(cfg.session_max_age_s))


def mounted(app: Any, prefix: str = "/review") -> "Starlette":
    """``app`` mounted at ``prefix`` in a parent app whose ``/`` redirects there."""
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Mount, Route

    async def root(_request: Any) -> Any:
        return RedirectResponse(prefix + "/", status_code=307)

    return Starlette(routes=[Route("/", root), Mount(prefix, app=app)])


def serve_review(host: str = "127.0.0.1", port: int = 8080,
                 db_url: str = DEFAULT_REVIEW_DB_URL, taxonomy_path: str = "",
                 *, reviewers: Mapping[str, str] | None = None,
                 reviewers_env: str = "TRIAGE_REVIEWERS", secret_env: str = "TRIAGE_REVIEW_SECRET",
                 claim_ttl_s: float = 600, cookie_secure: bool = False) -> None:
    """Serve the review page standalone at ``http://host:port/review/`` (blocks)."""
    import uvicorn

    from ticket_triage.taxonomy import load_taxonomy

    if not taxonomy_path:
        raise ValueError("serve_review: taxonomy_path is required (e.g. conf/taxonomy/banking77.yaml)")
    app = create_app(ReviewStore(db_url, claim_ttl_s=claim_ttl_s), load_taxonomy(taxonomy_path),
                     load_reviewers(reviewers or {}, reviewers_env),
                     secret_key=os.environ.get(secret_env), cookie_secure=cookie_secure)
    uvicorn.run(mounted(app), host=host, port=port, log_level="info")


__all__ = ["Sessions", "SignInThrottle", "create_app", "serve_review", "app_from_config", "mounted", "hash_token",
           "verify_token", "load_reviewers"]
