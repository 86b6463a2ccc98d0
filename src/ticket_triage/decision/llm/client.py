"""``LLMFallback``: the thread-safe client for an OpenAI-compatible chat endpoint, with an LRU
response cache, a daily budget cap, a circuit breaker, retries with backoff honouring
``Retry-After``, an overall deadline and per-call cost accounting. It never raises for
endpoint trouble: it returns an abstaining ``LLMResult`` with ``error`` set.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from ticket_triage.decision.llm.config import (
    ABSTAIN,
    LLMConfig,
    LLMConfigError,
    LOCAL_PLACEHOLDER_KEY,
    load_llm_config,
)
from ticket_triage.decision.llm.policy import LLMResult
from ticket_triage.decision.llm.prompt import (
    SYSTEM_PROMPT,
    _cut,
    _redact,
    parse_answer,
    render_taxonomy,
)
from ticket_triage.taxonomy import Taxonomy

log = logging.getLogger(__name__)


class _Failure(Exception):
    """An attempt failed; ``code`` is the short error recorded in the result."""

    def __init__(self, code: str, retryable: bool, retry_after: float | None = None):
        super().__init__(code)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(float(ra), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
        return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class LLMFallback:
    """Thread-safe client for the LLM second opinion (see the module docstring)."""

    def __init__(self, cfg: LLMConfig | Mapping[str, Any] | None, taxonomy: Taxonomy,
                 *, clock: Callable[[], float] = time.monotonic,
                 today: Callable[[], str] | None = None):
        self.cfg = cfg if isinstance(cfg, LLMConfig) else load_llm_config(cfg)
        self.taxonomy = taxonomy
        unknown = [x for x in self.cfg.disabled_labels if x not in taxonomy.topic_ids]
        if unknown:
            raise LLMConfigError(f"llm.disabled_labels names unknown topic(s) {unknown}; "
                                 f"known: {', '.join(taxonomy.topic_ids)}")
        self._clock = clock
        self._today = today or (lambda: datetime.now(timezone.utc).date().isoformat())
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, LLMResult] = OrderedDict()
        self._client: Any = None
        self._system_cache: dict[tuple[str, ...], str] = {}
        self._day = self._today()
        self._spent_today = 0.0
        self._consecutive_failures = 0
        self._open_until = 0.0
        self._stats = {"calls": 0, "requests": 0, "cache_hits": 0, "errors": 0,
                       "skipped_budget": 0, "skipped_circuit": 0, "abstained": 0,
                       "input_tokens": 0, "output_tokens": 0, "total_cost_usd": 0.0}
        if self.cfg.enabled:  # build the client now: importing the SDK takes seconds
            if not self.cfg.api_key and self.cfg.base_url is None:
                log.warning("llm: enabled for api.openai.com but no key: export TRIAGE_LLM_API_KEY "
                            "(or OPENAI_API_KEY), or set llm.base_url to a local server; every "
                            "call will abstain with error no_api_key")
            else:
                self._get_client()

    # -- public -------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands whose tickets should be sent here; empty when the fallback is disabled."""
        return self.cfg.bands if self.cfg.enabled else ()

    def classify(self, text: str, model_topic: str | None = None,
                 few_shot: Sequence[tuple[str, str]] = (),
                 candidates: Sequence[str] | None = None) -> LLMResult:
        """Ask for one topic of ``candidates`` (default: every topic) or abstain; never raises.

        ``text`` is the cleaned ticket text; ``few_shot`` are ``(text, topic)`` pairs of the
        nearest labelled tickets (only the first ``few_shot_k`` are sent). ``model_topic`` is
        not shown to the LLM (no anchoring); it is used for nothing but the log line.
        """
        start = self._clock()
        cfg = self.cfg
        base = dict(model=cfg.model, prompt_version=cfg.prompt_version)
        if not cfg.enabled:
            return LLMResult(None, error="disabled", **base)
        try:
            allowed = self._allowed(candidates)
            safe_text = _cut(_redact(text or ""), cfg.max_text_chars)
            shots = [(_cut(_redact(t or ""), cfg.max_example_chars), str(lab))
                     for t, lab in list(few_shot)[: cfg.few_shot_k]]
        except Exception as exc:  # a bad argument must not take the caller down
            log.warning("llm: could not prepare the request: %s", exc)
            return LLMResult(None, error=f"bad_input:{type(exc).__name__}", **base)
        if not safe_text.strip():
            return LLMResult(None, error="empty_text", **base)
        key = hashlib.sha256(json.dumps(
            [cfg.prompt_version, cfg.model, safe_text, sorted(allowed), shots],
            ensure_ascii=False).encode()).hexdigest()

        with self._lock:
            self._roll_day()
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self._stats["cache_hits"] += 1
                res = LLMResult(**{**asdict(hit), "cached": True, "cost_usd": 0.0,
                                   "input_tokens": 0, "output_tokens": 0,
                                   "latency_ms": (self._clock() - start) * 1000})
                return res
            if cfg.daily_budget_usd <= 0 or self._spent_today >= cfg.daily_budget_usd:
                self._stats["skipped_budget"] += 1
                return LLMResult(None, error="budget_exhausted", **base)
            if self._consecutive_failures >= cfg.failures_to_open and self._clock() < self._open_until:
                self._stats["skipped_circuit"] += 1
                return LLMResult(None, error="circuit_open", **base)
            self._stats["calls"] += 1

        messages = self._messages(safe_text, shots, allowed)
        result = self._call(messages, allowed, start)
        result.latency_ms = (self._clock() - start) * 1000
        with self._lock:
            self._roll_day()
            self._spent_today += result.cost_usd
            self._stats["total_cost_usd"] += result.cost_usd
            self._stats["input_tokens"] += result.input_tokens
            self._stats["output_tokens"] += result.output_tokens
            endpoint_failed = result.error is not None and result.error not in (
                "malformed_json", "invalid_label", "disabled_label", "empty_answer")
            if result.error:
                self._stats["errors"] += 1
            elif result.label is None:
                self._stats["abstained"] += 1
            if endpoint_failed:
                self._consecutive_failures += 1
                if self._consecutive_failures >= cfg.failures_to_open:
                    self._open_until = self._clock() + cfg.reset_after_s
                    log.warning("llm: %d consecutive failures, circuit open for %.0fs (last: %s)",
                                self._consecutive_failures, cfg.reset_after_s, result.error)
            else:
                self._consecutive_failures = 0
                if result.error is None and cfg.cache_size > 0:
                    self._cache[key] = result
                    self._cache.move_to_end(key)
                    while len(self._cache) > cfg.cache_size:
                        self._cache.popitem(last=False)
        log.debug("llm: model_topic=%s llm=%s error=%s %.0fms", model_topic, result.raw_label,
                  result.error, result.latency_ms)
        return result

    def stats(self) -> dict[str, Any]:
        """Counters since start: calls, cache_hits, errors, total_cost_usd, budget_left, ..."""
        with self._lock:
            self._roll_day()
            out: dict[str, Any] = dict(self._stats)
            out["total_cost_usd"] = round(out["total_cost_usd"], 8)
            out["spent_today_usd"] = round(self._spent_today, 8)
            out["budget_left"] = round(max(self.cfg.daily_budget_usd - self._spent_today, 0.0), 8)
            out["circuit_open"] = (self._consecutive_failures >= self.cfg.failures_to_open
                                   and self._clock() < self._open_until)
            out["consecutive_failures"] = self._consecutive_failures
            out["cache_size"] = len(self._cache)
            out["enabled"] = self.cfg.enabled
            out["model"] = self.cfg.model
            return out

    def describe(self) -> dict[str, Any]:
        """For readiness pages: on/off, endpoint host, model, prompt version (no secret)."""
        return {"enabled": self.cfg.enabled, "model": self.cfg.model,
                "base_url": self.cfg.base_url, "prompt_version": self.cfg.prompt_version,
                "bands": list(self.cfg.bands), "allow_draft_to_auto": self.cfg.allow_draft_to_auto,
                "daily_budget_usd": self.cfg.daily_budget_usd}

    def build_messages(self, text: str, few_shot: Sequence[tuple[str, str]] = (),
                       candidates: Sequence[str] | None = None) -> list[dict[str, str]]:
        """The chat messages classify() would send (redacted), for inspection and tests."""
        allowed = self._allowed(candidates)
        shots = [(_cut(_redact(t), self.cfg.max_example_chars), lab)
                 for t, lab in list(few_shot)[: self.cfg.few_shot_k]]
        return self._messages(_cut(_redact(text), self.cfg.max_text_chars), shots, allowed)

    # -- internals ----------------------------------------------------------------------

    def _allowed(self, candidates: Sequence[str] | None) -> list[str]:
        ids = self.taxonomy.topic_ids
        if candidates:
            chosen = [c for c in dict.fromkeys(candidates) if c in ids]
            if chosen:
                return chosen
        return list(ids)

    def _roll_day(self) -> None:
        day = self._today()
        if day != self._day:
            self._day, self._spent_today = day, 0.0

    def _messages(self, text: str, shots: list[tuple[str, str]],
                  allowed: list[str]) -> list[dict[str, str]]:
        key = tuple(allowed)
        system = self._system_cache.get(key)
        if system is None:
            system = SYSTEM_PROMPT.format(taxonomy=render_taxonomy(self.taxonomy, allowed))
            system = _redact(system)
            self._system_cache[key] = system
        user = []
        if shots:
            user.append("Similar tickets, already labelled:")
            user += [f"- [{lab}] {t}" for t, lab in shots]
            user.append("")
        user.append(f"Allowed labels: {', '.join(allowed)}, {ABSTAIN}")
        user.append("Ticket:")
        user.append(text)
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(user)}]

    def _response_format(self, allowed: list[str]) -> dict[str, Any] | None:
        if self.cfg.response_format == "none":
            return None
        if self.cfg.response_format == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {
            "name": "ticket_topic", "strict": True,
            "schema": {"type": "object", "additionalProperties": False,
                       "required": ["label", "reason"],
                       "properties": {"label": {"type": "string", "enum": [*allowed, ABSTAIN]},
                                      "reason": {"type": "string"}}}}}

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai

                key = self.cfg.api_key
                if not key:
                    if self.cfg.base_url is None:
                        raise _Failure("no_api_key", retryable=False)
                    key = LOCAL_PLACEHOLDER_KEY
                self._client = openai.OpenAI(base_url=self.cfg.base_url, api_key=key,
                                             timeout=self.cfg.timeout_s, max_retries=0)
            return self._client

    def _price(self, tin: int, tout: int) -> float:
        return (tin * self.cfg.price_input_per_1m + tout * self.cfg.price_output_per_1m) / 1e6

    def _call(self, messages: list[dict[str, str]], allowed: list[str], start: float) -> LLMResult:
        cfg = self.cfg
        base = dict(model=cfg.model, prompt_version=cfg.prompt_version)
        deadline = start + cfg.timeout_s
        last = "unknown_error"
        tin = tout = 0
        for attempt in range(cfg.max_retries + 1):
            remaining = deadline - self._clock()
            if remaining <= 0.05:
                last = "timeout" if attempt else last
                break
            try:
                with self._lock:
                    self._stats["requests"] += 1
                completion = self._request(messages, allowed, remaining)
            except _Failure as f:
                last = f.code
                if not f.retryable or attempt == cfg.max_retries:
                    break
                wait = min(cfg.backoff_s * (2 ** attempt), cfg.max_backoff_s)
                if f.retry_after is not None:
                    wait = max(wait, f.retry_after)
                if self._clock() + wait >= deadline - 0.05:
                    break  # the endpoint asks us to wait past our deadline: give up now
                time.sleep(wait)
                continue
            usage = getattr(completion, "usage", None)
            tin = int(getattr(usage, "prompt_tokens", 0) or 0)
            tout = int(getattr(usage, "completion_tokens", 0) or 0)
            content = None
            try:
                msg = completion.choices[0].message
                content = msg.content
                if not content and getattr(msg, "refusal", None):
                    content = json.dumps({"label": ABSTAIN, "reason": "refused"})
            except (AttributeError, IndexError, TypeError):
                content = None
            label, raw, reason, err = parse_answer(content, allowed, cfg.disabled_labels)
            return LLMResult(label, raw, reason, self._price(tin, tout), tin, tout,
                             error=err, **base)
        return LLMResult(None, error=last, cost_usd=self._price(tin, tout), **base)

    def _request(self, messages: list[dict[str, str]], allowed: list[str], timeout: float) -> Any:
        import openai

        client = self._get_client()
        kwargs: dict[str, Any] = dict(model=self.cfg.model, messages=messages,
                                      temperature=self.cfg.temperature,
                                      max_tokens=self.cfg.max_output_tokens, timeout=timeout)
        rf = self._response_format(allowed)
        if rf is not None:
            kwargs["response_format"] = rf
        try:
            return client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise _Failure("timeout", retryable=False) from None
        except openai.APIConnectionError:
            raise _Failure("connection_error", retryable=True) from None
        except openai.RateLimitError as exc:
            headers = getattr(getattr(exc, "response", None), "headers", None)
            raise _Failure("rate_limited", retryable=True, retry_after=_retry_after(headers)) from None
        except openai.APIStatusError as exc:
            code = int(getattr(exc, "status_code", 0) or 0)
            retryable = code >= 500 or code in (408, 409)
            raise _Failure(f"http_{code}", retryable=retryable) from None
        except openai.APIResponseValidationError:
            raise _Failure("malformed_response", retryable=False) from None
        except Exception as exc:  # the SDK may raise others (e.g. JSON decode of a 200 body)
            log.warning("llm: unexpected %s from the endpoint: %s", type(exc).__name__, exc)
            raise _Failure(f"unexpected:{type(exc).__name__}", retryable=False) from None
