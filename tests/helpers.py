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
