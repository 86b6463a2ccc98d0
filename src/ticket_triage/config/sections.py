"""The typed params sections and the one strict loader that reads them.

:func:`strict_section` builds a section's dataclass from its params mapping: an unknown key
or a wrong type is a :class:`ConfigError` naming the section, the key and the fix. One frozen
dataclass per section holds that section's defaults (the only ones in the code);
:func:`sections` is the entry point (``ticket_triage.config`` re-exports all of it).
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Iterable, Mapping, TypeVar

DEFAULT_TARGET_PRECISION = 0.99  # train.target_precision when params do not set it
DEFAULT_REVIEW_DB_URL = "sqlite:///var/review.sqlite"  # review.db_url when params do not set it
DEFAULT_SEED = 42  # the top-level seed when params do not set it


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key and what is allowed."""


T = TypeVar("T")


def strict_section(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """The one strict loader: the dataclass ``cls`` from ``data`` (None = all defaults).
    Unknown keys are a :class:`ConfigError` naming them, the section and the allowed keys."""
    if not is_dataclass(cls):  # pragma: no cover - programming error
        raise TypeError(f"{cls!r} is not a dataclass")
    d = _mapping(data, where)
    reject_unknown(d, [f.name for f in fields(cls)], where)
    hints = typing.get_type_hints(cls)
    for name, value in d.items():
        if not _type_ok(value, hints.get(name, Any)):
            raise ConfigError(f"{where}.{name} must be {_type_name(hints[name])}, got {value!r} "
                              f"({type(value).__name__}). Fix: correct it in conf/ and recompose params.yaml")
    return cls(**d)


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(raw).__name__}")
    return dict(raw or {})


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether ``value`` (as YAML gives it) fits the annotation ``tp`` (an int fits a float;
    a bool is no number; a list fits a tuple)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    tp = origin or tp
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if tp in (int, float):
        return isinstance(value, (int, float) if tp is float else int) and not isinstance(value, bool)
    if tp in (list, tuple):
        return isinstance(value, (list, tuple))
    if tp is dict:
        return isinstance(value, Mapping)
    return not isinstance(tp, type) or isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    tp = typing.get_origin(tp) or tp
    return {type(None): "null", float: "a number", int: "an integer", bool: "true/false", str: "a string",
            dict: "a mapping", list: "a list", tuple: "a list"}.get(tp, getattr(tp, "__name__", str(tp)))


def reject_unknown(given: Iterable[str], known: Iterable[str], where: str) -> None:
    """Raise :class:`ConfigError` naming the keys of ``given`` that are not ``known``."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; allowed: {known}. Fix: rename or remove "
                          "it in conf/ and recompose params.yaml (`triage config compose`)")


@dataclass
class ContinuousConfig:
    """``monitor.continuous`` in params.yaml (see conf/monitor/default.yaml): where continuous
    evaluation reads recent traffic and writes its outputs and history."""

    out_dir: str = "eval/continuous"
    history_dir: str = "eval/history"
    recent_path: str | None = None
    reference_path: str | None = None
    reference_max_rows: int = 2000
    recent_max_rows: int | None = None
    period: str = "W"
    min_periods: int = 2
    history_runs: int = 20
    top_n: int = 10

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "ContinuousConfig":
        return strict_section(cls, d, "monitor.continuous")


@dataclass
class CascadeConfig:
    """``thresholds.cascade`` in params.yaml (see conf/thresholds/default.yaml): the cheap first
    stage of :mod:`ticket_triage.decision.cascade`. ``enabled`` decides at bundle-building time
    whether the bundle gets a ``cascade/`` stage; ``Triage.load(..., cascade=False)`` ignores
    one at serving time."""

    enabled: bool = False
    first_stage: str = "tfidf_logreg"
    reuse_member: bool = True        # an ensemble's own TF-IDF member is the first stage (no extra fit)
    ood_max_in_scope_flagged: float = 0.05  # share of in-scope validation the cheap scope check keeps
    centroid_features: int = 4000    # TF-IDF weights kept per label centroid (scope check)
    params: dict | None = None       # first-stage hyperparameters when it is fitted on its own
    # share of tuning tickets the cascade may auto-route fewer than its best certified candidate,
    # to let more tickets exit cheaply (decision.cascade.joint_exit_search); 0 = coverage first.
    # 0.001: candidates within 0.1% of the tuning tickets count as tied on coverage (on BANKING77
    # a candidate that routed 2 more of 10,002 tickets had 924 fewer cheap exits)
    max_coverage_loss: float = 0.001

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "CascadeConfig":
        cfg = strict_section(cls, d, "thresholds.cascade")
        if cfg.first_stage != "tfidf_logreg":
            raise ConfigError(f"thresholds.cascade.first_stage must be 'tfidf_logreg', got {cfg.first_stage!r}")
        if not 0.0 <= float(cfg.ood_max_in_scope_flagged) < 1.0:
            raise ConfigError("thresholds.cascade.ood_max_in_scope_flagged must be in [0, 1), got "
                              f"{cfg.ood_max_in_scope_flagged}")
        if int(cfg.centroid_features) < 1:
            raise ConfigError("thresholds.cascade.centroid_features must be >= 1")
        if not 0.0 <= float(cfg.max_coverage_loss) < 1.0:
            raise ConfigError("thresholds.cascade.max_coverage_loss must be in [0, 1) (a share of tuning "
                              f"tickets), got {cfg.max_coverage_loss}")
        return cfg


# Typed sections: one frozen dataclass per params section, each read by strict_section (unknown
# key, wrong type -> ConfigError). Their defaults are the only ones: code reads sections(params).


class _Section:
    """``from_dict`` for a typed section: :func:`strict_section` under the section's name."""

    section: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[T], d: "Mapping[str, Any] | T | None") -> T:
        """This section from its params mapping (an instance is returned as it is)."""
        if isinstance(d, cls):
            return d
        return strict_section(cls, d, cls.section)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PathsConfig(_Section):
    """``paths``: where each stage reads and writes (conf/config.yaml)."""

    section: ClassVar[str] = "paths"

    raw: str = "data/raw"
    feedback: str = "data/feedback"
    artifacts: str = "artifacts"
    ingest: str = "artifacts/ingest"
    clean: str = "artifacts/clean"
    split: str = "artifacts/split"
    train: str = "artifacts/train"
    evaluate: str = "artifacts/evaluate"
    promote: str = "artifacts/promote"
    heldout: str = "eval/heldout.jsonl"  # composed: eval/heldout/<data.name>.jsonl


@dataclass(frozen=True)
class DataConfig(_Section):
    """``data``: the raw export the ingest stage reads (conf/data/<name>.yaml, drafted by ``triage init``)."""

    section: ClassVar[str] = "data"

    name: str | None = None
    format: str = "csv"
    path: str | os.PathLike | None = None
    mapping: dict[str, Any] | None = None   # canonical field -> column(s) in the export
    channel: str | None = None              # default channel / language of tickets without one
    language: str | None = None
    topic: str | None = None                # default topic / urgency (ingest.readers.data_config_kwargs)
    urgency: str | None = None
    urgency_map: dict[str, Any] | None = None


@dataclass(frozen=True)
class SplitConfig(_Section):
    """``split``: how cleaned tickets are cut into train / validation / test / held-out."""

    section: ClassVar[str] = "split"

    strategy: str = "date"           # date | date_global | stratified
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    heldout_size: int = 200
    min_train_examples: int = 5      # labels below this are named in the split report
    max_label_share: float = 0.7     # warn when one label is more than this share of validation
    min_validation_per_label: int = 20


@dataclass(frozen=True)
class TrainConfig(_Section):
    """``train``: the label level, the objective's precision target, side models."""

    section: ClassVar[str] = "train"

    label_level: str = "topic"       # topic | tag
    min_examples_per_label: int = 2
    objective: str = "auto_route_share"
    target_precision: float = DEFAULT_TARGET_PRECISION
    device: str | None = None        # fine-tuned families on a GPU: dvc exp run -S '+train.device=cuda'
    urgency_min_confidence: float = 0.5
    secondary_min_count: int = 20


@dataclass(frozen=True)
class PromoteConfig(_Section):
    """``promote``: when a challenger replaces the champion."""

    section: ClassVar[str] = "promote"

    tolerance: float = 0.01          # challenger may be at most this much worse than the champion
    metric: str = "heldout/accuracy"
    force: bool = False              # promote even when the two were scored on different data


@dataclass(frozen=True)
class SweepConfig(_Section):
    """``sweep``: the candidates the train stage fits (conf/sweep/); none = the composed model."""

    section: ClassVar[str] = "sweep"

    name: str = "sweep"
    candidates: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class TrackingConfig(_Section):
    """``tracking``: the MLflow store and experiments (the environment's MLFLOW_* win)."""

    section: ClassVar[str] = "tracking"

    uri: str = "sqlite:///mlruns.db"
    artifact_location: str | None = None
    experiment: str = "ticket-triage"
    registered_model: str = "ticket-triage"
    monitor_experiment: str = "monitor"


@dataclass(frozen=True)
class ReviewConfig(_Section):
    """``review``: the review queue, its page and the audit sample (conf/review/default.yaml)."""

    section: ClassVar[str] = "review"

    db_url: str = DEFAULT_REVIEW_DB_URL
    db_url_env: str = "TRIAGE_REVIEW_DB_URL"  # when set, this env var overrides db_url
    enqueue_from_api: bool = True
    max_items_per_client_per_minute: int = 120
    taxonomy_path: str | None = None
    claim_ttl_s: float = 600
    max_seconds_per_item: float = 600
    busy_timeout_ms: int = 5000
    target_seconds_per_item: float = 30
    reviewers: dict[str, Any] | None = field(default_factory=dict)
    reviewers_env: str = "TRIAGE_REVIEWERS"
    secret_env: str = "TRIAGE_REVIEW_SECRET"
    cookie_secure: bool = False
    session_max_age_s: int = 12 * 3600
    host: str = "127.0.0.1"
    port: int = 8081
    feedback_dir: str = "data/feedback"
    audit_share: float = 0.02
    audit_seed: int | None = None    # None: the top-level seed
    audit_confidence: float = 0.95
    audit_interval: str = "clopper_pearson"

    def resolved_db_url(self, env: Mapping[str, str] | None = None, override: str | None = None) -> str:
        """``override`` (a --db option), else the env var named by ``db_url_env``, else ``db_url``."""
        env = os.environ if env is None else env
        return override or env.get(self.db_url_env or ReviewConfig.db_url_env) or self.db_url or DEFAULT_REVIEW_DB_URL


@dataclass(frozen=True)
class ThresholdsConfig(_Section):
    """``thresholds``: calibration, out-of-scope cut-off, cross-fitting and the tuned bands
    (conf/thresholds/); the bundle's ``decision.thresholds`` tuning reads the same keys."""

    section: ClassVar[str] = "thresholds"

    auto_route: float = 0.85         # fixed bands when tune is false
    review: float = 0.6
    tune: bool = True
    target_precision: float = DEFAULT_TARGET_PRECISION
    confidence: float = 0.95
    min_support: int = 10
    tickets_per_day: float = 10000
    review_capacity: float = 20
    pinned: dict[str, Any] | None = field(default_factory=dict)
    calibration: str = "temperature"
    strategy: str = "hybrid"         # per_label | pooled | hybrid
    reserved_review_share: float | str | None = "auto"
    cross_fit_folds: int | None = 0
    cross_fit_max_train_chars: int | None = 10_000_000  # null or 0: no cap
    cross_fit_fine_tuned: bool = False  # also cross-fit SetFit / the transformer (one fine-tune per fold)
    ood_method: str = "auto"         # auto | knn | mahalanobis
    ood_k: int = 10
    ood_max_in_scope_flagged: float = 0.02
    cold_start_min_examples: int = 20
    cascade: dict[str, Any] | None = None  # CascadeConfig

    def __post_init__(self) -> None:
        CascadeConfig.from_dict(self.cascade)  # its own strict check


_SECTIONS: dict[str, type] = {"paths": PathsConfig, "data": DataConfig, "split": SplitConfig, "train": TrainConfig,
                              "promote": PromoteConfig, "sweep": SweepConfig, "tracking": TrackingConfig,
                              "review": ReviewConfig, "thresholds": ThresholdsConfig}


class ProjectConfig:
    """The typed sections of one params mapping (:func:`sections`). Each is parsed by the strict
    loader when first read, so a stage reads (and DVC tracks) only the sections it uses;
    :meth:`check` parses them all. Read-only. ``model`` stays the family's hyperparameters
    (checked by the model class). Sections whose dataclass lives with the code that uses it are
    read there, by the same loader: ``clean`` (``text.clean.CleanConfig``), ``llm``
    (``decision.llm.load_llm_config``), ``helpdesk`` (``helpdesk.HelpdeskConfig``), ``monitor``
    (``ContinuousConfig`` here, ``monitoring``), ``rules`` (``RuleSet``), ``taxonomy``
    (``parse_taxonomy``): importing them here would make every DVC stage depend on them."""

    seed: int
    paths: PathsConfig
    data: DataConfig
    split: SplitConfig
    train: TrainConfig
    promote: PromoteConfig
    sweep: SweepConfig
    tracking: TrackingConfig
    review: ReviewConfig
    thresholds: ThresholdsConfig
    model: dict[str, Any]

    def __init__(self, params: Mapping[str, Any]):
        if not isinstance(params, Mapping):
            raise ConfigError(f"params must be a mapping of sections, got {type(params).__name__}")
        object.__setattr__(self, "_params", params)
        object.__setattr__(self, "_parsed", {})

    def __getattr__(self, name: str) -> Any:  # a section not read yet
        if name not in ProjectConfig.__annotations__:
            raise AttributeError(f"{type(self).__name__!r} has no section {name!r}")
        if name not in self._parsed:
            self._parsed[name] = _parse(self._params, name)
        return self._parsed[name]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ProjectConfig is read-only (cannot set {name!r})")

    def check(self) -> "ProjectConfig":
        """Parse every section now: the first bad one raises its :class:`ConfigError`."""
        for name in ProjectConfig.__annotations__:
            getattr(self, name)
        return self


def sections(params: Mapping[str, Any]) -> ProjectConfig:
    """The typed, validated sections of ``params`` (a composed params.yaml, or part of one: a
    missing section is all defaults): the one entry point. Each section goes through
    :func:`strict_section` (or its owner's strict parser) when first read, so an unknown key or
    a wrong type is a :class:`ConfigError` naming the section and the key;
    ``sections(params).check()`` validates all of them at once."""
    return ProjectConfig(params)


def _parse(params: Mapping[str, Any], name: str) -> Any:
    raw = params.get(name, DEFAULT_SEED) if name == "seed" else params.get(name)
    if name in _SECTIONS:
        return _SECTIONS[name].from_dict(raw)  # type: ignore[attr-defined]
    if name == "seed":
        if not _type_ok(raw, int):
            raise ConfigError(f"seed must be an integer, got {raw!r}")
        return int(raw)
    return _mapping(raw, name)  # model
