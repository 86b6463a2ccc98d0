"""The bad-input corpus, ingest part (``tests/fixtures/bad_inputs/ingest_cases.py``): every case
gets its expected outcome: good rows kept, each bad row rejected with its reason (counts
conserved), or the whole file refused with a clear IngestError. Never a crash. The HTTP and
webhook parts run against the served service in ``tests/service/test_reliability.py``."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/ (fixtures package)

from fixtures.bad_inputs.ingest_cases import CASES  # noqa: E402

from ticket_triage.ingest.readers import read_tickets  # noqa: E402
from ticket_triage.ingest.rows import REASONS, IngestError  # noqa: E402

SUFFIX = {"csv": ".csv", "jsonl": ".jsonl", "zendesk": ".json", "intercom": ".json", "front": ".json"}


def test_the_corpus_is_large_and_ids_are_unique():
    ids = [c[1] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 120
    assert {c[0] for c in CASES} == set(SUFFIX)


@pytest.mark.parametrize("fmt,case,data,expected", CASES, ids=[c[1] for c in CASES])
def test_bad_input(tmp_path, fmt, case, data, expected):
    p = tmp_path / f"export{SUFFIX[fmt]}"
    p.write_bytes(data)
    if expected[0] == "error":
        with pytest.raises(IngestError) as exc:
            read_tickets(p, fmt)
        assert re.search(expected[1], str(exc.value)), str(exc.value)
        return
    _, n_tickets, reasons = expected
    tickets, rejected, rep = read_tickets(p, fmt)
    got = Counter(r.reason for r in rejected)
    assert (len(tickets), dict(got)) == (n_tickets, reasons), [r.detail for r in rejected]
    assert rep.rows_in == rep.tickets_out + rep.rejected == len(tickets) + len(rejected)
    assert all(r.reason in REASONS and r.detail for r in rejected)
    for t in tickets:  # nothing stringified into nonsense
        assert t.body.lower() not in ("nan", "inf", "-inf", "none") and not t.body.startswith(("[", "{'"))
