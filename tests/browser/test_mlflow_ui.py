"""What an ML engineer sees in `mlflow ui` after a sweep, two evaluations and two promotions
(issue 18, item 3), checked in Debian's Chromium: the experiment opens on its runs (not MLflow 3's
GenAI overview) with the sweep, evaluate and promote runs by name; the registry shows the
dataset's champion and challenger aliases; the promote run's page carries the champion vs
challenger comparison. `mlflow server` is really started over the SQLite store the stages wrote.
Screenshots go to $TRIAGE_SCREENSHOTS when set (README's pictures), else to tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import small_pipeline_params, start_mlflow_server, stop_process_group

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def tracked(tmp_path, base_params, monkeypatch):
    """The stages' own functions on the small fixture into a fresh SQLite MLflow store:
    sweep (2 candidates) -> evaluate -> promote (first champion) -> evaluate -> promote (v2 vs v1)."""
    import mlflow

    from ticket_triage import tracking
    from ticket_triage.stages import run_clean, run_evaluate, run_ingest, run_promote, run_split
    from ticket_triage.training import run_sweep

    store = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    p = small_pipeline_params(base_params, tmp_path, experiment="ticket-triage-ui", sweep="ui")
    m = tmp_path / "m"
    run_ingest(p, metrics_path=m / "i.json")
    run_clean(p, metrics_path=m / "c.json", progress=False)
    run_split(p, metrics_path=m / "s.json")
    run_sweep(p, metrics_path=m / "train.json", progress=False)
    run_evaluate(p, metrics_path=m / "e1.json", plots_dir=tmp_path / "p1")
    first = run_promote(p)
    run_evaluate(p, metrics_path=m / "e2.json", plots_dir=tmp_path / "p2")
    run_promote(p)
    assert first["promoted"]
    tracking.setup(p["tracking"])
    exp = mlflow.get_experiment_by_name("ticket-triage-ui")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    yield {"store": store, "experiment_id": exp.experiment_id, "runs": runs}
    mlflow.set_tracking_uri(None)


@pytest.fixture
def mlflow_ui(tracked, tmp_path):
    proc, url = start_mlflow_server(tracked["store"], tmp_path / "mlflow-ui.log")
    try:
        yield url
    finally:
        stop_process_group(proc)


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("TRIAGE_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait_text(page, text: str, shot: Path) -> str:
    """Wait until ``text`` is on the page; on a timeout, fail with a screenshot and what it showed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text, exact=False).first.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(shot), full_page=True)
        pytest.fail(f"{text!r} not shown at {page.url} (screenshot {shot}); the page said:\n"
                    + page.inner_text("body")[:2000])
    return page.inner_text("body")


def test_mlflow_ui_shows_runs_aliases_and_the_promotion(tracked, mlflow_ui, tmp_path):
    from playwright.sync_api import sync_playwright

    from ticket_triage import tracking

    runs = tracked["runs"]
    by_stage = {}
    for r in runs:
        by_stage.setdefault(r.data.tags.get("stage", ""), []).append(r)
    assert {"train", "evaluate", "promote"} <= set(by_stage), sorted(by_stage)
    sweep_parent = next(r for r in by_stage["train"] if "mlflow.parentRunId" not in r.data.tags)
    evaluate_run = by_stage["evaluate"][0]
    second = next(r for r in by_stage["promote"] if r.data.tags.get("challenger_version") == "2")
    reason = second.data.tags["mlflow.note.content"].split("\n")[0][:40]
    shots = _shots(tmp_path)
    outside: list[str] = []

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(mlflow_ui)
                                              else (outside.append(route.request.url), route.abort())))

            # the experiment opens on its runs table, the stages' runs by name
            page.goto(tracking.ui_url(mlflow_ui, tracked["experiment_id"]))
            body = _wait_text(page, sweep_parent.info.run_name, shots / "mlflow-experiment.png")
            assert evaluate_run.info.run_name in body and second.info.run_name in body
            page.screenshot(path=str(shots / "mlflow-experiment.png"))

            # the registry: the dataset's champion and challenger aliases on their versions
            page.goto(f"{mlflow_ui}/#/models/ticket-triage")
            body = _wait_text(page, "champion-small", shots / "mlflow-registry.png")
            assert "challenger-small" in body
            page.screenshot(path=str(shots / "mlflow-registry.png"))

            # the second promotion's run: its description is the decision and the comparison table
            page.goto(tracking.ui_url(mlflow_ui, tracked["experiment_id"], second.info.run_id))
            body = _wait_text(page, reason, shots / "mlflow-promote-run.png")
            assert "challenger v2" in body and "champion v1" in body and "heldout_accuracy" in body
            page.screenshot(path=str(shots / "mlflow-promote-run.png"), full_page=True)
        finally:
            browser.close()
    assert not outside, f"the UI asked for outside resources (offline it would break): {outside[:5]}"
