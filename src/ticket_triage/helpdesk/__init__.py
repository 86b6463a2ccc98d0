"""Helpdesk integration: receive tickets, classify them, write drafts back, read feedback.

``build_adapter(cfg, classify=..., store=...)`` picks the adapter named by
``cfg["provider"]`` (``zendesk``, ``intercom``, ``front``). Writes go through a persisted
outbox (:mod:`ticket_triage.helpdesk.outbox`); webhooks through
:func:`ticket_triage.helpdesk.webhooks.create_webhook_app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ticket_triage.helpdesk.base import (Classify, HandleReport, HelpdeskAdapter, HelpdeskConfig,
                                         Incoming, SignatureError)
from ticket_triage.helpdesk.outbox import (DrainReport, Outbox, OutboxWorker, PermanentError,
                                           RetryableError)

if TYPE_CHECKING:
    from ticket_triage.review.store import ReviewStore
    from ticket_triage.taxonomy import Taxonomy


def build_adapter(cfg: Mapping[str, Any] | HelpdeskConfig, *, classify: Classify,
                  store: "ReviewStore", taxonomy: "Taxonomy | None" = None,
                  **kwargs: Any) -> HelpdeskAdapter:
    """The adapter for ``cfg.provider`` built from the ``helpdesk`` config section."""
    from ticket_triage.helpdesk.front import FrontAdapter
    from ticket_triage.helpdesk.intercom import IntercomAdapter
    from ticket_triage.helpdesk.zendesk import ZendeskAdapter

    c = cfg if isinstance(cfg, HelpdeskConfig) else HelpdeskConfig.from_dict(cfg)
    classes = {"zendesk": ZendeskAdapter, "intercom": IntercomAdapter, "front": FrontAdapter}
    if c.provider not in classes:
        raise ValueError(f"helpdesk.provider {c.provider!r} is not one of {sorted(classes)}")
    return classes[c.provider](c, classify=classify, store=store, taxonomy=taxonomy, **kwargs)


__all__ = ["build_adapter", "HelpdeskAdapter", "HelpdeskConfig", "Incoming", "HandleReport",
           "SignatureError", "Outbox", "OutboxWorker", "DrainReport", "RetryableError",
           "PermanentError", "Classify"]
