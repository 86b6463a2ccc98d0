"""What `make demo` prints at the end: what the pipeline produced and where to look."""

from __future__ import annotations

import json
from pathlib import Path


def _load(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def summary(root: str | Path = ".") -> str:
    root = Path(root)
    ing = _load(root / "artifacts/ingest/report.json")
    cln = _load(root / "artifacts/clean/report.json")
    spl = _load(root / "artifacts/split/report.json")
    trn = _load(root / "artifacts/train/sweep.json")
    ev = _load(root / "eval/metrics.json")
    pro = _load(root / "artifacts/promote/decision.json")
    mon = _load(root / "eval/continuous/result.json")
    pkg = _load(root / "artifacts/package/bento.json")
    lines = ["", "=== ticket-triage demo: done ==="]
    if ing:
        lines.append(f"ingest   {ing.get('rows_in')} rows -> {ing.get('tickets_out')} tickets, "
                     f"{ing.get('rejected')} rejected (artifacts/ingest/rejected.jsonl)")
    if cln:
        lines.append(f"clean    {cln.get('kept')} kept, {cln.get('duplicates')} duplicates, "
                     f"{cln.get('set_aside')} set aside, {cln.get('rejected')} rejected (artifacts/clean/)")
    if spl:
        s = spl.get("splits", {})
        lines.append(f"split    {spl.get('strategy')}: train {s.get('train', {}).get('size')}, validation "
                     f"{s.get('validation', {}).get('size')}, test {s.get('test', {}).get('size')}, held-out "
                     f"{spl.get('heldout', {}).get('size')} frozen in eval/heldout.jsonl")
        for w in spl.get("warnings", []):
            lines.append(f"         note: {w}")
    if trn:
        lines.append(f"train    {len(trn.get('candidates', []))} candidates, winner {trn.get('winner')}")
        for c in trn.get("candidates", []):
            m = c.get("metrics", {})
            lines.append(f"           {c['name']:<28} val acc {m.get('val/accuracy', 0):.4f}  macro-F1 "
                         f"{m.get('val/macro_f1', 0):.4f}  auto-routed {m.get('val/coverage', 0):.3f} "
                         f"@ precision {m.get('val/auto_precision', 0):.4f}")
    if ev:
        lines.append(f"evaluate test acc {ev.get('test/accuracy', 0):.4f}, auto-routed {ev.get('test/coverage', 0):.3f} "
                     f"at precision {ev.get('test/auto_precision', 0):.4f}, draft {ev.get('test/draft_share', 0):.3f}, "
                     f"review {ev.get('test/review_share', 0):.3f}, ECE {ev.get('test/ece', 0):.4f}; "
                     f"held-out acc {ev.get('heldout/accuracy', 0):.4f} (eval/metrics.json, eval/plots/)")
    if pro:
        lines.append(f"promote  {pro.get('reason')} (champion = version {pro.get('champion_version')})")
    if mon:
        lines.append(f"monitor  status {mon.get('status')} (eval/continuous/summary.md)")
    if pkg:
        lines.append(f"package  Bento {pkg.get('bento')} with model {pkg.get('model')}: `{pkg.get('serve')}`")
    lines += [
        "",
        "Where to look:",
        "  make mlflow-ui                      compare the sweep's runs (sqlite store mlruns.db)",
        "  .venv/bin/dvc metrics show          metrics;   .venv/bin/dvc plots show   -> dvc_plots/index.html",
        "  .venv/bin/triage classify \"my card was stolen\"   a decision as JSON",
        "  make serve                          the champion over HTTP on 127.0.0.1:3000",
    ]
    return "\n".join(lines)
