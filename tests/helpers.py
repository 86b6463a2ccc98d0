"""Small helpers shared by test modules (importable as `helpers`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

# Import these from here, never ``from conftest import ...``: tests/service has a conftest of its
# own, and whichever conftest pytest loaded first owns the module name ``conftest``.
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = ROOT.parent / "shared" / "datasets"


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...), read from /proc. BentoML's
    workers run in sessions of their own, so a signal to the server's process group misses them."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_tree(proc, sig) -> None:
    """Send ``sig`` to a server started with start_new_session=True, its process group and every
    process below it, wherever their session (BentoML's workers are in their own)."""
    import os

    below = descendants(proc.pid)
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    for pid in below:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process_group(proc) -> None:
    """Stop a server started with start_new_session=True: SIGTERM its group, then SIGKILL; any
    process left below it (a worker in its own session) is killed too, so no test leaves one."""
    import os
    import signal
    import subprocess

    below = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def tamper(npz_path, type_name: str) -> None:
    """Rewrite a safe_io model file so that its root names ``type_name`` (as an attacker would)."""
    import json

    import numpy as np

    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {n: z[n] for n in z.files}
    manifest = json.loads(arrays["__manifest__"].tobytes())
    manifest["root"] = {"__estimator__": type_name, "state": {"func": "os.getcwd"}}
    arrays["__manifest__"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    with open(npz_path, "wb") as fh:
        np.savez(fh, **arrays)


def shared_dataset(*parts: str):
    """A file of the shared datasets (``../shared/datasets`` beside the checkout). CI lays them
    beside every clone, so there a missing file fails the test; a local checkout without
    ../shared skips it. The one place tests find the shared datasets (tests/data/ uses it)."""
    import os
    from pathlib import Path

    import pytest

    path = SHARED / Path(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared dataset not present: {path} (CI lays ../shared beside the clone)")
        pytest.skip(f"shared dataset not present: {path}")
    return path


def conserved(tickets, rejected, rep) -> None:
    """An ingest result conserves its rows: rows_in == tickets_out + rejected, and the lists agree
    with the report (every reason known, ids unique)."""
    from collections import Counter

    from ticket_triage.ingest.rows import REASONS

    assert rep.rows_in == rep.tickets_out + rep.rejected
    assert rep.tickets_out == len(tickets)
    assert rep.rejected == len(rejected)
    assert sum(rep.rejected_by_reason.values()) == rep.rejected
    assert Counter(r.reason for r in rejected) == Counter(rep.rejected_by_reason)
    assert all(r.reason in REASONS for r in rejected)
    assert len({t.id for t in tickets}) == len(tickets)


# small, fast settings for the encoder-based families (a few optimizer steps)
FAST = {
    "tfidf_logreg": {},
    "embed_logreg": {},
    "setfit": {"max_steps": 2, "batch_size": 4, "num_iterations": 1},
    "transformer": {"max_steps": 2, "batch_size": 4, "max_length": 32, "learning_rate": 1e-4},
    "ensemble": {},
}


def small_tickets() -> tuple[list[str], list[str]]:
    """tests/fixtures/tickets_small.csv as (texts, tags): 48 tickets, 4 labels."""
    import csv
    from pathlib import Path

    with (Path(__file__).resolve().parent / "fixtures" / "tickets_small.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [f"{r['subject']}. {r['body']}" for r in rows], [r["tags"] for r in rows]


def check_probs(clf, texts: list[str]):
    """predict_proba has one row per text, one column per label, each row a distribution."""
    import numpy as np

    p = clf.predict_proba(texts)
    assert p.shape == (len(texts), len(clf.labels))
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return p


def check_roundtrip(clf, texts: list[str], tmp_path) -> None:
    """save + load_classifier gives the same family, labels, seed and probabilities."""
    import json

    import numpy as np

    from ticket_triage.models import load_classifier
    from ticket_triage.models.base import META_FILE

    p = clf.predict_proba(texts)
    out = clf.save(tmp_path / "clf")
    meta = json.loads((out / META_FILE).read_text())
    assert meta["family"] == clf.family
    assert meta["labels"] == clf.labels
    assert meta["params"]["seed"] == clf.params["seed"]
    loaded = load_classifier(out)
    assert type(loaded) is type(clf)
    assert loaded.labels == clf.labels
    assert np.allclose(loaded.predict_proba(texts), p, atol=1e-6)


def small_pipeline_params(base_params: dict, tmp_path, *, experiment: str, sweep: str) -> dict:
    """The composed params pointed at the small fixture (48 tickets) with every path under
    ``tmp_path``: a 2-candidate TF-IDF sweep, 6 held-out tickets, untuned thresholds, the MLflow
    experiment ``experiment``. For tests that run the stages' own functions end to end."""
    import copy

    p = copy.deepcopy(base_params)
    p["data"] = {"name": "small", "format": "csv", "path": str(FIXTURES / "tickets_small.csv"),
                 "mapping": {"id": "id", "created_at": "created_at", "subject": "subject", "body": "body",
                             "tags": "tags"}}
    p["paths"] = {k: str(tmp_path / "artifacts" / k) for k in ("ingest", "clean", "split", "train", "evaluate", "promote")}
    p["paths"].update({"heldout": str(tmp_path / "eval" / "heldout.jsonl"), "feedback": str(tmp_path / "feedback")})
    p["split"]["heldout_size"] = 6
    p["thresholds"]["tune"] = False
    p["sweep"] = {"name": sweep, "candidates": [{"model": "tfidf_logreg"}, {"model": "tfidf_logreg", "C": 0.5}]}
    p["tracking"] = {"experiment": experiment}
    return p


def start_mlflow_server(backend_uri: str, log_path, *extra: str, env=None):
    """``mlflow server`` on a free port of 127.0.0.1 over ``backend_uri``, waited for until
    /health answers (fails the test with the server's log if it does not). Returns (process,
    URL); stop it with :func:`stop_process_group`."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx
    import pytest
    from postgres import free_port

    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, *extra,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")})
    log.close()  # the child keeps its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_process_group(proc)
            pytest.fail("mlflow server did not come up:\n" + Path(log_path).read_text()[-3000:])
        time.sleep(0.5)
