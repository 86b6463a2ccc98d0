"""The band policy around the LLM: which bands consult it (``should_consult``) and how its
answer merges with the model's band (``combine``); ``LLMResult`` is what it said.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from ticket_triage.decision.llm.config import LLMConfig, _BAND_UP, load_llm_config


@dataclass
class LLMResult:
    """What the LLM said about one ticket. ``label`` None means abstain (or an error)."""

    label: str | None
    raw_label: str | None = None
    reason: str = ""
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = False
    error: str | None = None
    latency_ms: float = 0.0
    model: str | None = None
    prompt_version: str | None = None

    @property
    def abstained(self) -> bool:
        return self.label is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def should_consult(band: str, cfg: LLMConfig | Mapping[str, Any]) -> bool:
    """Whether a ticket in ``band`` goes to the LLM under ``cfg`` (enabled and band listed)."""
    c = cfg if isinstance(cfg, LLMConfig) else load_llm_config(cfg, env={})
    return c.enabled and band in c.bands


def combine(model_band: str, model_topic: str | None, llm_result: LLMResult | None,
            cfg: LLMConfig | Mapping[str, Any],
            cold_start_topics: Sequence[str] = ()) -> tuple[str, str | None, str, str]:
    """Merge the model's band/topic with the LLM's answer -> ``(band, topic, source, reason)``.

    - LLM abstains, errors, or was not asked: unchanged (source ``model``; reason
      ``llm_abstained`` / ``llm_error:<what>`` / ``""``).
    - LLM names a cold-start topic (too few training examples for the model to know it):
      that topic, band ``draft`` (never ``auto_route``), source ``llm``, reason ``llm_cold_start``.
    - LLM agrees with the model: band moves up one step (review -> draft; draft ->
      auto_route only if ``allow_draft_to_auto``), source ``llm``, reason ``llm_agrees``.
    - LLM disagrees: band ``review``, topic stays the model's (the LLM label is in
      ``llm_result``), source ``model``, reason ``llm_disagrees``.
    """
    c = cfg if isinstance(cfg, LLMConfig) else load_llm_config(cfg, env={})
    if llm_result is None:
        return model_band, model_topic, "model", ""
    if llm_result.label is None:
        reason = f"llm_error:{llm_result.error}" if llm_result.error else "llm_abstained"
        return model_band, model_topic, "model", reason
    label = llm_result.label
    if label in set(cold_start_topics) and label != model_topic:
        return "draft", label, "llm", "llm_cold_start"
    if label == model_topic:
        up = _BAND_UP.get(model_band, model_band)
        if up == "auto_route" and model_band != "auto_route" and not c.allow_draft_to_auto:
            up = model_band
        if label in set(cold_start_topics) and up == "auto_route":
            up = "draft"
        return up, model_topic, ("llm" if up != model_band else "model"), "llm_agrees"
    return "review", model_topic, "model", "llm_disagrees"
