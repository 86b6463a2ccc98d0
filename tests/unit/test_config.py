"""Unit tests for ticket_triage.config: the one strict loader, typed sections, params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ticket_triage.config import (
    ConfigError,
    ContinuousConfig,
    flatten,
    load_params,
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
    with pytest.raises(ConfigError, match="eval.continuous"):
        ContinuousConfig.from_dict({"top": 3})
    cc = CleanConfig.from_dict({"strip_quotes": False})
    assert cc.strip_quotes is False and cc.redact_pii is True
    assert CleanConfig.from_dict(cc) is cc and CleanConfig.from_dict(cc.to_dict()) == cc
    with pytest.raises(ConfigError, match="in clean;"):
        CleanConfig.from_dict({"strip_quote": False})


def test_the_projects_params_compose_into_valid_sections(base_params):
    assert CleanConfig.from_dict(base_params["clean"]).max_chars == base_params["clean"]["max_chars"]
    ContinuousConfig.from_dict((base_params.get("eval") or {}).get("continuous"))


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
