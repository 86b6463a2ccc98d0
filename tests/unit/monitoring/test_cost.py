"""Cost numbers checked by hand."""

from __future__ import annotations

import pytest

from ticket_triage.monitoring.cost import CostConfig, cost_report, decision_path

CFG = {"classical_per_1k_tickets": 0.02, "rules_per_1k_tickets": 0.0, "llm_input_per_1m_tokens": 0.15,
       "llm_output_per_1m_tokens": 0.60, "llm_input_tokens_per_call": 900, "llm_output_tokens_per_call": 60,
       "human_minutes_per_review": 3.0, "draft_minutes_per_ticket": 0.5, "human_hourly_rate": 30.0,
       "tickets_per_day": 10000, "days_per_month": 30}

DECISIONS = (
    [{"source": "rules", "band": "auto_route"}] * 2
    + [{"source": "model", "band": "auto_route"}] * 4
    + [{"source": "model", "band": "draft"},
       {"source": "llm", "band": "auto_route", "llm": {"cost_usd": 0.001}},
       {"source": "llm", "band": "draft", "llm": {"input_tokens": 1000, "output_tokens": 100}},
       {"source": "model", "band": "review", "llm": None}]
)


def test_config_prices():
    cfg = CostConfig.from_dict(CFG)
    assert cfg.llm_call_cost() == pytest.approx(900 * 0.15e-6 + 60 * 0.6e-6)  # 1.71e-4
    assert cfg.review_cost == pytest.approx(1.5)
    assert cfg.draft_cost == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown key"):
        CostConfig.from_dict({"llm_price": 1})
    with pytest.raises(ValueError, match="non-negative"):
        CostConfig.from_dict({"human_hourly_rate": -1})


def test_cost_report_hand_computed():
    r = cost_report(DECISIONS, CFG)
    assert r.n == 10
    pp = r.per_path.set_index("path")
    assert pp["n"].to_dict() == {"rules": 2, "model": 5, "llm": 2, "human": 1}
    assert pp["share"].to_dict() == pytest.approx({"rules": 0.2, "model": 0.5, "llm": 0.2, "human": 0.1})
    classical = 8 * 0.02 / 1000                      # every ticket not decided by a rule
    llm = 0.001 + (1000 * 0.15 + 100 * 0.60) / 1e6   # cost_usd, then token counts
    people = 2 * 0.25 + 1.5                          # two drafts, one review
    total = classical + llm + people
    assert r.cost_per_ticket == pytest.approx(total / 10)
    assert r.tickets_per_month == 300_000
    assert r.monthly_cost == pytest.approx(total / 10 * 300_000)
    assert r.monthly_cost_without_people == pytest.approx((classical + llm) / 10 * 300_000)
    assert r.llm_cost_per_call == pytest.approx(llm / 2)
    assert r.monthly_all_llm == pytest.approx(llm / 2 * 300_000)
    assert pp.loc["human", "cost_total"] == pytest.approx(0.02 / 1000 + 1.5)
    assert pp.loc["model", "cost_per_ticket"] == pytest.approx((5 * 0.02 / 1000 + 0.25) / 5)
    assert pp["monthly_cost"].sum() == pytest.approx(r.monthly_cost)
    m = r.metrics()
    assert m["cost/share_human"] == pytest.approx(0.1)


def test_all_llm_baseline_falls_back_to_configured_tokens():
    r = cost_report([{"source": "model", "band": "auto_route"}] * 3, CFG)
    assert r.monthly_all_llm == pytest.approx((900 * 0.15 + 60 * 0.60) / 1e6 * 300_000)
    assert r.per_path.set_index("path").loc["llm", "n"] == 0


def test_paths_and_errors():
    assert decision_path({"source": "llm", "band": "review"}) == "human"
    assert decision_path({"source": "human", "band": "auto_route"}) == "human"
    with pytest.raises(ValueError, match="unknown decision source"):
        cost_report([{"source": "oracle", "band": "auto_route"}], CFG)
    with pytest.raises(ValueError, match="at least one"):
        cost_report([], CFG)


def test_per_policy_parts_are_separate():
    """Reviewer and draft time are their own parts, never folded into the model's cost."""
    r = cost_report(DECISIONS, CFG)
    pol = r.per_policy().set_index("policy")
    ours, llm_only = pol.iloc[0], pol.loc["all to LLM (no people)"]
    month = 300_000 / 10
    assert ours["model"] == pytest.approx(8 * 0.02 / 1000 * month)
    assert ours["llm"] == pytest.approx((0.001 + (1000 * 0.15 + 100 * 0.60) / 1e6) * month)
    assert ours["review"] == pytest.approx(1.5 * month)
    assert ours["draft"] == pytest.approx(2 * 0.25 * month)
    assert ours["total"] == pytest.approx(r.monthly_cost)
    assert llm_only["llm"] == pytest.approx(r.monthly_all_llm)
    assert llm_only[["model", "review", "draft"]].sum() == 0


def test_cost_plot(tmp_path):
    import pandas as pd

    cfg = CostConfig.from_dict(CFG)
    out = cost_report(DECISIONS, CFG).plot(tmp_path / "cost.png", data="test tickets", cfg=cfg)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(out.with_suffix(".csv")).set_index("policy")
    assert list(table.columns) == ["model", "llm", "review", "draft", "total"]
    assert table.loc["all to LLM (no people)", "review"] == 0
