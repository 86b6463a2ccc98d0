"""Unit tests for ticket_triage.config: the one strict loader, typed sections, params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ticket_triage.config import (
    ConfigError,
    ContinuousConfig,
    flatten,
    load_params,
    monitor_section,
    reject_unknown,
    section,
    strict_section,
)
from ticket_triage.text.clean import CleanConfig


@dataclass
class _Section:
    size: int = 3
    name: str = "x"


def test_strict_section_builds_the_dataclass_and_names_unknown_keys():
    assert strict_section(_Section, None, "demo") == _Section()
    assert strict_section(_Section, {"size": 5}, "demo") == _Section(size=5)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sise'\] in demo; allowed: \['name', 'size'\]"):
        strict_section(_Section, {"sise": 5}, "demo")
    with pytest.raises(ConfigError, match="demo must be a mapping"):
        strict_section(_Section, ["size"], "demo")  # type: ignore[arg-type]
    assert issubclass(ConfigError, ValueError)  # callers that catch ValueError keep working


def test_reject_unknown_is_silent_on_known_keys():
    reject_unknown({"a": 1}, ["a", "b"], "s")
    with pytest.raises(ConfigError, match="in s;"):
        reject_unknown(["c"], ["a", "b"], "s")


def test_typed_sections_are_strict():
    assert ContinuousConfig.from_dict({"top_n": 3}).top_n == 3
    with pytest.raises(ConfigError, match="monitor.continuous"):
        ContinuousConfig.from_dict({"top": 3})
    cc = CleanConfig.from_dict({"strip_quotes": False})
    assert cc.strip_quotes is False and cc.redact_pii is True
    assert CleanConfig.from_dict(cc) is cc and CleanConfig.from_dict(cc.to_dict()) == cc
    with pytest.raises(ConfigError, match="in clean;"):
        CleanConfig.from_dict({"strip_quote": False})


def test_the_projects_params_compose_into_valid_sections(base_params):
    assert CleanConfig.from_dict(base_params["clean"]).max_chars == base_params["clean"]["max_chars"]
    assert "monitor" in base_params and "eval" not in base_params
    ContinuousConfig.from_dict(monitor_section(base_params).get("continuous"))


def test_monitor_section_reads_an_old_eval_section_with_one_warning(recwarn):
    new, old = {"continuous": {"top_n": 3}}, {"continuous": {"top_n": 4}}
    assert monitor_section({"monitor": new}) == new and monitor_section({"monitor": new}) is not new
    assert monitor_section({"monitor": new, "eval": old}) == new  # recomposed: `monitor` wins
    assert monitor_section({"seed": 1}) == {} and monitor_section({"monitor": None}) == {}
    assert not recwarn.list
    with pytest.warns(FutureWarning) as caught:
        assert monitor_section({"eval": old}) == old
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "`eval:`" in msg and "`monitor:`" in msg and "triage config compose" in msg and "conf/monitor/" in msg


def test_monitor_experiment_is_configurable_and_the_old_name_is_still_searched():
    from ticket_triage.tracking import monitor_experiment, monitor_experiment_names

    assert monitor_experiment(None) == monitor_experiment({"experiment": "ticket-triage"}) == "monitor"
    assert monitor_experiment({"monitor_experiment": "cont"}) == "cont"
    assert monitor_experiment_names({}) == ["monitor", "continuous-eval"]
    assert monitor_experiment_names({"monitor_experiment": "cont"}) == ["cont", "continuous-eval"]
    assert monitor_experiment_names({"monitor_experiment": "continuous-eval"}) == ["continuous-eval"]


def test_load_params_and_section_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="triage config compose"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("seed: 1\nclean: {max_chars: 10}\n")
    params = load_params(tmp_path / "params.yaml")
    assert section(params, "clean") == {"max_chars": 10}
    with pytest.raises(ConfigError, match="no section 'train'"):
        section(params, "train")


def test_flatten_for_mlflow_params():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"x": 1}]}) == {"a.b": 1, "a.c": "1,2", "d": "[{'x': 1}]"}
