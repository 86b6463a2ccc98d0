"""Unit tests for ticket_triage.config: the one strict loader, typed sections, params.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ticket_triage.config import (
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
    compose,
    flatten,
    load_params,
    monitor_section,
    reject_unknown,
    section,
    sections,
    strict_section,
    target_precision,
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


# -- typed sections: sections(params) -> ProjectConfig ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TYPED = {"paths": PathsConfig, "data": DataConfig, "split": SplitConfig, "train": TrainConfig,
         "promote": PromoteConfig, "sweep": SweepConfig, "tracking": TrackingConfig, "review": ReviewConfig,
         "thresholds": ThresholdsConfig}


def _check_against(cfg: ProjectConfig, params: dict) -> None:
    from ticket_triage.decision.llm import LLMConfig, load_llm_config
    from ticket_triage.helpdesk import HelpdeskConfig, helpdesk_configs
    from ticket_triage.monitoring.cost import CostConfig
    from ticket_triage.monitoring.drift import DriftConfig

    assert cfg.check() is cfg
    typed = {name: getattr(cfg, name) for name in TYPED}
    typed["clean"] = CleanConfig.from_dict(params["clean"])  # the sections typed beside their code
    for name, section_cfg in typed.items():
        assert isinstance(section_cfg, TYPED.get(name, CleanConfig))
        for key, value in (params.get(name) or {}).items():  # every configured value is read as it is
            assert getattr(section_cfg, key) == value, (name, key)
    assert cfg.seed == params["seed"] and cfg.model == params["model"]
    llm = load_llm_config(params["llm"], env={})
    assert isinstance(llm, LLMConfig) and llm.model == params["llm"]["model"] and llm.api_key is None
    helpdesks = [HelpdeskConfig.from_dict(c) for c in helpdesk_configs(params["helpdesk"])]
    assert helpdesks and helpdesks[0].provider == params["helpdesk"]["provider"]
    mon = monitor_section(params)
    ContinuousConfig.from_dict(mon.get("continuous"))
    DriftConfig.from_dict(mon.get("drift"))
    CostConfig.from_dict(mon.get("cost"))


def test_the_repositorys_params_yaml_parses_into_every_typed_section():
    params = load_params(ROOT / "params.yaml")  # what `triage config compose` wrote
    _check_against(sections(params), params)


@pytest.mark.parametrize("overrides", [
    [], ["data=github_issues", "rules=generic"], ["data=helpdesk_synthetic"], ["helpdesk=front"],
    ["helpdesk=intercom"], ["llm=openai"], ["llm=local"], ["sweep=full"], ["sweep=single", "model=setfit"],
    ["thresholds=open_world"], ["thresholds=fixed"], ["model=transformer"],
])
def test_every_config_group_member_composes_into_valid_sections(overrides):
    params = compose(overrides, root=ROOT)
    _check_against(sections(params), params)


@pytest.mark.parametrize("name", sorted(TYPED) + ["clean"])
def test_an_unknown_key_names_the_section_and_the_key_and_what_to_do(name):
    with pytest.raises(ConfigError) as caught:
        if name == "clean":
            CleanConfig.from_dict({"bogus_key": 1})
        else:
            sections({name: {"bogus_key": 1}}).check()
    msg = str(caught.value)
    assert f"['bogus_key'] in {name};" in msg and "allowed:" in msg and "triage config compose" in msg


@pytest.mark.parametrize("params, field, expected", [
    ({"review": {"port": "8081"}}, "review.port", "an integer"),
    ({"split": {"train": "0.8"}}, "split.train", "a number"),
    ({"train": {"target_precision": True}}, "train.target_precision", "a number"),
    ({"paths": {"split": 3}}, "paths.split", "a string"),
    ({"review": {"reviewers": ["a"]}}, "review.reviewers", "a mapping or null"),
    ({"seed": "42"}, "seed", "an integer"),
])
def test_a_wrong_type_names_the_field(params, field, expected):
    with pytest.raises(ConfigError, match=rf"{field} must be {expected}"):
        sections(params).check()
    with pytest.raises(ConfigError, match=r"clean.redact_pii must be true/false, got 'yes'"):
        CleanConfig.from_dict({"redact_pii": "yes"})


def test_a_bad_cascade_key_names_thresholds_cascade():
    with pytest.raises(ConfigError, match=r"\['bogus'\] in thresholds.cascade"):
        sections({"thresholds": {"cascade": {"bogus": 1}}}).check()


@pytest.mark.parametrize("value", [-0.1, 1.0, 2])
def test_cascade_max_coverage_loss_is_a_share(value):
    from ticket_triage.config import CascadeConfig

    with pytest.raises(ConfigError, match=r"thresholds.cascade.max_coverage_loss must be in \[0, 1\)"):
        CascadeConfig.from_dict({"max_coverage_loss": value})
    assert CascadeConfig.from_dict({"max_coverage_loss": 0.02}).max_coverage_loss == 0.02


def test_a_section_that_is_no_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="review must be a mapping"):
        sections({"review": ["db_url"]}).check()
    with pytest.raises(ConfigError, match="model must be a mapping"):
        sections({"model": "tfidf_logreg"}).check()
    with pytest.raises(ConfigError, match="params must be a mapping"):
        sections(["seed"])  # type: ignore[arg-type]


def test_defaults_are_the_ones_the_code_used_before_the_sections_were_typed():
    # the inline .get(key, default) values these replaced; a drift here changes figures
    cfg = sections({})
    assert cfg.seed == 42
    assert (cfg.train.target_precision, cfg.train.min_examples_per_label, cfg.train.label_level,
            cfg.train.urgency_min_confidence, cfg.train.secondary_min_count, cfg.train.device) == \
        (0.99, 2, "topic", 0.5, 20, None)
    assert target_precision({}) == 0.99 and target_precision({"train": {"target_precision": 0.9}}) == 0.9
    s = cfg.split
    assert (s.strategy, s.train, s.validation, s.test, s.heldout_size, s.min_train_examples, s.max_label_share,
            s.min_validation_per_label) == ("date", 0.8, 0.1, 0.1, 200, 5, 0.7, 20)
    assert (cfg.promote.metric, cfg.promote.tolerance, cfg.promote.force) == ("heldout/accuracy", 0.01, False)
    t = cfg.tracking
    assert (t.uri, t.experiment, t.artifact_location, t.monitor_experiment) == \
        ("sqlite:///mlruns.db", "ticket-triage", None, "monitor")
    assert cfg.sweep.name == "sweep" and cfg.sweep.candidates == []
    assert cfg.data.format == "csv" and cfg.data.name is None
    p = cfg.paths
    assert (p.feedback, p.train, p.split, p.heldout) == ("data/feedback", "artifacts/train", "artifacts/split",
                                                          "eval/heldout.jsonl")
    r = cfg.review
    assert (r.db_url, r.db_url_env, r.claim_ttl_s, r.max_seconds_per_item, r.busy_timeout_ms) == \
        ("sqlite:///var/review.sqlite", "TRIAGE_REVIEW_DB_URL", 600, 600, 5000)
    assert (r.host, r.port, r.feedback_dir, r.cookie_secure, r.session_max_age_s) == \
        ("127.0.0.1", 8081, "data/feedback", False, 12 * 3600)
    assert (r.enqueue_from_api, r.audit_share, r.audit_seed, r.audit_confidence, r.audit_interval) == \
        (True, 0.02, None, 0.95, "clopper_pearson")
    assert (r.reviewers_env, r.secret_env, r.reviewers, r.taxonomy_path) == \
        ("TRIAGE_REVIEWERS", "TRIAGE_REVIEW_SECRET", {}, None)
    clean = CleanConfig.from_dict(None)
    assert clean == CleanConfig() and clean.max_chars == 20000 and clean.max_unmapped_share == 0.05
    th = cfg.thresholds  # decision.bundle's inline defaults before
    assert (th.calibration, th.ood_method, th.ood_k, th.ood_max_in_scope_flagged, th.cross_fit_folds, th.tune,
            th.cold_start_min_examples, th.reserved_review_share, th.cascade) == \
        ("temperature", "auto", 10, 0.02, 0, True, 20, "auto", None)
    from ticket_triage.decision.crossfit import DEFAULT_MAX_TRAIN_CHARS, max_train_chars
    from ticket_triage.decision.thresholds import DEFAULTS, _cfg

    assert th.cross_fit_max_train_chars == DEFAULT_MAX_TRAIN_CHARS == max_train_chars({}) == 10_000_000
    assert DEFAULTS == {  # decision.thresholds' defaults before; `auto` is tuned as 0 on bare scores
        "auto_route": 0.85, "review": 0.6, "tune": True, "target_precision": 0.99,
        "confidence": 0.95, "min_support": 10, "tickets_per_day": 10000, "review_capacity": 20,
        "pinned": {}, "strategy": "hybrid", "reserved_review_share": "auto"}
    assert _cfg({})["reserved_review_share"] == 0.0


def test_sections_are_frozen_and_from_dict_takes_an_instance():
    import dataclasses

    cfg = ReviewConfig.from_dict({"port": 9000})
    assert ReviewConfig.from_dict(cfg) is cfg and cfg.port == 9000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]
    project = sections({"seed": 1})
    with pytest.raises(AttributeError, match="read-only"):
        project.seed = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no section 'sed'"):
        project.sed  # noqa: B018


class _Reads(dict):
    """params that remember which sections were read."""

    def __init__(self, data):
        super().__init__(data)
        self.seen: set[str] = set()

    def get(self, key, default=None):
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.seen.add(key)
        return super().__getitem__(key)


def test_a_section_is_read_only_when_used(base_params):
    # a DVC stage declares the sections it reads (dvc.yaml params): sections() must not read more
    params = _Reads(base_params)
    cfg = sections(params)
    assert params.seen == set()
    assert cfg.split is cfg.split and cfg.seed == base_params["seed"]
    assert params.seen == {"split", "seed"}
    bad = sections({"review": {"portt": 1}})
    assert bad.split == SplitConfig()  # an unused bad section does not stop the others
    with pytest.raises(ConfigError, match="portt"):
        bad.check()


def test_review_db_url_precedence_is_option_then_env_then_config():
    cfg = ReviewConfig.from_dict({"db_url": "sqlite:///a.sqlite", "db_url_env": "MY_DB"})
    assert cfg.resolved_db_url(env={}) == "sqlite:///a.sqlite"
    assert cfg.resolved_db_url(env={"MY_DB": "sqlite:///b.sqlite"}) == "sqlite:///b.sqlite"
    assert cfg.resolved_db_url(env={"MY_DB": "sqlite:///b.sqlite"}, override="sqlite:///c.sqlite") == "sqlite:///c.sqlite"
    assert ReviewConfig().resolved_db_url(env={"MY_DB": "x"}) == "sqlite:///var/review.sqlite"


def test_the_cli_answers_a_bad_section_with_exit_2_and_no_traceback(tmp_path, monkeypatch, capsys):
    from ticket_triage.cli import main

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "params.yaml").write_text("review:\n  db_urll: sqlite:///x.sqlite\n")
    monkeypatch.chdir(tmp_path)
    assert main(["feedback", "report"]) == 2
    err = capsys.readouterr().err
    assert "['db_urll'] in review" in err and "Traceback" not in err
