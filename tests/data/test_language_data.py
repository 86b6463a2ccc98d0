"""Language detection on the whole helpdesk-synthetic set (shared dataset; fails in CI when missing)."""

from __future__ import annotations

import csv

from helpers import shared_dataset

from ticket_triage.text.clean import clean_text
from ticket_triage.text.language import detect_language


def test_helpdesk_synthetic_accuracy():
    with shared_dataset("helpdesk-synthetic", "tickets.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    # Every English-labelled row, and every German-labelled row that really contains German
    # (umlaut/ß): 165 rows labelled "de" are entirely English (subject, body and answer).
    checked = correct = 0
    for row in rows:
        text = clean_text(row["subject"], row["body"])
        if row["language"] == "de" and not any(c in text for c in "äöüÄÖÜß"):
            continue
        checked += 1
        correct += detect_language(text) == row["language"]
    assert checked > 1500
    assert correct / checked >= 0.99
