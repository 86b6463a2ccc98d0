"""Helpdesk integration: receive tickets, classify them, write drafts back, read feedback.

``build_adapter(cfg, classify=..., store=...)`` picks the adapter named by
``cfg["provider"]`` (``zendesk``, ``intercom``, ``front``); :func:`helpdesk_configs` turns the
``helpdesk`` params section (one provider plus ``additional:`` ones) into one adapter config
each. Writes go through a persisted outbox (:mod:`ticket_triage.helpdesk.outbox`); webhooks
through :func:`ticket_triage.helpdesk.webhooks.create_webhook_app`; the polling worker is
:mod:`ticket_triage.helpdesk.worker`; per-label trust :mod:`ticket_triage.helpdesk.trust`.
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


# helpdesk keys that configure the deployment, not one adapter (HelpdeskConfig rejects them)
DEPLOY_KEYS = ("webhooks_enabled", "additional")
# keys an `additional:` entry inherits from the main section (the rest is per provider)
SHARED_KEYS = ("mode", "tag_prefix", "review_bands", "audit_share", "audit_seed", "timeout_s",
               "webhook_max_skew_s", "webhook_max_events", "poll", "outbox", "trust", "worker")
PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    "zendesk": {"email_env": "ZENDESK_EMAIL", "api_token_env": "ZENDESK_API_TOKEN",
                "webhook_secret_env": "ZENDESK_WEBHOOK_SECRET"},
    "intercom": {"email_env": None, "api_token_env": "INTERCOM_ACCESS_TOKEN",
                 "webhook_secret_env": "INTERCOM_CLIENT_SECRET",
                 "base_url": "https://api.intercom.io"},
    "front": {"email_env": None, "api_token_env": "FRONT_API_TOKEN",
              "webhook_secret_env": "FRONT_APP_SECRET", "base_url": "https://api2.frontapp.com"},
}


def helpdesk_configs(section: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One adapter config per configured helpdesk: the section itself (its ``provider``) and
    each ``additional:`` entry (inheriting :data:`SHARED_KEYS`, with the provider's own
    default env var names). Providers must be distinct."""
    section = dict(section or {})
    main = {k: v for k, v in section.items() if k not in DEPLOY_KEYS}
    out = [main]
    extra = section.get("additional") or []
    if not isinstance(extra, list):
        raise ValueError("helpdesk.additional must be a list of {provider: ..., base_url: ...}")
    for i, e in enumerate(extra):
        if not isinstance(e, Mapping) or not e.get("provider"):
            raise ValueError(f"helpdesk.additional[{i}] needs a provider (zendesk|intercom|front)")
        prov = str(e["provider"])
        cfg = {k: main[k] for k in SHARED_KEYS if k in main}
        cfg.update(PROVIDER_DEFAULTS.get(prov, {}))
        cfg.update(dict(e))
        out.append(cfg)
    names = [str(c.get("provider") or "zendesk") for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"helpdesk: each provider may be configured once, got {names}")
    return out


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


def adapters_from_params(params: Mapping[str, Any], *, classify: Classify,
                         store: "ReviewStore", taxonomy: "Taxonomy | None" = None
                         ) -> list[HelpdeskAdapter]:
    """One adapter per configured helpdesk in ``params["helpdesk"]``, on ``store``."""
    return [build_adapter(c, classify=classify, store=store, taxonomy=taxonomy)
            for c in helpdesk_configs(params.get("helpdesk") or {})]


class LazyTriage:
    """A ``classify`` callable that loads the model bundle on first use (``Triage.decide``)."""

    def __init__(self, load: Any):
        self._load = load
        self._triage: Any = None

    def __call__(self, tickets: list[Any]) -> list[Any]:
        if self._triage is None:
            self._triage = self._load()
        return self._triage.decide(tickets)


__all__ = ["build_adapter", "helpdesk_configs", "adapters_from_params", "LazyTriage", "HelpdeskAdapter", "HelpdeskConfig", "Incoming", "HandleReport",
           "SignatureError", "Outbox", "OutboxWorker", "DrainReport", "RetryableError",
           "PermanentError", "Classify"]
