"""Reproducible generator of long, dated, multilingual tickets from the bundled data sets.

Every synthetic ticket starts from a real one: a GitHub issue (react / vscode, labelled bug,
feature or question, with its date) or a helpdesk e-mail (English or German, one of 10
queues). The body grows to a drawn target length (log-normal, mean ~1,900 characters, at least
the source's own length) with, in turn:

* paragraphs of other real tickets with the same label and language (the way a long ticket
  repeats context, steps, and earlier messages);
* for GitHub issues: a stack trace / log block made of lines taken from real issues' code
  blocks, with fresh file paths, line numbers, hashes and versions;
* for e-mails: a quoted earlier message ("On <date> ... wrote:" / "Am <Datum> schrieb ...")
  and a ticket reference.

Identifiers (order numbers, hashes, versions, paths) are fresh per ticket, as in real exports:
they are what makes a TF-IDF vocabulary large. Dates: GitHub tickets keep their issue's date
plus up to 30 days; e-mails get a date spread over the same 2016-2023 range. Same ``--seed``,
same file.

Columns: id, created_at, subject, body, label (the topic: bug / feature / question or the
e-mail queue), tag (the fine label: ``react:bug``, ``Technical Support/Incident``), language,
source. A taxonomy for it (13 topics, ``maps_from`` the fine tags) is written with ``--taxonomy``.

    python benchmarks/make_long_tickets.py --n 20000 --out /tmp/long20k.csv --taxonomy /tmp/long20k.taxonomy.yaml
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_DATASETS", str(ROOT.parent / "shared" / "datasets")))
START, END = dt.datetime(2016, 3, 1), dt.datetime(2023, 9, 30)


def _paragraphs(text: str) -> list[str]:
    text = text.replace("\\n", "\n")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) >= 40]


def _code_lines(text: str) -> list[str]:
    lines, inside = [], False
    for ln in text.splitlines():
        if ln.strip().startswith("```"):
            inside = not inside
            continue
        if inside and 8 <= len(ln) <= 160:
            lines.append(ln)
    return lines


def load_sources() -> tuple[list[dict], list[dict]]:
    issues = []
    for split in ("train", "test"):
        with (SHARED / "github-issues" / f"{split}.csv").open(encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                issues.append({"subject": r["title"], "body": r["body"] or "", "label": r["label"],
                               "tag": f"{r['repo'].split('/')[-1]}:{r['label']}", "language": "en",
                               "created_at": dt.datetime.fromisoformat(r["created_at"].replace("Z", "")),
                               "source": "github"})
    mails = []
    with (SHARED / "helpdesk-synthetic" / "tickets.csv").open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            mails.append({"subject": r["subject"] or "", "body": (r["body"] or "").replace("\\n", "\n"),
                          "label": r["queue"], "tag": f"{r['queue']}/{r['type'] or 'none'}",
                          "language": r["language"], "created_at": None, "source": "helpdesk"})
    return issues, mails


def _fresh_ids(rng: np.random.Generator) -> dict[str, str]:
    h = "".join(rng.choice(list("0123456789abcdef"), 12))
    return {"hash": h, "ver": f"{rng.integers(0, 20)}.{rng.integers(0, 40)}.{rng.integers(0, 100)}",
            "order": f"{rng.integers(10**6, 10**8)}", "line": str(rng.integers(1, 5000)),
            "path": "/".join(rng.choice(["src", "lib", "packages", "core", "utils", "dom", "editor", "workbench",
                                         "renderer", "hooks", "api", "client"], 3)) + f"/{h[:6]}.js"}


def _trace(rng: np.random.Generator, code: list[str], ids: dict[str, str]) -> str:
    k = int(rng.integers(4, 14))
    lines = [code[i] for i in rng.integers(0, len(code), k)]
    frames = [f"    at {rng.choice(['render', 'commitRoot', 'updateComponent', 'activate', 'onDidChange', 'dispatch'])}"
              f" ({ids['path']}:{rng.integers(1, 900)}:{rng.integers(1, 80)})" for _ in range(int(rng.integers(2, 6)))]
    head = f"Version: {ids['ver']} (commit {ids['hash']})"
    return "```\n" + head + "\n" + "\n".join(lines + frames) + "\n```"


def _quote(rng: np.random.Generator, other: dict, lang: str, when: dt.datetime) -> str:
    body = "\n".join("> " + ln for ln in other["body"].splitlines()[:12] if ln.strip())
    if lang == "de":
        return f"Am {when:%d.%m.%Y} um {when:%H:%M} schrieb Support <support@example.com>:\n{body}"
    return f"On {when:%a, %b %d, %Y at %H:%M}, Support <support@example.com> wrote:\n{body}"


def generate(n: int, seed: int = 0, mean_chars: int = 1900, github_share: float = 0.5) -> list[dict]:
    rng = np.random.default_rng(seed)
    issues, mails = load_sources()
    pool: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for src in (issues, mails):
        for t in src:
            pool[(t["source"], t["label"], t["language"])].extend(_paragraphs(t["body"]))
    code = [ln for t in issues for ln in _code_lines(t["body"])]
    span = (END - START).total_seconds()
    sigma = 0.5
    mu = np.log(mean_chars) - sigma ** 2 / 2
    out = []
    for i in range(n):
        gh = rng.random() < github_share
        base = issues[rng.integers(len(issues))] if gh else mails[rng.integers(len(mails))]
        ids = _fresh_ids(rng)
        target = max(len(base["body"]), int(rng.lognormal(mu, sigma)))
        parts = [base["body"].strip()]
        if gh:
            when = base["created_at"] + dt.timedelta(seconds=float(rng.uniform(0, 30 * 86400)))
        else:
            when = START + dt.timedelta(seconds=float(rng.uniform(0, span)))
            ref = "Ticket-Nr." if base["language"] == "de" else "Ticket ref"
            parts.append(f"{ref} #{ids['order']}")
        paras = pool[(base["source"], base["label"], base["language"])]
        length = sum(len(p) for p in parts)
        step = 0
        while length < target and step < 40:
            step += 1
            r = rng.random()
            if gh and r < 0.3 and code:
                chunk = _trace(rng, code, ids)
            elif not gh and r < 0.25:
                chunk = _quote(rng, mails[rng.integers(len(mails))], base["language"],
                               when - dt.timedelta(days=float(rng.uniform(1, 20))))
            else:
                chunk = paras[rng.integers(len(paras))] if paras else base["body"]
                if gh and rng.random() < 0.3:
                    chunk += f" (seen in {ids['ver']}, {ids['path']}:{ids['line']})"
            parts.append(chunk)
            length += len(chunk)
        out.append({"id": f"LT-{seed}-{i:06d}", "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "subject": base["subject"], "body": "\n\n".join(parts), "label": base["label"],
                    "tag": base["tag"], "language": base["language"], "source": base["source"]})
    return out


def taxonomy_yaml(rows: list[dict]) -> str:
    import yaml

    by_label: dict[str, set[str]] = defaultdict(set)
    examples: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].add(r["tag"])
        ex = (r["subject"] or r["body"])[:120].strip()
        if len(examples[r["label"]]) < 3 and ex and ex not in examples[r["label"]]:
            examples[r["label"]].append(ex)
    topics = []
    for lab in sorted(by_label):
        tid = re.sub(r"[^a-z0-9]+", "_", lab.lower()).strip("_")
        while len(examples[lab]) < 3:  # a tiny sample may hold fewer distinct examples
            examples[lab].append(f"A {lab} ticket ({len(examples[lab]) + 1})")
        topics.append({"id": tid, "description": f"Tickets labelled {lab!r} in the source data.",
                       "examples": examples[lab], "maps_from": sorted(by_label[lab])})
    urgency = [{"id": "P0", "description": "Outage or security incident affecting many users."},
               {"id": "P1", "description": "One customer blocked now."},
               {"id": "P2", "description": "A normal problem."},
               {"id": "P3", "description": "Questions and requests."}]
    return yaml.safe_dump({"name": "long-tickets", "version": 1, "topics": topics, "urgency": urgency},
                          sort_keys=False, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="number of tickets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mean-chars", type=int, default=1900, help="target mean body length")
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--taxonomy", help="also write a taxonomy YAML for these tickets")
    args = ap.parse_args(argv)
    rows = generate(args.n, args.seed, args.mean_chars)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    if args.taxonomy:
        Path(args.taxonomy).write_text(taxonomy_yaml(rows), encoding="utf-8")
    lens = [len(r["subject"]) + len(r["body"]) for r in rows]
    langs = {k: sum(r["language"] == k for r in rows) for k in sorted({r["language"] for r in rows})}
    print(f"wrote {len(rows):,} tickets to {out}: mean {statistics.mean(lens):,.0f} characters "
          f"(median {statistics.median(lens):,.0f}), languages {langs}, "
          f"dates {min(r['created_at'] for r in rows)} .. {max(r['created_at'] for r in rows)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
