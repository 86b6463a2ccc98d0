"""The LLM fallback: a second opinion for the ambiguous middle (``draft`` / ``review`` bands).

``LLMFallback(cfg, taxonomy).classify(text, model_topic, few_shot)`` asks an OpenAI-compatible
chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server ...) for one taxonomy topic or
``"abstain"``, using structured output (a JSON schema whose ``label`` enum is the topic ids plus
``abstain``). It never raises for endpoint trouble (timeout, 5xx, 429, connection refused,
malformed JSON): it returns an abstaining :class:`LLMResult` with ``error`` set, within
``timeout_s`` overall. Around the call: PII redaction of everything sent (defence in depth, on
top of :func:`ticket_triage.text.clean.clean_text`), an LRU response cache, a daily budget cap, a
circuit breaker, retries with backoff honouring ``Retry-After``, and per-call cost accounting.

:func:`combine` is the rule that merges the model's band with the LLM's answer.

Modules: ``config`` (``LLMConfig`` and its loaders), ``prompt`` (what is sent, how the answer
is read), ``client`` (``LLMFallback``: HTTP, breaker, budget, cache) and ``policy`` (which bands
consult the LLM and how its answer moves the band). This package re-exports their public names.

Config (``conf/llm/*.yaml``, composed into params under ``llm``)::

    enabled: false
    base_url: null            # env TRIAGE_LLM_BASE_URL overrides; null = api.openai.com
    model: gpt-4o-mini        # env TRIAGE_LLM_MODEL overrides
    timeout_s: 8              # overall deadline of one classify() call, retries included
    max_concurrency: 8        # a batch's LLM calls run in a pool of this size ...
    batch_deadline_s: 40      # ... under one deadline; late tickets keep the model's decision
    ...

The API key is read only from the environment (``TRIAGE_LLM_API_KEY``, else ``OPENAI_API_KEY``),
never from a file.
"""

from __future__ import annotations

from ticket_triage.decision.llm.client import LLMFallback
from ticket_triage.decision.llm.config import (
    ABSTAIN,
    LLMConfig,
    LLMConfigError,
    load_llm_config,
    serving_llm_config,
)
from ticket_triage.decision.llm.policy import LLMResult, combine, should_consult
from ticket_triage.decision.llm.prompt import parse_answer

__all__ = [
    "ABSTAIN",
    "LLMConfig",
    "LLMConfigError",
    "LLMFallback",
    "LLMResult",
    "combine",
    "load_llm_config",
    "parse_answer",
    "serving_llm_config",
    "should_consult",
]
