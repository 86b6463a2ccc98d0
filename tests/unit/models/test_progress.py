"""Progress off a terminal: periodic log lines instead of a silent or \\r-garbled bar."""

from __future__ import annotations

import logging

from ticket_triage.models.base import LogProgress, progress_bar


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_log_progress_lines_at_the_interval(caplog):
    caplog.set_level(logging.INFO, logger="ticket_triage.progress")
    clock = Clock()
    bar = LogProgress(total=4, desc="cross-fit", unit="fold", interval=30)
    bar._clock = clock
    bar.start = bar._last = clock.t
    clock.t += 10
    bar.update()            # 10 s after the start: too soon for a line
    assert caplog.messages == []
    clock.t += 30
    bar.update()
    bar.set_postfix(loss="0.1")
    clock.t += 40
    bar.update(2)
    bar.close()
    bar.close()             # closing twice logs once
    assert caplog.messages == [
        "cross-fit: 2/4 fold (50%), 40 s elapsed, about 40 s left",
        "cross-fit: 4/4 fold (100%), 80 s elapsed [loss=0.1]",
        "cross-fit: 4/4 fold (100%), 80 s elapsed [loss=0.1] (done)",
    ]


def test_progress_bar_off_a_terminal_logs(caplog, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setenv("TRIAGE_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="ticket_triage.progress")
    assert list(progress_bar(range(3), desc="encode", unit="batch")) == [0, 1, 2]
    assert caplog.messages[0].startswith("encode: 1/3 batch (33%)")
    assert caplog.messages[-1].endswith("(done)")
    caplog.clear()
    assert list(progress_bar(range(3), desc="quiet", progress=False)) == [0, 1, 2]
    assert caplog.messages == []


def test_progress_bar_on_a_terminal_is_tqdm(monkeypatch):
    import sys

    from tqdm.auto import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_bar(total=2, desc="x")
    try:
        assert isinstance(bar, tqdm)
    finally:
        bar.close()


def test_heartbeat_logs_while_a_step_runs_and_stops_after(caplog):
    import threading
    import time

    from ticket_triage.models.base import heartbeat

    caplog.set_level(logging.INFO, logger="ticket_triage.progress")
    with heartbeat("fit x", interval=0.05):
        time.sleep(0.3)
    n = len(caplog.messages)
    assert n >= 2 and all(m.startswith("fit x: still running, ") for m in caplog.messages)
    time.sleep(0.2)
    assert len(caplog.messages) == n                      # nothing after the block
    assert not any(t.name == "heartbeat" for t in threading.enumerate())
