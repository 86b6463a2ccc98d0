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
