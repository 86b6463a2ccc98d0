"""LLM fallback configuration: ``LLMConfig`` (validated, unknown keys refused), loaded from
the ``llm`` params section or, at serve time, from ``TRIAGE_LLM_CONFIG`` / params.yaml with
environment overrides. The API key is read only from the environment, never from a file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping


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
    max_concurrency: int = 8               # LLM calls in flight at once for one batch
    batch_deadline_s: float = 40.0         # one deadline for all LLM calls of a batch (< the
                                           # service's 60 s request timeout); late -> llm_deadline

    def __post_init__(self) -> None:
        problems = []
        if self.timeout_s <= 0:
            problems.append(f"llm.timeout_s must be > 0 (got {self.timeout_s})")
        if self.max_retries < 0:
            problems.append(f"llm.max_retries must be >= 0 (got {self.max_retries})")
        if self.failures_to_open < 1:
            problems.append(f"llm.failures_to_open must be >= 1 (got {self.failures_to_open})")
        if self.max_concurrency < 1:
            problems.append(f"llm.max_concurrency must be >= 1 (got {self.max_concurrency})")
        if not 0 < self.batch_deadline_s < 60:
            problems.append(f"llm.batch_deadline_s must be > 0 and below the service's 60 s request "
                            f"timeout (got {self.batch_deadline_s})")
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
    for key in ("timeout_s", "batch_deadline_s", "backoff_s", "max_backoff_s", "reset_after_s", "daily_budget_usd",
                "price_input_per_1m", "price_output_per_1m", "temperature"):
        if key in kw:
            try:
                kw[key] = float(kw[key])
            except (TypeError, ValueError):
                raise LLMConfigError(f"llm.{key} must be a number (got {kw[key]!r})") from None
    for key in ("max_retries", "max_concurrency", "failures_to_open", "cache_size", "few_shot_k",
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
    ``llm`` section of the params the process deploys with (the file named by ``TRIAGE_PARAMS``,
    as for the review queue and the webhooks, else ``params.yaml``), else everything off. Then
    the environment overrides of :func:`load_llm_config`.
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

            # the same file as ticket_triage.service.mounts.deploy_params (ENV_PARAMS there)
            raw = load_params(env.get("TRIAGE_PARAMS") or None).get("llm")
        except (ImportError, ConfigError, OSError):
            raw = None
    return load_llm_config(raw or {}, env=env)
