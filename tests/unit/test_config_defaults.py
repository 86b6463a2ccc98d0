"""`dvc exp run` composes params.yaml again from conf/config.yaml (DVC's Hydra integration), so a
choice given only to `triage config compose` (data=acme) is gone in the next experiment: the
command says so, and `--save-defaults` writes group choices into conf/config.yaml's defaults."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ticket_triage.config import ConfigError, compose, defaults_drift, save_defaults

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proj(tmp_path) -> Path:
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    return tmp_path


def _defaults(proj: Path) -> dict[str, str]:
    out = {}
    for entry in yaml.safe_load((proj / "conf" / "config.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            out.update(entry)
    return out


def test_drift_names_group_choices_and_value_overrides(proj):
    groups, others = defaults_drift(["data=github_issues", "model=embed_logreg", "split.heldout_size=30"], root=proj)
    assert groups == {"data": ("banking77", "github_issues")}  # model=embed_logreg is already the default
    assert others == ["split.heldout_size=30"]


def test_save_defaults_rewrites_the_lines_and_keeps_comments(proj):
    before = (proj / "conf" / "config.yaml").read_text()
    save_defaults({"data": "github_issues", "model": "tfidf_logreg"}, root=proj)
    after = (proj / "conf" / "config.yaml").read_text()
    assert _defaults(proj)["data"] == "github_issues" and _defaults(proj)["model"] == "tfidf_logreg"
    assert _defaults(proj)["taxonomy"] == "banking77"
    # every other line is untouched, the comment on the rules line included
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert len(changed) == 2 and len(before.splitlines()) == len(after.splitlines())
    assert "# before data" in after
    # and a composition without overrides (what DVC does) now has them
    assert compose(root=proj)["data"]["name"] == "github_issues"
    assert compose(root=proj)["model"]["family"] == "tfidf_logreg"
    assert defaults_drift(["data=github_issues"], root=proj) == ({}, [])


def test_save_defaults_refuses_a_group_without_a_defaults_line(proj):
    before = (proj / "conf" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="no defaults entry"):
        save_defaults({"nosuchgroup": "x"}, root=proj)
    assert (proj / "conf" / "config.yaml").read_text() == before  # nothing half-written


def _triage(proj: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ticket_triage.cli", "config", "compose", *args],
                          cwd=proj, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})


def test_cli_warns_then_saves(proj):
    r = _triage(proj, "data=github_issues", "model=tfidf_logreg")
    assert r.returncode == 0, r.stderr
    assert "dvc exp run -S data=github_issues -S model=tfidf_logreg" in r.stderr
    assert "--save-defaults" in r.stderr
    assert _defaults(proj)["data"] == "banking77"  # only told, not changed

    r = _triage(proj, "--save-defaults", "data=github_issues", "model=tfidf_logreg")
    assert r.returncode == 0, r.stderr
    assert "data: github_issues (was banking77)" in r.stdout
    assert "note:" not in r.stderr
    assert _defaults(proj)["data"] == "github_issues"
    assert yaml.safe_load((proj / "params.yaml").read_text())["data"]["name"] == "github_issues"

    r = _triage(proj, "--save-defaults", "data=nosuch")
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    assert _defaults(proj)["data"] == "github_issues"
