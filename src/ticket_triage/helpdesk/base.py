"""What every helpdesk adapter shares: config, the receive -> classify -> draft flow,
idempotency, agent feedback, HTTP error classification and the outbox.

An adapter (Zendesk, Intercom, Front) supplies three provider-specific pieces:
``poll()`` (new/updated tickets since a persisted cursor), ``perform(op)`` (one outbox
operation -> REST calls) and optionally ``parse_webhook`` / ``verify_webhook``.
Everything else is here:

* :meth:`HelpdeskAdapter.handle` takes received tickets. Each delivery has an idempotency
  key ``<adapter>:<ticket id>:<event id or updated_at>``; a key seen before is skipped. New
  tickets are classified in one batch with the injected ``classify`` callable; the draft
  (tags ``<prefix>_draft_<topic>``, ``<prefix>_band_<band>``, ``<prefix>_urgency_<p>`` and an
  internal note) is written to the outbox in the *same transaction* that records the key.
  In ``auto`` mode the ``auto_route`` band of labels allowed to auto-route (``auto_labels``,
  overridden per label by ``triage helpdesk trust --apply``) is also routed.
  Review-band tickets (and a hash-based audit share of auto-routes) go into the review queue.
* Tickets we drafted before are read for agent feedback: ``<prefix>_confirmed_<topic>``,
  a replaced ``<prefix>_draft_<topic>``, or a topic tag the agent added (a taxonomy topic id
  or a source tag mapped by the taxonomy) becomes a correction in the review store.
"""

from __future__ import annotations

import json
import logging
import re
import time
from abc import ABC, abstractmethod
from urllib.parse import quote
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ticket_triage.helpdesk.outbox import (DrainReport, Outbox, PermanentError, RetryableError)
from ticket_triage.helpdesk.types import (DEFAULT_REPLAY_WINDOW_S, HandleReport,  # noqa: F401
                                          HelpdeskConfig, Incoming, PayloadError, SignatureError,
                                          check_timestamp, parse_retry_after)
from ticket_triage.helpdesk.routing import RoutingMap
from ticket_triage.review.store import ReviewStore
from ticket_triage.storage import helpdesk_drafts, helpdesk_events, helpdesk_state, upsert
from ticket_triage.schema import Decision, Ticket

if TYPE_CHECKING:
    import httpx

    from ticket_triage.taxonomy import Taxonomy
    from ticket_triage.text.clean import CleanConfig

log = logging.getLogger(__name__)

Classify = Callable[[list[Ticket]], list[Decision]]
_TAG_SAFE = re.compile(r"[^a-z0-9_\-]+")


class HelpdeskAdapter(ABC):
    """Base class; see the module docstring for the flow."""

    name: str = "helpdesk"
    #: what a ticket / conversation id of this helpdesk looks like (checked before any use)
    id_pattern: re.Pattern[str] = re.compile(r"[A-Za-z0-9_\-]{1,64}")
    id_example: str = "12345"

    def validate_id(self, value: Any) -> str:
        """The id as a string, or :class:`PayloadError` saying what an id must look like."""
        if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
            got = "missing" if value is None else f"a {type(value).__name__}"
            raise PayloadError(f"{self.name}: no ticket id ({got}); expected an id like "
                               f"{self.id_example!r}")
        s = str(value)
        if not self.id_pattern.fullmatch(s):
            raise PayloadError(f"{self.name}: ticket id {s[:40]!r} is not a valid {self.name} id "
                               f"(like {self.id_example!r})")
        return s

    def path_id(self, value: Any) -> str:
        """A validated id, percent-encoded for use as one URL path segment."""
        try:
            return quote(self.validate_id(value), safe="")
        except PayloadError as exc:
            raise PermanentError(str(exc)) from exc

    def __init__(self, cfg: HelpdeskConfig | Mapping[str, Any], *, classify: Classify,
                 store: ReviewStore, taxonomy: "Taxonomy | None" = None,
                 client: "httpx.Client | None" = None,
                 clean: "CleanConfig | Callable[[str, str], str] | None" = None,
                 outbox: Outbox | None = None):
        self.cfg = cfg if isinstance(cfg, HelpdeskConfig) else HelpdeskConfig.from_dict(cfg)
        self.classify = classify
        self.store = store
        self.taxonomy = taxonomy
        self.routing = RoutingMap.from_config(self.cfg.routing, self.cfg.auto_labels, self.cfg.mode)
        self.outbox = outbox or Outbox(store, max_attempts=self.cfg.max_attempts,
                                       backoff_base_s=self.cfg.backoff_base_s,
                                       backoff_max_s=self.cfg.backoff_max_s,
                                       lease_s=self.cfg.outbox_lease_s)
        self._client = client
        self._clean = clean
        self.prefix = self.cfg.tag_prefix
        self.bad_items: list[str] = []        # polled items refused (invalid id, bad fields)
        self.on_progress: Callable[[str], None] | None = None
        self.auto_labels_override: set[str] | None = None  # set by the trust table

    def config_problems(self) -> list[str]:
        """What keeps this adapter from talking to its helpdesk (what to set, not secrets)."""
        import os
        from urllib.parse import urlsplit

        out = []
        u = urlsplit(self.cfg.base_url or "")
        if u.scheme not in ("http", "https") or not u.netloc:
            out.append(f"helpdesk.base_url {self.cfg.base_url!r} is not an http(s) URL")
        elif u.netloc.startswith("example.") or ".example." in u.netloc:
            out.append(f"helpdesk.base_url is still the example ({self.cfg.base_url}); set your "
                       f"{self.name} URL in conf/helpdesk/{self.name}.yaml and run "
                       "`triage config compose`")
        for var in (self.cfg.email_env, self.cfg.api_token_env):
            if var and not os.environ.get(var):
                out.append(f"set the env var {var}")
        if self.name == "intercom" and not self.cfg.admin_id:
            out.append("set helpdesk.admin_id (the admin that writes notes and tags)")
        return out

    def progress(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)

    def relative(self, url: Any) -> str | None:
        """A next-page URL made relative to ``base_url`` (same host only), else None."""
        if not url or not isinstance(url, str):
            return None
        from urllib.parse import urlsplit

        u = urlsplit(url)
        base = urlsplit(self.cfg.base_url)
        if u.netloc and u.netloc != base.netloc:
            raise PermanentError(f"{self.name}: next-page link points to {u.netloc}, not "
                                 f"{base.netloc}; refusing to follow it")
        prefix = base.path.rstrip("/")
        path = u.path[len(prefix):] if prefix and u.path.startswith(prefix) else u.path
        return path + (f"?{u.query}" if u.query else "")

    # ---- provider hooks ------------------------------------------------------------------
    @abstractmethod
    def poll(self) -> tuple[list[Incoming], dict[str, str]]:
        """New/updated tickets since the stored cursor, and the state to store after handling."""

    @abstractmethod
    def perform(self, op: dict[str, Any]) -> None:
        """Carry out one outbox operation (``add_tags``, ``add_note``, ``route``)."""

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`SignatureError` unless the delivery is signed and fresh."""
        raise SignatureError(f"{self.name}: webhooks are not supported; use polling")

    def parse_webhook(self, body: bytes) -> list[Incoming]:
        """The deliveries' tickets; :class:`PayloadError` (400) when malformed."""
        raise PayloadError(f"{self.name}: webhooks are not supported; use polling")

    def webhook_challenge(self, headers: Mapping[str, str], body: bytes) -> Any:
        """The answer to a (verified) subscription handshake, or None for a normal delivery."""
        return None

    def webhook_secret(self) -> str:
        import os

        return os.environ.get(self.cfg.webhook_secret_env or "", "")

    def _auth(self) -> Any:
        return None

    def _headers(self) -> dict[str, str]:
        return {}

    # ---- HTTP ----------------------------------------------------------------------------
    @property
    def client(self) -> "httpx.Client":
        if self._client is None:
            import httpx

            if not self.cfg.base_url:
                raise ValueError(f"helpdesk.base_url is empty; set it to your {self.name} API "
                                 "base URL")
            self._client = httpx.Client(base_url=self.cfg.base_url, auth=self._auth(),
                                        headers=self._headers(), timeout=self.cfg.timeout_s)
        return self._client

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: Mapping[str, Any] | None = None) -> Any:
        """One HTTP call; 429/5xx/408/409/network -> RetryableError, other 4xx -> PermanentError."""
        import httpx

        try:
            resp = self.client.request(method, path, json=json_body, params=params)
        except httpx.TransportError as exc:
            raise RetryableError(f"{self.name} {method} {path}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 429:
            wait = parse_retry_after(resp.headers.get("Retry-After"))
            reset = resp.headers.get("X-RateLimit-Reset")  # Intercom: epoch seconds
            if wait is None and reset and reset.strip().isdigit():
                wait = max(0.0, float(reset) - time.time())
            raise RetryableError(f"{self.name} {method} {path}: 429 rate limited",
                                 retry_after=60.0 if wait is None else wait, status=429)
        if resp.status_code >= 500 or resp.status_code in (408, 409):
            raise RetryableError(f"{self.name} {method} {path}: HTTP {resp.status_code}: "
                                 f"{resp.text[:200]}", status=resp.status_code)
        if resp.status_code >= 400:
            raise PermanentError(f"{self.name} {method} {path}: HTTP {resp.status_code}: "
                                 f"{resp.text[:300]}", status=resp.status_code)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # ---- state ---------------------------------------------------------------------------
    def _tag_id(self, name: str) -> str:
        """The helpdesk's id for tag ``name`` (Intercom, Front), created once and remembered."""
        cached = self.get_state(f"tag:{name}")
        if cached:
            return cached
        res = self.request("POST", "/tags", json_body={"name": name}) or {}
        if not res.get("id"):
            raise PermanentError(f"{self.name}: creating tag {name!r} returned no id: {res}")
        self.set_state({f"tag:{name}": str(res["id"])})
        return str(res["id"])

    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self.store.engine.connect() as conn:
            v = conn.execute(sa.select(helpdesk_state.c.value).where(
                helpdesk_state.c.key == f"{self.name}:{key}")).scalar()
        return default if v is None else v

    def set_state(self, values: Mapping[str, str]) -> None:
        with self.store.engine.begin() as conn:
            for k, v in values.items():
                upsert(conn, helpdesk_state, {"key": f"{self.name}:{k}", "value": str(v)},
                       index_elements=["key"], update=["value"])

    # ---- the flow ------------------------------------------------------------------------
    def tag(self, kind: str, value: str) -> str:
        return f"{self.prefix}_{kind}_{_TAG_SAFE.sub('_', str(value).lower()).strip('_')}"

    def _text(self, t: Ticket) -> str:
        if t.text:
            return t.text
        from ticket_triage.text.clean import CleanConfig

        clean = CleanConfig() if self._clean is None else self._clean
        return clean.apply(t.subject, t.body) if isinstance(clean, CleanConfig) \
            else clean(t.subject, t.body)

    def sync(self) -> HandleReport:
        """Poll once, handle what came, then store the cursor (so a crash re-polls)."""
        incoming, state = self.poll()
        report = self.handle(incoming)
        if state:
            self.set_state(state)
        return report

    def handle(self, incoming: Sequence[Incoming]) -> HandleReport:
        """Classify new tickets and queue their drafts; read agent feedback on drafted ones."""
        rep = HandleReport(received=len(incoming))
        keys: dict[int, str] = {}
        fresh: list[Incoming] = []
        seen_keys: set[str] = set()
        with self.store.engine.connect() as conn:
            for inc in incoming:
                key = f"{self.name}:{inc.ticket.id}:{inc.version}"
                if key in seen_keys or conn.execute(sa.select(helpdesk_events.c.key).where(
                        helpdesk_events.c.key == key)).first():
                    rep.duplicates += 1
                    continue
                seen_keys.add(key)
                keys[id(inc)] = key
                fresh.append(inc)
            drafted = {r["ticket_id"]: r for r in conn.execute(
                sa.select(helpdesk_drafts).where(
                    helpdesk_drafts.c.adapter == self.name,
                    helpdesk_drafts.c.ticket_id.in_([str(i.ticket.id) for i in fresh])
                )).mappings()} if fresh else {}
        to_classify: list[Incoming] = []
        for inc in fresh:
            tid = str(inc.ticket.id)
            if tid in drafted:
                if self._feedback(inc, drafted[tid], keys[id(inc)]):
                    rep.feedback += 1
            elif inc.skip_reason:  # e.g. a closed ticket: never classified, never written
                self._mark(keys[id(inc)])
                rep.skip(inc.skip_reason)
                log.info("%s: ticket %s skipped: %s", self.name, tid, inc.skip_reason)
            elif inc.is_new is False or any(t.startswith(f"{self.prefix}_") for t in inc.tags):
                # An update to a ticket we never drafted, or one triaged elsewhere: leave it.
                self._mark(keys[id(inc)])
                rep.skip("update of a ticket that was never drafted"
                         if inc.is_new is False else "already carries triage tags")
            else:
                to_classify.append(inc)
        if not to_classify:
            return rep
        tickets = [inc.ticket for inc in to_classify]
        decisions = self.classify(tickets)
        if len(decisions) != len(tickets):
            raise RuntimeError(f"classify returned {len(decisions)} decisions for "
                               f"{len(tickets)} tickets")
        rep.classified = len(tickets)
        review_pairs, audit_pairs = [], []
        from ticket_triage.review.feedback import should_audit

        for inc, d in zip(to_classify, decisions):
            key = keys[id(inc)]
            t = inc.ticket
            text = self._text(t)
            t_clean = Ticket(**{**t.__dict__, "text": text})
            ops = self.ops_for(str(t.id), d)
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(helpdesk_events.insert().values(key=key, processed_at=time.time()))
                    conn.execute(helpdesk_drafts.insert().values(
                        adapter=self.name, ticket_id=str(t.id), topic=d.topic, urgency=d.urgency,
                        band=d.band, confidence=float(d.confidence), model_version=d.model_version,
                        text=text, decided_at=time.time(), final_topic=None,
                        tags_json=json.dumps(list(inc.tags))))
                    for i, op in enumerate(ops):
                        self.outbox.put(self.name, str(t.id), op, f"{key}:{i}:{op['op']}", conn=conn)
                    self.on_drafted(conn, str(t.id), d)
            except IntegrityError:  # a concurrent delivery of the same event won the race
                rep.duplicates += 1
                continue
            rep.decisions[str(t.id)] = d
            rep.drafted += 1
            rep.routed += any(op["op"] == "route" for op in ops)
            if d.band in self.cfg.review_bands:
                review_pairs.append((t_clean, d))
            elif d.band == "auto_route" and should_audit(str(t.id), self.cfg.audit_share,
                                                         self.cfg.audit_seed):
                audit_pairs.append((t_clean, d))
        if review_pairs:
            rep.queued_for_review += len(self.store.enqueue_many(review_pairs))
        if audit_pairs:
            rep.queued_for_review += len(self.store.enqueue_many(audit_pairs, is_audit_sample=True))
        return rep

    def _mark(self, key: str) -> None:
        try:
            with self.store.engine.begin() as conn:
                conn.execute(helpdesk_events.insert().values(key=key, processed_at=time.time()))
        except IntegrityError:
            pass

    def agent_topic(self, tags: Sequence[str], drafted_topic: str | None,
                    initial_tags: Sequence[str] = (), field_value: str | None = None
                    ) -> str | None:
        """The topic an agent gave the ticket through tags (or the topic field), else None."""
        known = set(self.taxonomy.topic_ids) if self.taxonomy is not None else None
        if field_value and field_value != drafted_topic and (known is None or field_value in known):
            return field_value  # the agent changed the dropdown we set
        by_tag = {self.tag("confirmed", t): t for t in (known or ())}
        draft_by_tag = {self.tag("draft", t): t for t in (known or ())}
        confirmed_p, draft_p = f"{self.prefix}_confirmed_", f"{self.prefix}_draft_"

        def topic_of(tag: str, table: dict[str, str], p: str) -> str | None:
            if tag in table:
                return table[tag]
            return tag[len(p):] if known is None and tag.startswith(p) else None

        for tag in tags:
            if tag.startswith(confirmed_p):
                t = topic_of(tag, by_tag, confirmed_p)
                if t:
                    return t
        drafts = [topic_of(tag, draft_by_tag, draft_p) for tag in tags if tag.startswith(draft_p)]
        drafts = [t for t in drafts if t]
        if drafted_topic is not None and self.tag("draft", drafted_topic) not in tags and drafts:
            return drafts[0]
        if self.taxonomy is not None:
            added = [t for t in tags if t not in set(initial_tags)
                     and not t.startswith(f"{self.prefix}_")]
            mapped = self.taxonomy.map_tags(added)
            if mapped is not None and mapped != drafted_topic:
                return mapped
        return None

    def _feedback(self, inc: Incoming, draft: Mapping[str, Any], key: str) -> bool:
        topic = self.agent_topic(inc.tags, draft["topic"], json.loads(draft["tags_json"] or "[]"),
                                 inc.topic_value)
        last = draft["final_topic"]
        recorded = False
        try:
            with self.store.engine.begin() as conn:
                conn.execute(helpdesk_events.insert().values(key=key, processed_at=time.time()))
                if topic is not None and topic != last:
                    conn.execute(helpdesk_drafts.update().where(
                        helpdesk_drafts.c.adapter == self.name,
                        helpdesk_drafts.c.ticket_id == str(inc.ticket.id),
                        sa.or_(helpdesk_drafts.c.final_topic.is_(None),
                               helpdesk_drafts.c.final_topic != topic)
                    ).values(final_topic=topic))
                    recorded = True
        except IntegrityError:
            return False
        if recorded:
            self.store.record_feedback(
                ticket_id=str(inc.ticket.id), predicted_topic=draft["topic"],
                predicted_urgency=draft["urgency"], corrected_topic=topic,
                corrected_urgency=None, reviewer=f"{self.name}:{inc.actor or 'agent'}",
                source=f"helpdesk:{self.name}", model_version=draft["model_version"],
                text=draft["text"])
        return recorded

    # ---- what to write -------------------------------------------------------------------
    def on_drafted(self, conn: Any, ticket_id: str, d: Decision) -> None:
        """Hook: called inside the draft's transaction (the trust ledger counts drafts)."""

    def extra_ops(self, ticket_id: str, d: Decision) -> list[dict[str, Any]]:
        """Provider-specific writes beside tags and note (Zendesk: the topic dropdown)."""
        return []

    def route_target(self, d: Decision) -> Mapping[str, Any] | None:
        """Where to route ``d`` (auto mode, auto_route band, a label allowed to auto-route)."""
        if self.auto_labels_override is None:
            return self.routing.route_for(d.topic, d.band)
        if (self.cfg.mode != "auto" or d.band != "auto_route"
                or d.topic not in self.auto_labels_override):
            return None
        return self.routing.targets.get(d.topic)

    def ops_for(self, ticket_id: str, d: Decision) -> list[dict[str, Any]]:
        """The outbox operations that apply decision ``d`` to the ticket."""
        import hashlib

        tags = [self.tag("band", d.band)]
        if d.topic:
            tags.insert(0, self.tag("draft", d.topic))
        if d.urgency:
            tags.append(self.tag("urgency", d.urgency))
        target = self.route_target(d)
        if target is not None:
            tags.append(self.tag("auto", d.topic))
        ref = hashlib.sha256(f"{self.name}:{ticket_id}:{d.topic}:{d.model_version}:"
                             f"{time.time_ns()}".encode()).hexdigest()[:12]
        ops: list[dict[str, Any]] = [
            {"op": "add_tags", "ticket_id": ticket_id, "tags": tags},
            {"op": "add_note", "ticket_id": ticket_id, "ref": f"triage-ref:{ref}",
             "body": self.note_text(d, routed=target is not None) + f"\n(triage-ref:{ref})"},
            *self.extra_ops(ticket_id, d),
        ]
        if target is not None:
            ops.append({"op": "route", "ticket_id": ticket_id, **dict(target)})
        return ops

    def note_text(self, d: Decision, *, routed: bool = False) -> str:
        """The internal note: proposal, confidence, band, why, and how to confirm."""
        lines = [f"Triage {'routed' if routed else 'draft'}: {d.topic or '(no topic)'} "
                 f"(confidence {d.confidence:.2f}, band {d.band}, urgency {d.urgency})"]
        if d.reason:
            lines.append(f"Reason: {d.reason}")
        alts = [a for a in (d.alternatives or []) if isinstance(a, dict)][:3]
        if alts:
            lines.append("Alternatives: " + ", ".join(
                f"{a.get('topic')} {float(a.get('p', 0)):.2f}" for a in alts))
        if d.rule_hits:
            lines.append("Rules: " + ", ".join(
                str(h.get("rule") or h.get("name") or h) if isinstance(h, dict) else str(h)
                for h in d.rule_hits))
        if d.explanation:
            expl = d.explanation.get("summary") if isinstance(d.explanation, dict) else None
            lines.append("Why: " + (str(expl) if expl else json.dumps(d.explanation, default=str)[:500]))
        if d.model_version:
            lines.append(f"Model: {d.model_version}")
        if d.topic:
            lines.append(f"To confirm, replace tag {self.tag('draft', d.topic)} with "
                         f"{self.tag('confirmed', d.topic)}; to correct, set the right topic tag.")
        return "\n".join(lines)

    def drain_outbox(self, *, max_items: int = 100, now: float | None = None) -> DrainReport:
        """Deliver this adapter's due outbox operations once (synchronous)."""
        return self.outbox.drain({self.name: self}, max_items=max_items, now=now)
