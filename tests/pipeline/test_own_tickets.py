"""A user's own export, end to end: `triage init` drafts the data config and taxonomy from a
second, real-format dataset (180 dated GitHub issues, tests/fixtures/github_issues_small.csv),
then `dvc repro` runs the whole pipeline to a champion in a fresh project without the demo data;
bad exports are refused with exit 2 and nothing written."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

GH = FIXTURES / "github_issues_small.csv"
UNLABELLED = FIXTURES / "github_issues_unlabelled.csv"
LABELS = {"bug", "feature", "question"}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlruns.db",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"})
    env.pop("TRIAGE_BUNDLE", None)
    env.pop("TRIAGE_DATASET", None)
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _triage(*args: str) -> list[str]:
    return [sys.executable, "-m", "ticket_triage.cli", *args]


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh checkout as a user has it: code, conf/, dvc.yaml and data.dvc, but no data/ (the
    demo data is neither present nor pulled) and no eval/ or artifacts/."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for d in ("conf", "pipelines", "serving", "src"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("dvc.yaml", "data.dvc"):
        shutil.copy(ROOT / f, proj / f)
    (proj / "exports").mkdir()
    return proj


@pytest.mark.slow
def test_own_export_to_champion_without_demo_data(project, tmp_path):
    env = _env(tmp_path)
    shutil.copy(GH, project / "exports" / "issues.csv")
    shutil.copy(UNLABELLED, project / "exports" / "new.csv")
    assert _run(["dvc", "init", "--no-scm", "-q"], project, env).returncode == 0

    r = _run(_triage("init", "exports/issues.csv", "--name", "gh_small", "--language", "en"), project, env)
    assert r.returncode == 0, r.stderr
    assert "feature" in r.stdout and "2016-04-21" in r.stdout  # labels and the date range are shown
    assert (project / "conf" / "data" / "gh_small.yaml").is_file()
    assert (project / "conf" / "taxonomy" / "gh_small.yaml").is_file()

    r = _run(_triage("config", "compose", "data=gh_small", "taxonomy=gh_small", "model=tfidf_logreg",
                     "sweep=single", "split.heldout_size=30",
                     # small and fast: the test is about the data path, not the model
                     "model.max_features=3000", "thresholds.cross_fit_folds=0"), project, env)
    assert r.returncode == 0, r.stderr
    r = _run(["dvc", "repro", "promote"], project, env, timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert not (project / "data").exists()  # no demo data was needed

    # counts are conserved at every step
    art = project / "artifacts"
    ing = json.loads((art / "ingest" / "report.json").read_text())
    assert ing["rows_in"] == ing["tickets_out"] + ing["rejected"] == 180
    cl = json.loads((art / "clean" / "report.json").read_text())
    assert cl["conserved"] and cl["tickets_in"] == 180 and cl["unmapped_tags"] == {}
    sp = json.loads((art / "split" / "report.json").read_text())
    assert sum(s["size"] for s in sp["splits"].values()) + sp["heldout"]["size"] == cl["kept"]
    # every label in every split, in time order within each label
    for name in ("train", "validation", "test"):
        assert set(sp["splits"][name]["label_counts"]) == LABELS, name
    assert sp["strategy"] == "date"

    # the held-out set is this dataset's, frozen from this export
    from ticket_triage.ingest.profile import source_fingerprint

    held = project / "eval" / "heldout" / "gh_small.jsonl"
    meta = json.loads(held.with_suffix(".json").read_text())
    assert meta["dataset"] == "gh_small" and meta["source_fingerprint"] == source_fingerprint(GH)
    assert {json.loads(line)["topic"] for line in held.read_text().splitlines()} == LABELS
    assert sorted(p.name for p in held.parent.iterdir()) == ["gh_small.json", "gh_small.jsonl"]

    # the champion belongs to the dataset
    decision = json.loads((art / "promote" / "decision.json").read_text())
    assert decision["promoted"] and decision["dataset"] == "gh_small" and decision["alias"] == "champion-gh_small"
    # read the registry in a child process: MLflow keeps process-global store state that would
    # leak this project's store into later tests
    code = ("import json; from ticket_triage import tracking; tracking.setup({'experiment': 'ticket-triage'}); "
            "c = tracking.alias_version('champion', dataset='gh_small'); "
            "print(json.dumps({'tags': tracking.version_tags(c), "
            "'other': tracking.alias_version('champion', dataset='banking77') is None}))")
    r = _run([sys.executable, "-c", code], project, env)
    assert r.returncode == 0, r.stderr[-2000:]
    reg = json.loads(r.stdout.strip().splitlines()[-1])
    tags = reg["tags"]
    assert tags["dataset"] == "gh_small" and tags["taxonomy"] == "gh_small" and tags["taxonomy_version"] == "1"
    assert tags["dataset_fingerprint"] == meta["source_fingerprint"]
    assert reg["other"]

    # new, unlabelled tickets are classified with the training mapping (no label column needed)
    with (project / "exports" / "new.csv").open() as f:
        assert "label" not in next(csv.reader(f))
    r = _run(_triage("classify", "--file", "exports/new.csv", "--mapping", "conf/data/gh_small.yaml"), project, env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    decisions = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(decisions) == 12 and all(d["topic"] in LABELS | {None} for d in decisions)
    assert sum(d["topic"] is not None for d in decisions) >= 6
    # the data config's language is the prior: English issues full of code are not sent to review as foreign
    assert not [d for d in decisions if d["reason"] == "unsupported_language"]
    # another dataset's champion is never served silently
    r = _run(_triage("classify", "my app crashes on start"), project, {**env, "TRIAGE_DATASET": "banking77"})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    # (no champion-banking77 in the registry; the local sweep winner is gh_small's: refused, not served)
    assert "trained on dataset 'gh_small'" in r.stderr and "configured dataset is 'banking77'" in r.stderr, r.stderr


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _rows(n=12, **over):
    labels = ["bug", "feature", "question"]
    return [{"created_at": f"2024-0{1 + i % 9}-1{i % 10} 10:00:00", "title": f"issue {i}",
             "body": f"something about {labels[i % 3]} number {i}", "label": labels[i % 3], **over} for i in range(n)]


@pytest.mark.parametrize("case,rows,flags,expect", [
    ("no label column", [{k: v for k, v in r.items() if k != "label"} for r in _rows()], [], "--label COLUMN"),
    ("one label", _rows(label="bug"), [], "at least two labels"),
    ("no dates", [{k: v for k, v in r.items() if k != "created_at"} for r in _rows()], [], "--date COLUMN"),
    ("future dates", _rows(created_at="2999-01-01 00:00:00"), [], "in the future"),
])
def test_init_refuses_bad_exports(project, tmp_path, case, rows, flags, expect):
    export = _write_csv(project / "exports" / "bad.csv", rows)
    r = _run(_triage("init", str(export), "--name", "bad", *flags), project, _env(tmp_path), timeout=120)
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    assert expect in r.stderr and "Traceback" not in r.stderr, (case, r.stderr)
    assert not (project / "conf" / "data" / "bad.yaml").exists() and not (project / "conf" / "taxonomy" / "bad.yaml").exists()


@pytest.mark.parametrize("case,rows,mapping,expect", [
    ("no label column", _rows(), {"created_at": "created_at", "subject": "title", "body": "body"},
     "maps no label column"),
    ("empty label column", _rows(label=""), {"created_at": "created_at", "body": "body", "topic": "label"},
     "are empty in all 12 tickets"),
    ("no dates", _rows(created_at=""), {"created_at": "created_at", "body": "body", "topic": "label"},
     "no ticket has a date"),
    ("future dates", _rows(created_at="2999-01-01 00:00:00"),
     {"created_at": "created_at", "body": "body", "topic": "label"}, "dated in the future"),
    ("one future date", _rows(11) + _rows(1, created_at="2031-05-01 00:00:00"),
     {"created_at": "created_at", "body": "body", "topic": "label"}, "1 of 12 rows are dated in the future"),
])
def test_ingest_stage_refuses_bad_exports(project, tmp_path, case, rows, mapping, expect):
    """The ingest stage script: a message that says what to do, exit 2, no output written."""
    import yaml

    from ticket_triage.config import compose

    export = _write_csv(project / "exports" / "bad.csv", rows)
    params = compose(["model=tfidf_logreg", "sweep=single"], root=project)
    params["data"] = {"name": "bad", "format": "csv", "path": str(export), "mapping": mapping}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    r = _run([sys.executable, "pipelines/ingest.py"], project, _env(tmp_path), timeout=120)
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    assert expect in r.stderr and "Traceback" not in r.stderr, (case, r.stderr)
    assert not (project / "artifacts").exists()
