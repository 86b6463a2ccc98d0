"""The one config reader.

``conf/`` holds the Hydra config groups; ``params.yaml`` is their composition (written by
``triage config compose`` and by DVC on ``dvc exp run``; never hand-edited). Stages read
``params.yaml`` through :func:`load_params` and its typed, validated sections through
:func:`sections` (one frozen dataclass per section, each parsed by :func:`strict_section`, the
one strict loader); code that needs another member of a config group (a sweep candidate's
model file) composes it with :func:`compose`. Nothing else in the project opens
``params.yaml`` or ``conf/``.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ticket_triage.config.sections import (  # noqa: F401 - the typed sections and the strict loader
    DEFAULT_REVIEW_DB_URL,
    DEFAULT_SEED,
    DEFAULT_TARGET_PRECISION,
    CascadeConfig,
    ConfigError,
    ContinuousConfig,
    DataConfig,
    PathsConfig,
    ProjectConfig,
    PromoteConfig,
    ReviewConfig,
    SplitConfig,
    SweepConfig,
    ThresholdsConfig,
    TrackingConfig,
    TrainConfig,
    reject_unknown,
    sections,
    strict_section,
)

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_NAME = "config"
PARAMS_HEADER = (
    "# GENERATED from conf/ by `triage config compose` (and by DVC on `dvc exp run`).\n"
    "# Do not edit by hand: change conf/ and recompose.\n"
)


def target_precision(params: Mapping[str, Any]) -> float:
    """``train.target_precision``: the auto-routed precision every stage scores against."""
    return float(TrainConfig.from_dict(params.get("train")).target_precision)


MONITOR_SECTION = "monitor"        # continuous evaluation's params section (conf/monitor/)
LEGACY_MONITOR_SECTION = "eval"    # its name before: still read from an old params.yaml, with a warning
LEGACY_MONITOR_WARNING = (
    "params.yaml has the old `eval:` section and no `monitor:`: continuous evaluation reads it for now, "
    "but the section is called `monitor:` (conf/monitor/) and `eval:` will stop being read. Fix: recompose "
    "params.yaml with `triage config compose` (a custom conf/eval/<name>.yaml moves to "
    "conf/monitor/<name>.yaml, and `- eval: <name>` in conf/config.yaml becomes `- monitor: <name>`)."
)


def monitor_section(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``monitor`` section (continuous evaluation; ``{}`` when absent). A params.yaml composed
    before the section was renamed has ``eval:`` instead: that one is read, with one
    :class:`FutureWarning` (shown to users by default) naming the fix. When both are present,
    ``monitor`` wins."""
    if MONITOR_SECTION in params:
        return dict(params[MONITOR_SECTION] or {})
    if LEGACY_MONITOR_SECTION in params:
        warnings.warn(LEGACY_MONITOR_WARNING, FutureWarning, stacklevel=2)
        return dict(params[LEGACY_MONITOR_SECTION] or {})
    return {}


def find_root(start: str | Path | None = None) -> Path:
    """The project root: the nearest folder upwards holding conf/config.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / CONF_DIR / f"{CONFIG_NAME}.yaml").is_file():
            return d
    raise ConfigError(f"no {CONF_DIR}/{CONFIG_NAME}.yaml found in {here} or above: run from the project root")


def compose(overrides: Iterable[str] = (), *, root: str | Path | None = None) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra overrides (``["model=tfidf_logreg", "seed=1"]``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    conf_dir = find_root(root) / CONF_DIR
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            cfg = hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except Exception as exc:  # hydra raises several types; say what to fix
        raise ConfigError(f"cannot compose {conf_dir} with overrides {list(overrides)}: {exc}") from exc
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


_DEFAULT_LINE = re.compile(r"^(?P<lead>\s*-\s*)(?P<group>[A-Za-z_][\w/]*)(?P<sep>\s*:\s*)(?P<value>[^\s#]+)(?P<rest>.*)$")


def defaults_drift(overrides: Iterable[str], *, root: str | Path | None = None) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """What ``dvc exp run`` would forget of ``overrides``.

    DVC's Hydra integration composes params.yaml again from conf/config.yaml (plus its own
    ``-S`` overrides) on every ``dvc exp run``, so an override given only to ``triage config
    compose`` lasts until the next experiment. Returns ``({group: (default, chosen)}, others)``:
    the group choices that differ from the defaults list, and the value overrides
    (``split.heldout_size=30``) that conf/config.yaml cannot hold as a choice."""
    defaults = _defaults_list(find_root(root) / CONF_DIR / f"{CONFIG_NAME}.yaml")
    groups: dict[str, tuple[str, str]] = {}
    others: list[str] = []
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and key in defaults:
            if defaults[key] != value:
                groups[key] = (defaults[key], value)
        else:
            others.append(o)
    return groups, others


def _defaults_list(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _defaults_lines(path.read_text(encoding="utf-8").splitlines()):
        m = _DEFAULT_LINE.match(line)
        if m and not m["group"].startswith("override"):
            out[m["group"]] = m["value"]
    return out


def _defaults_lines(lines: list[str]) -> list[str]:
    """The lines of the top-level ``defaults:`` list (as they are, comments kept)."""
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("defaults:"):
            inside = True
            continue
        if inside:
            if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
                break
            out.append(line)
    return out


def save_defaults(choices: Mapping[str, str], *, root: str | Path | None = None) -> Path:
    """Make ``{group: member}`` the defaults of conf/config.yaml (the line of each group is
    rewritten in place, its comment kept), so ``dvc exp run`` composes them too."""
    path = find_root(root) / CONF_DIR / f"{CONFIG_NAME}.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    todo = dict(choices)
    inside = False
    for i, line in enumerate(lines):
        if line.startswith("defaults:"):
            inside = True
            continue
        if not inside:
            continue
        if line.strip() and not line[0].isspace() and not line.lstrip().startswith("#"):
            break
        m = _DEFAULT_LINE.match(line.rstrip("\n"))
        if m and m["group"] in todo:
            lines[i] = f"{m['lead']}{m['group']}{m['sep']}{todo.pop(m['group'])}{m['rest']}\n"
    if todo:
        raise ConfigError(f"{path}: no defaults entry for {sorted(todo)}; add `- <group>: <member>` lines "
                          "to its defaults list first")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def write_params(params: Mapping[str, Any], path: str | Path = PARAMS_FILE) -> Path:
    path = Path(path)
    path.write_text(PARAMS_HEADER + yaml.safe_dump(dict(params), sort_keys=False, allow_unicode=True, width=100))
    return path


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read params.yaml (the composed config)."""
    path = Path(path) if path else find_root() / PARAMS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `triage config compose` (or `make params`) first")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping")
    return data


def section(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    if name not in params:
        raise ConfigError(f"params have no section {name!r}; known: {', '.join(params)}")
    return copy.deepcopy(dict(params[name] or {}))


def model_config(name: str, overrides: Mapping[str, Any] | None = None, *, root: str | Path | None = None) -> dict[str, Any]:
    """The model group member ``conf/model/<name>.yaml``, with hyperparameter overrides."""
    path = find_root(root) / CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown model {name!r}: no {path}; known: {', '.join(known)}")
    cfg = yaml.safe_load(path.read_text()) or {}
    cfg.update(dict(overrides or {}))
    return cfg


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Flatten a nested config for MLflow params (lists joined as strings)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(map(str, v)) if all(not isinstance(x, (dict, list)) for x in v) else str(v)
        else:
            out[key] = v
    return out
