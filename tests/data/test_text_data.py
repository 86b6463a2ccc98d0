"""Cleaning the whole helpdesk-synthetic set (shared dataset; fails in CI when missing)."""

from __future__ import annotations

import csv

from helpers import shared_dataset

from ticket_triage.text.clean import clean_text


def test_whole_helpdesk_csv_has_no_literal_newlines_or_signoff_names():
    with shared_dataset("helpdesk-synthetic", "tickets.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 1000
    for row in rows:
        out = clean_text(row["subject"], row["body"])
        assert "\\n" not in out, row["subject"]
        assert "[Your Name]" not in out and "[Ihr Name]" not in out, row["subject"]
        assert not out.rstrip().endswith(("Best regards", "Best regards,", "Mit freundlichen Grüßen,"))
        assert clean_text(row["subject"], out) == out  # cleaning is a fixed point
