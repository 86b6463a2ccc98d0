"""What routing costs: share of tickets per path and cost per ticket, projected per month.

Paths: ``rules`` (a deterministic rule decided), ``model`` (the classical classifier
decided), ``llm`` (the LLM fallback decided), ``human`` (the ticket ended in the review
queue, band ``review``, or a human decided it). Per ticket the costs add up:

* classical inference -- every ticket not decided by a rule: ``classical_per_1k_tickets / 1000``;
* LLM -- tickets with an ``llm`` record: its ``cost_usd`` when present, else its token counts
  (``input_tokens`` / ``output_tokens``) or the configured averages at the configured prices;
* people -- ``review``: ``human_minutes_per_review`` at ``human_hourly_rate``; ``draft``
  (an agent confirms a proposed tag): ``draft_minutes_per_ticket`` at the same rate.

The monthly projection multiplies the observed mean cost per ticket by
``tickets_per_day * days_per_month`` and sets it against sending every ticket to the LLM
(LLM calls only, no people). :meth:`CostReport.per_policy` breaks each routing policy's
monthly cost into its parts (model inference, LLM calls, reviewer time, agents confirming
drafts); the chart stacks those parts, so people's time is never shown as model cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

PATHS: tuple[str, ...] = ("rules", "model", "llm", "human")
#: The parts of a policy's cost (``per_component`` keys grouped), in stacking order, with their labels.
PARTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("model", ("rules", "classical"), "model inference (classifier + rules)"),
    ("llm", ("llm",), "LLM calls"),
    ("review", ("review",), "reviewer time (review queue)"),
    ("draft", ("draft",), "agent time confirming drafts"),
)


@dataclass
class CostConfig:
    """Prices and volume (``monitor.cost``); all money in USD."""

    classical_per_1k_tickets: float = 0.02
    rules_per_1k_tickets: float = 0.0
    llm_input_per_1m_tokens: float = 0.15
    llm_output_per_1m_tokens: float = 0.60
    llm_input_tokens_per_call: int = 900
    llm_output_tokens_per_call: int = 60
    human_minutes_per_review: float = 3.0
    draft_minutes_per_ticket: float = 0.5
    human_hourly_rate: float = 30.0
    tickets_per_day: int = 10000
    days_per_month: int = 30

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "CostConfig":
        from ticket_triage.config import reject_unknown

        d = dict(d or {})
        reject_unknown(d, (f.name for f in fields(cls)), "monitor.cost")
        bad = sorted(k for k, v in d.items() if not isinstance(v, (int, float)) or v < 0)
        if bad:
            raise ValueError(f"monitor.cost values must be non-negative numbers; check {bad}")
        return cls(**d)

    def llm_call_cost(self, input_tokens: float | None = None, output_tokens: float | None = None) -> float:
        """Price of one LLM call (configured average token counts when none are given)."""
        i = self.llm_input_tokens_per_call if input_tokens is None else input_tokens
        o = self.llm_output_tokens_per_call if output_tokens is None else output_tokens
        return i * self.llm_input_per_1m_tokens / 1e6 + o * self.llm_output_per_1m_tokens / 1e6

    @property
    def review_cost(self) -> float:
        return self.human_minutes_per_review / 60 * self.human_hourly_rate

    @property
    def draft_cost(self) -> float:
        return self.draft_minutes_per_ticket / 60 * self.human_hourly_rate


@dataclass
class CostReport:
    per_path: pd.DataFrame          # path, n, share, cost_total, cost_per_ticket, monthly_cost
    per_component: dict[str, float]  # mean cost per ticket: classical, llm, review, draft, rules
    cost_per_ticket: float
    monthly_cost: float
    monthly_cost_without_people: float
    monthly_all_llm: float
    llm_cost_per_call: float
    tickets_per_month: int
    n: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_path"] = self.per_path.to_dict(orient="records")
        return d

    def metrics(self, prefix: str = "cost") -> dict[str, float]:
        """Flat ``prefix/key`` metrics (for metrics.json / tracking)."""
        out = {f"{prefix}/per_ticket": self.cost_per_ticket, f"{prefix}/monthly": self.monthly_cost,
               f"{prefix}/monthly_without_people": self.monthly_cost_without_people,
               f"{prefix}/monthly_all_llm": self.monthly_all_llm}
        for row in self.per_path.itertuples():
            out[f"{prefix}/share_{row.path}"] = float(row.share)
        return out

    def per_policy(self, policy: str = "triage policy (as run)") -> pd.DataFrame:
        """Monthly USD per cost part (columns ``model``, ``llm``, ``review``, ``draft``, ``total``)
        for each routing policy: the triage policy as run on these tickets, and every ticket to
        the LLM (LLM calls only, no people)."""
        ours = {part: sum(self.per_component.get(c, 0.0) for c in comps) * self.tickets_per_month
                for part, comps, _ in PARTS}
        all_llm = {part: 0.0 for part, _, _ in PARTS} | {"llm": self.monthly_all_llm}
        frame = pd.DataFrame([{"policy": policy, **ours}, {"policy": "all to LLM (no people)", **all_llm}])
        frame["total"] = frame[[p for p, _, _ in PARTS]].sum(axis=1)
        return frame

    def plot(self, path: str | Path, *, data: str | None = None, cfg: "CostConfig | None" = None) -> Path:
        """Stacked bars: each routing policy's monthly cost split into model, LLM, reviewer and
        draft-confirmation parts (CSV beside it). ``data`` names the tickets it was measured on."""
        from ticket_triage.monitoring.plots import plot_cost_stacked

        labels = {part: label for part, _, label in PARTS}
        if cfg is not None:
            labels["review"] += f", {cfg.human_minutes_per_review:g} min at ${cfg.human_hourly_rate:g}/h"
            labels["draft"] += f", {cfg.draft_minutes_per_ticket:g} min at ${cfg.human_hourly_rate:g}/h"
        measured = f"measured on {self.n:,} {data or 'tickets'}"
        return plot_cost_stacked(self.per_policy(), labels, path,
                                 subtitle=f"{measured}; projected to {self.tickets_per_month:,} tickets a month")


def decision_path(d: dict[str, Any]) -> str:
    """The path that decided a ticket (see the module docstring)."""
    source = str(d.get("source") or "model")
    if d.get("band") == "review" or source == "human":
        return "human"
    if source not in PATHS:
        raise ValueError(f"unknown decision source {source!r}; expected one of {', '.join(PATHS)}")
    return source


def _llm_cost(llm: dict[str, Any] | None, cfg: CostConfig) -> float:
    if not llm:
        return 0.0
    if llm.get("cost_usd") is not None:
        return float(llm["cost_usd"])
    return cfg.llm_call_cost(llm.get("input_tokens"), llm.get("output_tokens"))


def cost_report(decisions: Iterable[dict[str, Any]], cfg: CostConfig | dict[str, Any] | None = None
                ) -> CostReport:
    """Cost per path and per ticket for a list of decisions (dicts with ``source``, ``band``
    and optionally ``llm`` = {"cost_usd" | "input_tokens"/"output_tokens"})."""
    cfg = cfg if isinstance(cfg, CostConfig) else CostConfig.from_dict(cfg)
    rows = []
    for d in decisions:
        if not isinstance(d, dict):
            d = d.to_dict() if hasattr(d, "to_dict") else dict(d)
        source = str(d.get("source") or "model")
        band = d.get("band")
        rows.append({
            "path": decision_path(d),
            "rules": cfg.rules_per_1k_tickets / 1000 if source == "rules" else 0.0,
            "classical": cfg.classical_per_1k_tickets / 1000 if source != "rules" else 0.0,
            "llm": _llm_cost(d.get("llm"), cfg),
            "review": cfg.review_cost if band == "review" else 0.0,
            "draft": cfg.draft_cost if band == "draft" else 0.0,
        })
    if not rows:
        raise ValueError("cost_report needs at least one decision; got none")
    frame = pd.DataFrame(rows)
    comps = ["rules", "classical", "llm", "review", "draft"]
    frame["total"] = frame[comps].sum(axis=1)
    n = len(frame)
    per_month = int(cfg.tickets_per_day * cfg.days_per_month)
    grouped = frame.groupby("path")["total"].agg(["size", "sum"]).reindex(list(PATHS), fill_value=0)
    per_path = pd.DataFrame({
        "path": list(PATHS),
        "n": grouped["size"].astype(int).to_numpy(),
        "share": (grouped["size"] / n).to_numpy(),
        "cost_total": grouped["sum"].to_numpy(float),
    })
    per_path["cost_per_ticket"] = (per_path["cost_total"] / per_path["n"].where(per_path["n"] > 0)).fillna(0.0)
    per_path["monthly_cost"] = per_path["cost_total"] / n * per_month
    per_ticket = float(frame["total"].mean())
    without_people = float(frame[["rules", "classical", "llm"]].sum(axis=1).mean())
    llm_calls = frame.loc[frame["llm"] > 0, "llm"]
    llm_per_call = float(llm_calls.mean()) if len(llm_calls) else cfg.llm_call_cost()
    return CostReport(per_path=per_path, per_component={c: float(frame[c].mean()) for c in comps},
                      cost_per_ticket=per_ticket, monthly_cost=per_ticket * per_month,
                      monthly_cost_without_people=without_people * per_month,
                      monthly_all_llm=llm_per_call * per_month, llm_cost_per_call=llm_per_call,
                      tickets_per_month=per_month, n=n)
