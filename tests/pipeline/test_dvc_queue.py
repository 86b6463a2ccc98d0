"""The documented way to sweep (README, "The pipeline"): `dvc exp run --queue -S ...` with Hydra
composition, then `dvc queue start`, in a fresh git + DVC project on a user's own export. Both
queued experiments must run on that export (not on the demo data: DVC composes params.yaml
again from conf/config.yaml, which is why `triage config compose --save-defaults` exists), show
their own metrics in `dvc exp show`, and name their MLflow runs after the DVC experiment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GH = ROOT / "tests" / "fixtures" / "github_issues_small.csv"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TRIAGE_", "DVC_"))}
    env.update({"PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlruns.db",
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
                "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-3000:])
    return r


@pytest.mark.slow
def test_queued_grid_runs_on_the_users_export(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    for d in ("conf", "pipelines", "serving", "src"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("dvc.yaml", "data.dvc", ".gitignore"):
        shutil.copy(ROOT / f, proj / f)
    (proj / "exports").mkdir()
    shutil.copy(GH, proj / "exports" / "issues.csv")
    env = _env(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    triage = [sys.executable, "-m", "ticket_triage.cli"]

    _run(["git", "init", "-q"], proj, env)
    _run([*dvc, "init", "-q"], proj, env)
    _run([*dvc, "config", "hydra.enabled", "true"], proj, env)
    _run([*dvc, "config", "core.analytics", "false"], proj, env)
    _run([*triage, "init", "exports/issues.csv", "--name", "gh_small", "--language", "en"], proj, env)
    r = _run([*triage, "config", "compose", "--save-defaults", "data=gh_small", "taxonomy=gh_small",
              "model=tfidf_logreg", "sweep=single"], proj, env)
    assert "data: gh_small (was banking77)" in r.stdout
    _run(["git", "add", "-A"], proj, env)
    _run(["git", "commit", "-qm", "own export"], proj, env)

    # a 2-point grid in Hydra's sweep syntax, expanded by DVC; small and fast: about the path, not the model
    r = _run([*dvc, "exp", "run", "--queue", "-S", "split.heldout_size=30", "-S", "thresholds.cross_fit_folds=0",
              "-S", "model.max_features=2000,4000", "train"], proj, env)
    assert r.stdout.count("Queued experiment") == 2, r.stdout
    _run([*dvc, "queue", "start", "-j", "1"], proj, env)
    deadline = time.monotonic() + 600
    while True:
        status = _run([*dvc, "queue", "status"], proj, env).stdout
        if not any(s in status for s in ("Queued", "Running")):
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status

    exps = json.loads(_run([*dvc, "exp", "show", "--json"], proj, env).stdout)
    seen = {}
    for commit in exps:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev.get("data", {})
                params = data.get("params", {}).get("params.yaml", {}).get("data", {})
                metrics = data.get("metrics", {})
                train = next((m["data"] for k, m in metrics.items() if k.endswith("train.json")), {})
                seen[rev.get("name")] = (params["data"]["name"], params["model"]["max_features"],
                                         train.get("winner"), train.get("val/accuracy"))
    assert len(seen) == 2, seen
    assert sorted(v[1] for v in seen.values()) == [2000, 4000]
    assert {v[0] for v in seen.values()} == {"gh_small"}  # the export, not the demo data
    assert all(v[2] and v[3] is not None for v in seen.values()), seen  # each shows its own train metrics

    # MLflow: each experiment's runs end in its DVC name and carry the baseline commit
    code = ("import json, mlflow; e = mlflow.get_experiment_by_name('ticket-triage'); "
            "print(json.dumps([[r.info.run_name, r.data.tags.get('dvc_exp'), r.data.tags.get('dvc_baseline')] "
            "for r in mlflow.search_runs([e.experiment_id], output_format='list')]))")
    runs = json.loads(_run([sys.executable, "-c", code], proj, env).stdout.strip().splitlines()[-1])
    for name in seen:
        mine = [r for r in runs if r[1] == name]
        assert mine and all(r[0].endswith(f"-{name}") and r[2] for r in mine), runs
