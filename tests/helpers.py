"""Small helpers shared by test modules (importable as `helpers`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations


def stop_process_group(proc) -> None:
    """Stop a server started with start_new_session=True: SIGTERM its group, then SIGKILL."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


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

    path = Path(__file__).resolve().parents[2] / "shared" / "datasets" / Path(*parts)
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
