"""Which labels may be auto-routed, and where to (group / assignee / team per topic)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class RoutingMap:
    """Topic -> routing target (``{"group_id": ..., "assignee_id": ...}`` for Zendesk,
    ``{"assignee_id": ...}`` for Intercom / Front) and the labels switched on for auto mode.

    Auto routing happens only when ``mode == "auto"``, the decision band is ``auto_route``
    and its topic is in ``auto_labels``; everything else stays a draft.
    """

    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    auto_labels: frozenset[str] = frozenset()
    mode: str = "draft"

    @classmethod
    def from_config(cls, routing: Mapping[str, Any] | None, auto_labels: Any = (),
                    mode: str = "draft") -> "RoutingMap":
        if mode not in ("draft", "auto"):
            raise ValueError(f"helpdesk.mode is {mode!r}; use 'draft' (default) or 'auto'")
        targets: dict[str, dict[str, Any]] = {}
        for topic, target in (routing or {}).items():
            if not isinstance(target, Mapping):
                raise ValueError(f"helpdesk.routing.{topic} must be a mapping such as "
                                 "{group_id: 123, assignee_id: null}")
            clean = {k: v for k, v in target.items() if v is not None}
            if not clean:
                raise ValueError(f"helpdesk.routing.{topic} has no target; give group_id, "
                                 "assignee_id or team_id")
            targets[str(topic)] = clean
        labels = frozenset(str(x) for x in (auto_labels or ()))
        missing = sorted(labels - set(targets))
        if missing:
            raise ValueError(f"helpdesk.auto_labels {missing} have no entry in helpdesk.routing; "
                             "add a target for each or remove them from auto_labels")
        return cls(targets, labels, mode)

    def route_for(self, topic: str | None, band: str) -> Mapping[str, Any] | None:
        """The target to route to, or None when the ticket stays a draft."""
        if self.mode != "auto" or band != "auto_route" or topic not in self.auto_labels:
            return None
        return self.targets.get(topic)
