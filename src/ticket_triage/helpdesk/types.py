"""The helpdesk integration's plain types: its config section (:class:`HelpdeskConfig`), one
received ticket version (:class:`Incoming`), what handling did (:class:`HandleReport`), the
webhook refusals (:class:`SignatureError` -> 401, :class:`PayloadError` -> 400) and the replay
window check shared by the three vendors."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from ticket_triage.schema import Decision, Ticket


class SignatureError(PermissionError):
    """A webhook delivery failed signature verification, or its timestamp is stale or
    unreadable (answer 401 with the reason)."""


class PayloadError(ValueError):
    """A signed webhook delivery is malformed (answer 400 with the reason)."""


DEFAULT_REPLAY_WINDOW_S = 300.0


def check_timestamp(ts: float | None, raw: Any, max_skew_s: float | None, *,
                    what: str, now: float | None = None) -> None:
    """Refuse a delivery whose signed timestamp is unreadable (always) or further than
    ``max_skew_s`` seconds from now (the replay window; ``None`` switches only the window off)."""
    if ts is None or ts != ts or ts in (float("inf"), float("-inf")):
        raise SignatureError(f"unreadable {what}: {str(raw)[:60]!r}")
    if max_skew_s is not None:
        skew = (time.time() if now is None else now) - ts
        if abs(skew) > float(max_skew_s):
            raise SignatureError(f"{what} is {abs(skew):.0f} s {'old' if skew > 0 else 'ahead'}; "
                                 f"deliveries outside the {float(max_skew_s):.0f} s replay window "
                                 "are refused (helpdesk.webhook_max_skew_s)")


@dataclass
class HelpdeskConfig:
    """The ``helpdesk`` section of params.yaml (see ``conf/helpdesk/zendesk.yaml``).

    Secrets are never in the config: ``*_env`` fields name environment variables.
    """

    provider: str = "zendesk"
    mode: str = "draft"                      # draft | auto
    base_url: str = ""                       # e.g. https://acme.zendesk.com
    email_env: str | None = "ZENDESK_EMAIL"
    api_token_env: str | None = "ZENDESK_API_TOKEN"
    webhook_secret_env: str | None = "ZENDESK_WEBHOOK_SECRET"
    webhook_max_skew_s: float | None = DEFAULT_REPLAY_WINDOW_S  # replay window (None: off)
    webhook_max_events: int = 100            # events in one delivery; more -> 400
    topic_field_id: int | None = None        # Zendesk: custom dropdown field holding the topic
    topic_field_prefix: str = ""             # its option values: <prefix><topic id>
    trust_min_confirmations: int = 30        # `triage helpdesk trust`: agent verdicts needed
    trust_target_precision: float = 0.95     # lower bound of the confirmation rate needed
    trust_confidence: float = 0.95
    trust_method: str = "wilson"             # wilson | clopper_pearson
    worker_interval_s: float = 60.0          # `triage helpdesk run`: seconds between passes
    worker_health_file: str = "var/helpdesk-health.json"
    auto_labels: list[str] = field(default_factory=list)
    routing: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_prefix: str = "triage"
    review_bands: list[str] = field(default_factory=lambda: ["review"])
    audit_share: float = 0.02
    audit_seed: int = 0
    timeout_s: float = 10.0
    max_attempts: int = 20
    backoff_base_s: float = 2.0
    backoff_max_s: float = 900.0
    outbox_lease_s: float = 60.0             # a write cut off by a crash is retried after this
    poll_start_time: int = 0                 # unix time the first poll starts from
    poll_max_pages: int = 10
    admin_id: str | None = None              # Intercom: the admin that writes notes/tags
    author_id: str | None = None             # Front: the teammate that writes comments

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HelpdeskConfig":
        known = set(cls.__dataclass_fields__)
        groups = ("outbox", "poll", "webhook", "trust", "worker")
        from ticket_triage.config import reject_unknown

        reject_unknown(set(d) - set(groups), known, "helpdesk config")
        kw = {k: v for k, v in d.items() if k in known}
        for sub in groups:  # flatten nested groups
            for k, v in (d.get(sub) or {}).items():
                name = k if k in known else f"{sub}_{k}"
                if name not in known:
                    raise ValueError(f"helpdesk.{sub}.{k}: unknown key")
                kw[name] = v
        cfg = cls(**kw)
        if cfg.mode not in ("draft", "auto"):
            raise ValueError(f"helpdesk.mode is {cfg.mode!r}; use 'draft' or 'auto'")
        cfg.auto_labels = list(cfg.auto_labels or [])
        cfg.routing = dict(cfg.routing or {})
        if cfg.trust_method not in ("wilson", "clopper_pearson"):
            raise ValueError(f"helpdesk.trust.method is {cfg.trust_method!r}; use 'wilson' or "
                             "'clopper_pearson'")
        if cfg.webhook_max_skew_s is not None and float(cfg.webhook_max_skew_s) <= 0:
            raise ValueError("helpdesk.webhook_max_skew_s must be > 0 seconds (or null to switch "
                             "the replay window off)")
        return cfg


@dataclass
class Incoming:
    """One received ticket version: the ticket, its current tags, a version for idempotency."""

    ticket: Ticket
    tags: list[str]
    version: str                 # webhook event id, or updated_at for polled tickets
    is_new: bool | None = None   # True for a creation event; None when unknown
    actor: str | None = None     # who made the change (agent id), when the event says
    skip_reason: str | None = None  # e.g. "closed": recorded, never classified or written
    topic_value: str | None = None  # the topic a custom field holds (Zendesk dropdown)


@dataclass
class HandleReport:
    received: int = 0
    duplicates: int = 0
    classified: int = 0
    drafted: int = 0
    routed: int = 0
    queued_for_review: int = 0
    feedback: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.skipped_reasons[reason] = self.skipped_reasons.get(reason, 0) + 1

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "decisions"}
        return d

    def __add__(self, o: "HandleReport") -> "HandleReport":
        r = HandleReport()
        for k in ("received", "duplicates", "classified", "drafted", "routed",
                  "queued_for_review", "feedback", "skipped"):
            setattr(r, k, getattr(self, k) + getattr(o, k))
        for src in (self.skipped_reasons, o.skipped_reasons):
            for k, v in src.items():
                r.skipped_reasons[k] = r.skipped_reasons.get(k, 0) + v
        r.decisions = {**self.decisions, **o.decisions}
        return r


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
