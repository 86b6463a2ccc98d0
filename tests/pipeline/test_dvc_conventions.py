"""dvc.yaml follows DVC's conventions: metrics files that `dvc exp show` / `dvc metrics diff`
can read for every experiment (tracked by Git, not under the ignored artifacts/), stage
`params` limited to the sections each stage reads, no timings in what DVC hashes, and a plots
page that renders offline (the page itself is checked in Chromium in tests/browser)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"

DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STAGES = DVC_YAML["stages"]


def _git_ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0


def _entries(stage: dict, kind: str) -> list[tuple[str, dict]]:
    out = []
    for e in stage.get(kind) or []:
        out += list(e.items()) if isinstance(e, dict) else [(e, {})]
    return out


def test_metrics_files_are_git_tracked_so_every_experiment_has_them():
    metrics = [(name, path, opts) for name, st in STAGES.items() for path, opts in _entries(st, "metrics")]
    assert {n for n, _, _ in metrics} >= {"ingest", "clean", "split", "train", "evaluate"}
    for name, path, opts in metrics:
        assert opts.get("cache") is False, f"{name}: {path} must be cache: false (Git keeps it, per experiment)"
        assert not path.startswith("artifacts/"), f"{name}: {path} is under the git-ignored artifacts/"
        assert not _git_ignored(path), f"{name}: {path} is git-ignored: dvc exp show would print '!'"


def test_stage_params_name_keys_that_exist():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, st in STAGES.items():
        for p in st.get("params") or []:
            assert isinstance(p, str), f"{name}: params entry {p!r} (a whole file) makes every key a column"
            node: Any = params
            for part in p.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: param {p} is not in params.yaml"
                node = node[part]


def test_dvc_plots_output_is_ignored_and_template_is_offline():
    assert _git_ignored("dvc_plots/index.html")
    cfg = (ROOT / ".dvc" / "config").read_text()
    assert "html_template = plots/offline.html" in cfg
    page = (ROOT / ".dvc" / "plots" / "offline.html").read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN <script> tags go in {scripts}
    assert "src=\"http" not in page and "src='http" not in page
    for lib in ("vega", "vegaLite", "vegaEmbed"):
        assert f".{lib}=" in page or f"{lib}=" in page, f"{lib} is not inlined"


class Recorder(dict):
    """params that remember which top-level sections were read (``[]`` and ``get``)."""

    def __init__(self, data, seen=None):
        super().__init__(data)
        self.seen = set() if seen is None else seen

    def __getitem__(self, key):
        self.seen.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.seen.add(key)
        return super().get(key, default)


def _declared_sections(stage: str) -> set[str]:
    return {p.split(".")[0] for p in STAGES[stage].get("params") or []}


@pytest.mark.slow
def test_stage_params_are_the_sections_each_stage_reads(tmp_path, base_params, monkeypatch):
    """Run each stage's library function on the fixture with params that record what is read:
    every section read is declared (else DVC can skip a stage whose config changed) and every
    section declared is read (else `dvc exp show` grows columns nobody uses)."""
    from ticket_triage.stages import run_evaluate
    from ticket_triage.stages import run_clean, run_ingest, run_split
    from ticket_triage.training import run_sweep

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    p = copy.deepcopy(base_params)
    p["data"] = {"name": "small", "format": "csv", "path": str(FIXTURES / "tickets_small.csv"),
                 "mapping": {"id": "id", "created_at": "created_at", "subject": "subject", "body": "body",
                             "tags": "tags"}}
    p["paths"] = {k: str(tmp_path / k) for k in ("ingest", "clean", "split", "train", "evaluate", "promote")}
    p["paths"].update({"heldout": str(tmp_path / "heldout.jsonl"), "feedback": str(tmp_path / "feedback")})
    p["split"]["heldout_size"] = 6
    p["thresholds"]["tune"] = False
    p["tracking"] = {"experiment": "conventions-test"}
    calls = {
        "ingest": lambda r: run_ingest(r, metrics_path=tmp_path / "m" / "i.json"),
        "clean": lambda r: run_clean(r, metrics_path=tmp_path / "m" / "c.json", progress=False),
        "split": lambda r: run_split(r, metrics_path=tmp_path / "m" / "s.json"),
        "train": lambda r: run_sweep(r, metrics_path=tmp_path / "m" / "t.json", progress=False),
        "evaluate": lambda r: run_evaluate(r, metrics_path=tmp_path / "m" / "e.json",
                                           plots_dir=tmp_path / "plots", register=False),
    }
    ignore = {"tracking"}  # where runs are logged, not what a stage computes
    for stage, call in calls.items():
        rec = Recorder(copy.deepcopy(p))
        call(rec)
        read = rec.seen - ignore
        declared = _declared_sections(stage)
        assert read <= declared, f"{stage} reads {sorted(read - declared)} but dvc.yaml does not list them"
        assert declared <= read, f"{stage} lists {sorted(declared - read)} in dvc.yaml but never reads them"


def test_ingest_report_holds_no_timing(tmp_path, base_params):
    """DVC hashes artifacts/ingest: a timing in report.json would rerun every stage downstream."""
    from ticket_triage.stages import run_ingest

    p = copy.deepcopy(base_params)
    p["data"] = {"name": "small", "format": "csv", "path": str(FIXTURES / "tickets_small.csv"),
                 "mapping": {"id": "id", "subject": "subject", "body": "body", "tags": "tags"}}
    p["paths"] = {"ingest": str(tmp_path / "a"), "feedback": str(tmp_path / "fb")}
    run_ingest(p, metrics_path=tmp_path / "m1.json")
    first = (tmp_path / "a" / "report.json").read_bytes()
    run_ingest(p, metrics_path=tmp_path / "m2.json")
    assert (tmp_path / "a" / "report.json").read_bytes() == first
    assert "seconds" not in json.loads(first)
    assert (tmp_path / "m1.json").read_bytes() == (tmp_path / "m2.json").read_bytes()


def test_metrics_files_hold_no_timings():
    from ticket_triage.evaluation import headline

    m = {"val/accuracy": 0.9, "train/seconds": 12.0, "val/latency_ms_per_ticket": 3.0,
         "val/single_latency_ms": 4.0, "val/refunds/f1": 0.5}
    assert headline(m) == {"val/accuracy": 0.9}


def test_train_script_takes_no_overrides():
    """Sweeps are DVC experiments (`dvc exp run --queue -S ...`); the script does not imitate Hydra."""
    r = subprocess.run([sys.executable, "pipelines/train.py", "-m", "model=tfidf_logreg,embed_logreg"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "dvc exp run" in r.stderr and "Traceback" not in r.stderr


def test_bytecode_caches_are_not_stage_dependencies():
    """The stages depend on src/ folders; Python writes __pycache__/*.pyc into them while a stage
    runs (and differently per interpreter), so DVC must not hash those, or dvc.lock changes on
    every run and on every machine. Asked of DVC itself (`dvc check-ignore`)."""
    deps = {d for s in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values() for d in s.get("deps", [])}
    folders = sorted(d for d in deps if d.startswith("src/") and (ROOT / d).is_dir())
    assert folders, "no folder deps: nothing to check"
    paths = [f"{d}/__pycache__/x.cpython-311.pyc" for d in folders] + [f"{folders[0]}/stray.pyc"]
    r = subprocess.run([sys.executable, "-m", "dvc", "check-ignore", *paths], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(r.stdout.split()) == sorted(paths)
