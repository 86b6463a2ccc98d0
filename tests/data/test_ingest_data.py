"""Reading the shared datasets as they are (fails in CI when missing; a checkout without
../shared skips)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import yaml
from helpers import conserved, shared_dataset

from ticket_triage.ingest.readers import data_config_kwargs, read_tickets

REPO = Path(__file__).resolve().parents[2]


def test_real_banking77_train_with_generated_ids() -> None:
    path = shared_dataset("banking77", "train.csv")
    kw = data_config_kwargs(yaml.safe_load((REPO / "conf/data/banking77.yaml").read_text()))
    kw.pop("path")
    tickets, rejected, rep = read_tickets(path, **kw)
    conserved(tickets, rejected, rep)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rep.rows_in == len(rows) == rep.tickets_out
    assert tickets[16].id == "train.csv:17"  # no id column in the shared copy
    assert any("generated stable ids" in w for w in rep.warnings)
    assert [t.tags for t in tickets] == [[r["category"]] for r in rows]
    assert {t.channel for t in tickets} == {"web"} and {t.language for t in tickets} == {"en"}


def test_real_helpdesk_synthetic_tags_and_urgency() -> None:
    path = shared_dataset("helpdesk-synthetic", "tickets.csv")
    kw = data_config_kwargs(yaml.safe_load((REPO / "conf/data/helpdesk_synthetic.yaml")
                                           .read_text()))
    kw.pop("path")
    tickets, rejected, rep = read_tickets(path, **kw)
    conserved(tickets, rejected, rep)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rep.rows_in == len(rows) and rep.tickets_out == len(rows)
    umap = {"high": "P1", "medium": "P2", "low": "P3"}
    assert [t.urgency for t in tickets] == [umap[r["priority"]] for r in rows]
    assert [t.topic for t in tickets] == [r["queue"] for r in rows]
    assert {t.channel for t in tickets} == {"email"}
    assert {t.language for t in tickets} == {"en", "de"}
    for t, r in zip(tickets, rows):
        cells = [r[f"tag_{i}"] for i in range(1, 9)]
        want = list(dict.fromkeys(p.strip() for c in cells for p in c.split(",") if p.strip()))
        assert t.tags == want
    assert any(len(t.tags) > len([c for c in (r[f"tag_{i}"] for i in range(1, 9)) if c])
               for t, r in zip(tickets, rows))  # a cell held several comma-separated tags
    assert all("" not in t.tags for t in tickets)
    assert tickets[0].body == rows[0]["body"]  # raw, literal \n kept


@pytest.mark.slow
def test_throughput_100k_rows(tmp_path: Path) -> None:
    bank = shared_dataset("banking77", "train.csv")
    help_ = shared_dataset("helpdesk-synthetic", "tickets.csv")
    with open(bank, newline="", encoding="utf-8") as f:
        b_rows = [(r["text"], "", r["category"], "") for r in csv.DictReader(f)]
    with open(help_, newline="", encoding="utf-8") as f:
        h_rows = [(r["body"], r["subject"], f"{r['tag_1']};{r['tag_2']}", r["priority"])
                  for r in csv.DictReader(f)]
    pool = b_rows + h_rows
    p = tmp_path / "bench.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "body", "subject", "tags", "priority", "created_at"])
        for i in range(100_000):
            body, subject, tags, prio = pool[i % len(pool)]
            w.writerow([f"t{i}", body, subject, tags, prio, f"2024-01-{i % 28 + 1:02d}T10:00:00Z"])
    t0 = time.perf_counter()
    tickets, rejected, rep = read_tickets(
        p, "csv", {"id": "id", "body": "body", "subject": "subject", "tags": "tags",
                   "urgency": "priority", "created_at": "created_at"},
        urgency_map={"high": "P1", "medium": "P2", "low": "P3"})
    rate = rep.rows_in / (time.perf_counter() - t0)
    conserved(tickets, rejected, rep)
    assert rep.tickets_out == 100_000
    assert rate >= 5_000, f"{rate:.0f} tickets/s"
