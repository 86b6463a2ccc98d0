"""docs/CONTRACTS.md is generated from the code and the package's short API is lazy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_contracts_md_is_not_stale():
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_contracts.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr + " (docs/CONTRACTS.md must be regenerated)"


def test_importing_the_package_does_no_work_and_the_short_api_resolves():
    code = ("import sys, json, ticket_triage as tt\n"
            "before = sorted(m for m in sys.modules if m.startswith('ticket_triage.'))\n"
            "names = {n: getattr(tt, n).__module__ for n in tt.__all__ if hasattr(getattr(tt, n), '__module__')}\n"
            "print(json.dumps({'before': before, 'names': names, 'all': tt.__all__}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, check=True)
    res = json.loads(out.stdout)
    assert res["before"] == []  # `import ticket_triage` imports none of its modules
    assert {"Triage", "Ticket", "read_tickets", "clean_text", "CleanConfig"} <= set(res["all"])
    assert res["names"]["Triage"] == "ticket_triage.decision.triage"
    assert res["names"]["read_tickets"] == "ticket_triage.ingest.readers"
