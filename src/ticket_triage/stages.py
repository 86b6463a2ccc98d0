"""Data-stage runners: what `pipelines/{ingest,clean,split}.py` (the DVC stages) call.

Each takes the composed params (``ticket_triage.config.load_params()``), reads its declared
inputs, writes its declared outputs and a metrics JSON, and returns the report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from ticket_triage.data import (
    SPLITS,
    clean_tickets,
    iter_jsonl,
    read_tickets_jsonl,
    split_tickets,
    write_jsonl,
)
from ticket_triage.taxonomy import parse_taxonomy

log = logging.getLogger(__name__)


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def taxonomy_from_params(params: Mapping[str, Any]):
    return parse_taxonomy(params["taxonomy"], "params.yaml:taxonomy")


def run_ingest(params: Mapping[str, Any], out_dir: str | Path | None = None,
               metrics_path: str | Path = "eval/metrics/ingest.json") -> dict[str, Any]:
    """Read the raw export named in ``data``, merge reviewer corrections from
    ``paths.feedback``, write canonical tickets and rejected rows."""
    from ticket_triage.review.feedback import merge_feedback
    from ticket_triage.ingest.readers import read_tickets

    data = params["data"]
    out = Path(out_dir or params["paths"]["ingest"])
    defaults = {k: data[k] for k in ("channel", "language") if data.get(k)}
    tickets, rejected, report = read_tickets(
        data["path"], data.get("format", "csv"), data.get("mapping"),
        defaults=defaults, urgency_map=data.get("urgency_map"))
    feedback_dir = Path(params["paths"].get("feedback", "data/feedback"))
    tickets, n_overridden, n_added = merge_feedback(tickets, feedback_dir)
    write_jsonl(out / "tickets.jsonl", tickets)
    write_jsonl(out / "rejected.jsonl", (r.to_dict() if hasattr(r, "to_dict") else r for r in rejected))
    summary = report.to_dict()
    # the read time goes to the log, not into report.json: DVC hashes this folder, and a
    # timing in it would make every rerun look like new data to the stages downstream
    log.info("ingest: read %d rows in %.2f s", summary.get("rows_in", 0), float(summary.pop("seconds", 0.0) or 0.0))
    summary.update({"feedback_overridden": n_overridden, "feedback_added": n_added,
                    "tickets_written": len(tickets)})
    write_json(out / "report.json", summary)
    write_json(metrics_path, {"ingest/rows_in": summary["rows_in"], "ingest/tickets_out": summary["tickets_out"],
                              "ingest/rejected": summary["rejected"],
                              "ingest/feedback_overridden": n_overridden, "ingest/feedback_added": n_added})
    return summary


def run_clean(params: Mapping[str, Any], metrics_path: str | Path = "eval/metrics/clean.json",
              progress: bool = True) -> dict[str, Any]:
    paths = params["paths"]
    taxonomy = taxonomy_from_params(params)
    tickets = read_tickets_jsonl(Path(paths["ingest"]) / "tickets.jsonl")
    kept, aside, rejected, report = clean_tickets(tickets, taxonomy, params.get("clean"), progress=progress)
    out = Path(paths["clean"])
    write_jsonl(out / "tickets.jsonl", kept)
    write_jsonl(out / "set_aside.jsonl", aside)
    write_jsonl(out / "rejected.jsonl", rejected)
    rep = report.to_dict()
    rep["conserved"] = report.conserved
    write_json(out / "report.json", rep)
    write_json(metrics_path, {"clean/tickets_in": report.tickets_in, "clean/kept": report.kept,
                              "clean/duplicates": report.duplicates, "clean/set_aside": report.set_aside,
                              "clean/rejected": report.rejected})
    if report.topics_without_history:
        log.warning("topics with no labelled history yet (new categories): %s",
                    ", ".join(report.topics_without_history))
    return rep


def run_split(params: Mapping[str, Any], metrics_path: str | Path = "eval/metrics/split.json") -> dict[str, Any]:
    paths = params["paths"]
    rows = list(iter_jsonl(Path(paths["clean"]) / "tickets.jsonl"))
    splits, heldout, report = split_tickets(
        rows, params["split"], heldout_path=paths["heldout"], seed=int(params.get("seed", 42)))
    out = Path(paths["split"])
    for name in SPLITS:
        write_jsonl(out / f"{name}.jsonl", splits[name])
    write_json(out / "report.json", report)
    write_json(metrics_path, {f"split/{k}": v["size"] for k, v in report["splits"].items()}
               | {"split/heldout": report["heldout"]["size"]})
    return report
