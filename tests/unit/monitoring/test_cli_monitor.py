"""`triage monitor` is continuous evaluation's one command; `triage eval run` warns and delegates."""

from __future__ import annotations

import pytest

from ticket_triage.cli import main


def test_monitor_is_the_command_and_eval_run_is_a_deprecated_alias(tiny_bundle, capsys):
    # --engine spark without --data is refused with exit 2 and a message: cheap, no Spark started
    assert main(["monitor", "--engine", "spark", "--bundle", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err
    assert "--data" in err and "deprecated" not in err
    with pytest.warns(DeprecationWarning, match="triage monitor"):
        assert main(["eval", "run", "--engine", "spark", "--bundle", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err
    assert "use `triage monitor`" in err and "--data" in err
