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

Config (``conf/llm/*.yaml``, composed into params under ``llm``)::

    enabled: false
    base_url: null            # env TRIAGE_LLM_BASE_URL overrides; null = api.openai.com
    model: gpt-4o-mini        # env TRIAGE_LLM_MODEL overrides
    timeout_s: 8              # overall deadline of one classify() call, retries included
    ...

The API key is read only from the environment (``TRIAGE_LLM_API_KEY``, else ``OPENAI_API_KEY``),
never from a file.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from ticket_triage.taxonomy import Taxonomy

__all__ = [
    "ABSTAIN",
    "LLMConfig",
    "LLMConfigError",
    "LLMFallback",
    "LLMResult",
    "combine",
    "load_llm_config",
    "serving_llm_config",
    "should_consult",
]

log = logging.getLogger(__name__)

ABSTAIN = "abstain"
ENV_BASE_URL = "TRIAGE_LLM_BASE_URL"
ENV_MODEL = "TRIAGE_LLM_MODEL"
ENV_ENABLED = "TRIAGE_LLM_ENABLED"
ENV_CONFIG = "TRIAGE_LLM_CONFIG"
ENV_API_KEYS = ("TRIAGE_LLM_API_KEY", "OPENAI_API_KEY")
# Local OpenAI-compatible servers (vLLM, Ollama) accept any key; the SDK insists on one.
LOCAL_PLACEHOLDER_KEY = "not-needed"
_BAND_UP = {"review": "draft", "draft": "auto_route", "auto_route": "auto_route"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class LLMConfigError(ValueError):
    """The LLM config is unusable (the message names the key and what to set)."""


@dataclass(frozen=True)
class LLMConfig:
    """Every knob of the LLM fallback (one documented place; see ``conf/llm/``)."""

    enabled: bool = False
    provider: str = "openai"               # informational: openai | local
    base_url: str | None = None            # None = the SDK default (api.openai.com)
    model: str = "gpt-4o-mini"
    api_key: str | None = field(default=None, repr=False)  # from the environment only
    timeout_s: float = 8.0                 # overall deadline of one classify(), retries included
    max_retries: int = 2                   # extra attempts after the first (429, 5xx, connection)
    backoff_s: float = 0.5                 # first backoff; doubles each retry
    max_backoff_s: float = 4.0
    failures_to_open: int = 5              # consecutive failed calls that open the breaker
    reset_after_s: float = 60.0            # breaker stays open this long, then one trial call
    daily_budget_usd: float = 5.0          # UTC day; 0 or less = no calls at all
    price_input_per_1m: float = 0.15       # USD per 1M input tokens
    price_output_per_1m: float = 0.60      # USD per 1M output tokens
    bands: tuple[str, ...] = ("draft", "review")   # bands whose tickets are sent to the LLM
    allow_draft_to_auto: bool = False      # may agreement lift draft to auto_route?
    disabled_labels: tuple[str, ...] = ()  # topics the LLM may never assign (answer -> abstain)
    cache_size: int = 4096
    few_shot_k: int = 5
    prompt_version: str = "v1"
    response_format: str = "json_schema"   # json_schema | json_object | none
    max_output_tokens: int = 120
    temperature: float = 0.0
    max_text_chars: int = 4000             # ticket text sent is cut here (cost bound)
    max_example_chars: int = 400           # each few-shot example is cut here

    def __post_init__(self) -> None:
        problems = []
        if self.timeout_s <= 0:
            problems.append(f"llm.timeout_s must be > 0 (got {self.timeout_s})")
        if self.max_retries < 0:
            problems.append(f"llm.max_retries must be >= 0 (got {self.max_retries})")
        if self.failures_to_open < 1:
            problems.append(f"llm.failures_to_open must be >= 1 (got {self.failures_to_open})")
        if self.cache_size < 0:
            problems.append(f"llm.cache_size must be >= 0 (got {self.cache_size})")
        bad = [b for b in self.bands if b not in ("auto_route", "draft", "review")]
        if bad:
            problems.append(f"llm.bands has unknown band(s) {bad}; use draft and/or review")
        if self.response_format not in ("json_schema", "json_object", "none"):
            problems.append(f"llm.response_format must be json_schema, json_object or none "
                            f"(got {self.response_format!r})")
        if problems:
            raise LLMConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The config without the secret (safe to log to MLflow or show on /ready_info)."""
        d = asdict(self)
        d.pop("api_key", None)
        d["api_key_set"] = bool(self.api_key)
        d["bands"] = list(self.bands)
        d["disabled_labels"] = list(self.disabled_labels)
        return d


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise LLMConfigError(f"{key} must be true/false (got {value!r})")


def load_llm_config(cfg: Mapping[str, Any] | LLMConfig | None = None,
                    env: Mapping[str, str] | None = None) -> LLMConfig:
    """Build an :class:`LLMConfig` from the ``llm`` params section plus environment overrides.

    Environment: ``TRIAGE_LLM_ENABLED`` (true/false), ``TRIAGE_LLM_BASE_URL``,
    ``TRIAGE_LLM_MODEL``, and the key from ``TRIAGE_LLM_API_KEY`` / ``OPENAI_API_KEY``.
    A key written in the config is refused: keys live in the environment only.
    """
    env = os.environ if env is None else env
    if isinstance(cfg, LLMConfig):
        raw: dict[str, Any] = asdict(cfg)
    else:
        raw = dict(cfg or {})
        if raw.get("api_key"):
            raise LLMConfigError("llm.api_key is set in a config file: remove it and export "
                                 "TRIAGE_LLM_API_KEY (or OPENAI_API_KEY) instead")
        raw.pop("api_key", None)
        raw.pop("defaults", None)  # a Hydra defaults list when a conf/llm file is read directly
    known = {f.name for f in fields(LLMConfig)}
    # Accept the short spellings used in some configs.
    aliases = {"price_in_per_1m": "price_input_per_1m", "price_out_per_1m": "price_output_per_1m",
               "k": "few_shot_k"}
    for old, new in aliases.items():
        if old in raw and new not in raw:
            raw[new] = raw.pop(old)
    breaker = raw.pop("circuit_breaker", None)
    if isinstance(breaker, Mapping):
        raw.setdefault("failures_to_open", breaker.get("failures_to_open", 5))
        raw.setdefault("reset_after_s", breaker.get("reset_after_s", 60.0))
    few = raw.pop("few_shot", None)
    if isinstance(few, Mapping):
        raw.setdefault("few_shot_k", few.get("k", 5))
    elif isinstance(few, int):
        raw.setdefault("few_shot_k", few)
    unknown = sorted(set(raw) - known)
    if unknown:
        log.warning("llm config: ignoring unknown key(s) %s", ", ".join(unknown))
    kw = {k: v for k, v in raw.items() if k in known}
    if env.get(ENV_ENABLED) is not None:
        kw["enabled"] = _as_bool(env[ENV_ENABLED], ENV_ENABLED)
    if env.get(ENV_BASE_URL):
        kw["base_url"] = env[ENV_BASE_URL]
    if env.get(ENV_MODEL):
        kw["model"] = env[ENV_MODEL]
    kw["api_key"] = next((env[k] for k in ENV_API_KEYS if env.get(k)), kw.get("api_key"))
    if "enabled" in kw:
        kw["enabled"] = _as_bool(kw["enabled"], "llm.enabled")
    if "allow_draft_to_auto" in kw:
        kw["allow_draft_to_auto"] = _as_bool(kw["allow_draft_to_auto"], "llm.allow_draft_to_auto")
    for key in ("bands", "disabled_labels"):
        if key in kw:
            kw[key] = tuple(kw[key] or ())
    if kw.get("base_url") in ("", "null", "None"):
        kw["base_url"] = None
    for key in ("timeout_s", "backoff_s", "max_backoff_s", "reset_after_s", "daily_budget_usd",
                "price_input_per_1m", "price_output_per_1m", "temperature"):
        if key in kw:
            try:
                kw[key] = float(kw[key])
            except (TypeError, ValueError):
                raise LLMConfigError(f"llm.{key} must be a number (got {kw[key]!r})") from None
    for key in ("max_retries", "failures_to_open", "cache_size", "few_shot_k",
                "max_output_tokens", "max_text_chars", "max_example_chars"):
        if key in kw:
            try:
                kw[key] = int(kw[key])
            except (TypeError, ValueError):
                raise LLMConfigError(f"llm.{key} must be an integer (got {kw[key]!r})") from None
    if "prompt_version" in kw:
        kw["prompt_version"] = str(kw["prompt_version"])
    return LLMConfig(**kw)


def serving_llm_config(env: Mapping[str, str] | None = None) -> LLMConfig:
    """The LLM config a server runs with.

    Base: the YAML file named by ``TRIAGE_LLM_CONFIG`` (e.g. ``conf/llm/local.yaml``), else the
    ``llm`` section of ``params.yaml`` when the server runs in the project, else everything off.
    Then the environment overrides of :func:`load_llm_config`.
    """
    env = os.environ if env is None else env
    raw: Mapping[str, Any] | None = None
    if env.get(ENV_CONFIG):
        import yaml

        path = env[ENV_CONFIG]
        try:
            with open(path, encoding="utf-8") as fh:
                raw = yaml.safe_load(fh) or {}
        except OSError as exc:
            raise LLMConfigError(f"{ENV_CONFIG}={path}: cannot read it ({exc}); point it at a "
                                 "conf/llm/*.yaml file or unset it") from None
        if not isinstance(raw, Mapping):
            raise LLMConfigError(f"{ENV_CONFIG}={path} is not a YAML mapping of llm settings")
        raw = raw.get("llm", raw) if isinstance(raw.get("llm"), Mapping) else raw
    else:
        try:
            from ticket_triage.config import ConfigError, load_params

            raw = load_params().get("llm")
        except (ImportError, ConfigError, OSError):
            raw = None
    return load_llm_config(raw or {}, env=env)


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


# --------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------

def _redact(text: str) -> str:
    """Strict redaction (``ticket_triage.text.pii``): text leaving the process loses every
    personal datum the cleaning step may have missed, and long digit runs and codes too."""
    from ticket_triage.text.pii import redact_pii

    return redact_pii(text, strict=True)


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def render_taxonomy(taxonomy: Taxonomy, labels: Sequence[str]) -> str:
    """The taxonomy as prompt text: each allowed topic with description, examples; boundaries."""
    lines = []
    wanted = set(labels)
    for t in taxonomy.topics:
        if t.id not in wanted:
            continue
        lines.append(f"- {t.id}: {t.description}")
        for ex in t.examples[:3]:
            lines.append(f"    e.g. \"{_cut(ex, 200)}\"")
    if taxonomy.boundaries:
        lines.append("")
        lines.append("Boundary decisions (these override intuition):")
        for b in taxonomy.boundaries:
            lines.append(f"- {b.case} -> {b.decision}")
    return "\n".join(lines)


SYSTEM_PROMPT = """You route customer support tickets to exactly one topic of a fixed taxonomy.

Topics:
{taxonomy}

Answer with a JSON object {{"label": <topic id or "abstain">, "reason": <at most 20 words>}}.
Use "abstain" when no topic clearly fits, when the ticket mixes several topics, or when you
are unsure. Never invent a topic id. Personal data was replaced by placeholders such as [EMAIL]."""


# --------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------

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


_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_answer(content: str | None, allowed: Sequence[str],
                 disabled: Sequence[str] = ()) -> tuple[str | None, str | None, str, str | None]:
    """Parse the model's message -> ``(label, raw_label, reason, error)``; never raises.

    Malformed JSON -> error ``malformed_json``; a label outside ``allowed`` -> ``invalid_label``;
    a label in ``disabled`` -> ``disabled_label``; ``abstain`` -> label None without error.
    """
    if not content or not content.strip():
        return None, None, "", "empty_answer"
    text = content.strip()
    data: Any = None
    try:
        data = json.loads(text)
    except (ValueError, TypeError):
        m = _JSON_OBJECT.search(text)  # a model wrapping its JSON in prose or ``` fences
        if m:
            try:
                data = json.loads(m.group(0))
            except (ValueError, TypeError):
                data = None
    if not isinstance(data, dict) or "label" not in data:
        return None, None, "", "malformed_json"
    raw = data.get("label")
    reason = data.get("reason")
    reason = _cut(reason, 300) if isinstance(reason, str) else ""
    if not isinstance(raw, str):
        return None, None if raw is None else str(raw)[:100], reason, "invalid_label"
    raw_label = raw.strip()
    if raw_label.lower() == ABSTAIN:
        return None, ABSTAIN, reason, None
    if raw_label not in set(allowed):
        return None, raw_label[:100], reason, "invalid_label"
    if raw_label in set(disabled):
        return None, raw_label, reason, "disabled_label"
    return raw_label, raw_label, reason, None


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
