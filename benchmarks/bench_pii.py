"""PII redaction: recall on the hand-written corpus, false redactions on 1,000 ordinary tickets,
cost per ticket; the built-in redaction (``ticket_triage.text.pii``) and, when installed,
Microsoft Presidio's analyzer beside it.

    flock /tmp/tt-bench.lock python benchmarks/bench_pii.py [--repeats 5] [--out benchmarks/results/pii.json]

Corpus: ``tests/fixtures/pii/corpus.tsv`` (123 items, English and German, written for the tests;
the leak check is ``tests/fixtures/pii/corpus.py``). Ordinary tickets: the first 334 BANKING77
test queries, 333 GitHub issues (react, vscode) and 333 helpdesk-synthetic e-mails (en/de), none
of which holds an IBAN, card, secret, date of birth or national id (the hits were read by hand):
a ticket that gets such a placeholder counts as a false redaction.

Presidio (optional, not a project dependency): ``pip install presidio-analyzer==2.2.366`` in any
environment. Its default NLP engine needs a spaCy model (``en_core_web_lg``) that is published on
GitHub, not on PyPI, so it cannot be installed here; the script runs Presidio's pattern
recognizers (e-mail, credit card with Luhn, IBAN, phone via ``phonenumbers``, US SSN, IP, URL,
date, crypto, US ids) on a blank spaCy pipeline: no PERSON / LOCATION (those need the model).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))
DATASETS = ROOT.parent / "shared" / "datasets"

from fixtures.pii.corpus import leaked, load_corpus  # noqa: E402

from ticket_triage.text.pii import PLACEHOLDERS, redact_pii  # noqa: E402

NEW_KINDS = re.compile(r"\[(?:SECRET|DOB|SSN|ID_NUMBER|IBAN|CARD)\]")
PRESIDIO_FALSE = {"CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_BANK_NUMBER", "US_PASSPORT",
                  "US_DRIVER_LICENSE", "US_ITIN", "UK_NHS", "CRYPTO", "MEDICAL_LICENSE", "DATE_TIME"}


def ordinary() -> list[str]:
    with open(DATASETS / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        b = [r["text"] for r in csv.DictReader(f)][:334]
    with open(DATASETS / "github-issues" / "test.csv", newline="", encoding="utf-8") as f:
        g = [r["title"] + "\n\n" + r["body"] for r in csv.DictReader(f)][:333]
    with open(DATASETS / "helpdesk-synthetic" / "tickets.csv", newline="", encoding="utf-8") as f:
        h = [r["subject"] + "\n\n" + r["body"] for r in csv.DictReader(f)][:333]
    return b + g + h


def timed(fn, texts: list[str], repeats: int) -> tuple[list, float]:
    """Outputs and the median over ``repeats`` passes of ms per ticket."""
    times, out = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [fn(t) for t in texts]
        times.append((time.perf_counter() - t0) * 1000 / len(texts))
    return out, round(statistics.median(times), 4)


def recall(items, outputs) -> dict:
    per_kind: dict[str, list[int]] = {}
    misses = []
    for (kind, lang, value, text), out in zip(items, outputs):
        hit = not leaked(kind, value, out)
        per_kind.setdefault(kind, []).append(hit)
        if not hit:
            misses.append(f"{kind}/{lang}: {text[:70]}")
    n = len(items)
    return {"recall": round(sum(sum(v) for v in per_kind.values()) / n, 4),
            "per_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(per_kind.items())},
            "misses": misses}


def presidio_engine():
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError as exc:
        return None, f"not installed ({exc.name}); pip install presidio-analyzer==2.2.366"
    blank = Path(tempfile.mkdtemp(prefix="spacy-blank-")) / "en"
    spacy.blank("en").to_disk(blank)
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": str(blank)}]})
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    return engine, "pattern recognizers on a blank spaCy pipeline (no en_core_web_lg offline)"


def presidio_redact(engine, text: str) -> tuple[str, set[str]]:
    results = engine.analyze(text=text, language="en")
    kinds = {r.entity_type for r in results}
    out = text
    for r in sorted(results, key=lambda r: r.start, reverse=True):
        out = out[: r.start] + f"<{r.entity_type}>" + out[r.end:]
    return out, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import logging

    logging.getLogger("tldextract").setLevel(logging.CRITICAL)  # no internet: bundled suffix list
    items = load_corpus()
    texts = [t for *_, t in items]
    tickets = ordinary()
    res: dict = {"corpus_items": len(items), "ordinary_tickets": len(tickets)}

    out, _ = timed(redact_pii, texts, 1)
    strict, _ = timed(lambda t: redact_pii(t, strict=True), texts, 1)
    red, ms = timed(redact_pii, tickets, args.repeats)
    false = [t[:100] for t, o in zip(tickets, red) if NEW_KINDS.search(o)]
    res["builtin"] = {**recall(items, out), "recall_strict_llm": recall(items, strict)["recall"],
                      "false_redactions": len(false), "false_redaction_rate": len(false) / len(tickets),
                      "false_examples": false[:5], "ms_per_ordinary_ticket": ms,
                      "placeholders_on_ordinary": dict(Counter(p for o in red for p in PLACEHOLDERS if p in o))}
    print("built-in:", json.dumps({k: v for k, v in res["builtin"].items() if k != "misses"}), flush=True)

    engine, how = presidio_engine()
    res["presidio"] = {"how": how}
    if engine is not None:
        engine.analyze(text="warm up 4111 1111 1111 1111", language="en")
        pout, _ = timed(lambda t: presidio_redact(engine, t)[0], texts, 1)
        pres, pms = timed(lambda t: presidio_redact(engine, t), tickets, max(1, args.repeats // 2))
        pfalse = [t[:100] for t, (_, kinds) in zip(tickets, pres) if kinds & PRESIDIO_FALSE]
        pfalse_nodate = [t for t, (_, kinds) in zip(tickets, pres) if kinds & (PRESIDIO_FALSE - {"DATE_TIME"})]
        res["presidio"].update({**recall(items, pout), "false_redactions": len(pfalse),
                                "false_redaction_rate": len(pfalse) / len(tickets),
                                "false_redaction_rate_without_dates": len(pfalse_nodate) / len(tickets),
                                "false_examples": pfalse[:5], "ms_per_ordinary_ticket": pms,
                                "cost_ratio_vs_builtin": round(pms / ms, 1) if ms else None})
        print("presidio:", json.dumps({k: v for k, v in res["presidio"].items() if k != "misses"}), flush=True)
    else:
        print("presidio:", how)
    res["command"] = "flock /tmp/tt-bench.lock python benchmarks/bench_pii.py " + " ".join(sys.argv[1:])
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    res["machine"] = {"nproc": os.cpu_count(), "cpu": cpu, "note": "shared with other engineers' test runs"}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
