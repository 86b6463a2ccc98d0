"""`triage`: the command line. Thin: every command calls the library.

    triage init EXPORT --name NAME           profile your export; draft conf/data/NAME.yaml + a taxonomy
    triage config compose [OVERRIDE ...]     compose conf/ into params.yaml
    triage taxonomy check PATH               validate a taxonomy file
    triage ingest PATH --format F --out DIR  read an export into canonical tickets
    triage classify "text" | --file F        decisions as JSON lines
    triage score IN --out OUT [--engine E]   a file/folder of tickets -> Parquet decisions
    triage review                            the review page, standalone
    triage feedback export | report          corrections -> data/feedback/, audit precision
    triage helpdesk sync --once | run | trust   drafts into Zendesk / Intercom / Front, per-label trust
    triage monitor [--engine spark --data]   continuous evaluation of the champion (was `eval run`)
    triage demo-summary                      what `make demo` produced and where to look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from ticket_triage.config import ConfigError, target_precision


def _cmd_config(args: argparse.Namespace) -> int:
    from ticket_triage.config import ConfigError, compose, defaults_drift, save_defaults, write_params

    try:
        params = compose(args.overrides)
        groups, others = defaults_drift(args.overrides)
        if args.save_defaults and groups:
            conf = save_defaults({g: chosen for g, (_, chosen) in groups.items()})
            print(f"{conf}: defaults now " + ", ".join(f"{g}: {chosen} (was {old})" for g, (old, chosen) in groups.items()))
            groups = {}
    except ConfigError as exc:  # an unknown group member, a bad override: no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_params(params, args.out)
    print(f"wrote {path} ({len(params)} sections: {', '.join(params)})")
    forgotten = [f"{g}={chosen}" for g, (_, chosen) in groups.items()] + list(others)
    if forgotten:
        print(f"note: `dvc exp run` composes params.yaml again from conf/config.yaml and would drop "
              f"{' '.join(forgotten)}." + (
                  f" Keep the group choices with `triage config compose --save-defaults {' '.join(args.overrides)}`"
                  " (writes them into conf/config.yaml's defaults), or pass" if groups else " Pass") +
              f" them to every experiment: dvc exp run {' '.join('-S ' + f for f in forgotten)}",
              file=sys.stderr)
    return 0


def _cmd_taxonomy(args: argparse.Namespace) -> int:
    from ticket_triage.taxonomy import TaxonomyError, load_taxonomy

    try:
        tax = load_taxonomy(args.path)
    except TaxonomyError as exc:
        print(f"error: {args.path} is not a valid taxonomy:", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(tax.summary())
    if args.data:
        from ticket_triage.data import iter_jsonl

        counts: dict[str, int] = {}
        for r in iter_jsonl(args.data):
            counts[r.get("topic")] = counts.get(r.get("topic"), 0) + 1
        missing = tax.missing_history(counts)
        if missing:
            print(f"note: no labelled history yet (new categories): {', '.join(missing)}")
    return 0


def _load_mapping(path: str | None) -> tuple[dict | None, dict]:
    if not path:
        return None, {}
    import yaml

    cfg = yaml.safe_load(Path(path).read_text()) or {}
    if isinstance(cfg.get("data"), dict):  # a `# @package _global_` data config (as `triage init` drafts it)
        cfg = cfg["data"]
    return cfg.get("mapping"), cfg


def _cmd_ingest(args: argparse.Namespace) -> int:
    from ticket_triage.ingest.readers import ingest
    from ticket_triage.ingest.rows import IngestError

    mapping, cfg = _load_mapping(args.mapping)
    defaults = {k: cfg[k] for k in ("channel", "language") if cfg.get(k)}
    try:
        report = ingest(args.path, args.format, mapping, out_dir=args.out, defaults=defaults,
                        urgency_map=cfg.get("urgency_map"))
    except (IngestError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = report.to_dict()
    print(json.dumps(d, indent=2, default=str))
    print(f"wrote {args.out}/tickets.jsonl, rejected.jsonl, report.json", file=sys.stderr)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from ticket_triage.config import ConfigError, find_root
    from ticket_triage.ingest.profile import ProfileError, check_profile, draft_configs, profile_export

    try:
        root = find_root()
        prof = profile_export(args.path, args.format, label=args.label, date=args.date, text=args.text,
                              subject=args.subject, id_column=args.id)
        print("\n".join(prof.lines()))
        check_profile(prof, allow_no_dates=args.no_dates)
        export = Path(args.path).resolve()
        try:
            in_config = str(export.relative_to(root))
        except ValueError:
            in_config = str(export)
        data_path, tax_path = draft_configs(prof, args.name, root / "conf", path_in_config=in_config,
                                            language=args.language, force=args.force)
    except (ProfileError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {data_path.relative_to(root)} and {tax_path.relative_to(root)} (a skeleton: edit its descriptions "
          "and examples, merge labels with maps_from)")
    print(f"next: triage config compose --save-defaults data={args.name} taxonomy={args.name} && dvc repro")
    return 0


def _resolve_bundle(bundle: str | None, alias: str) -> Path:
    """``--bundle``, else the one order of :func:`ticket_triage.bundles.resolve_bundle` (the
    local sweep winner last). A bundle the user did not name (``--bundle``, ``$TRIAGE_BUNDLE``)
    must be the configured dataset's: another dataset's model is refused, never served silently."""
    import json as _json

    from ticket_triage import tracking
    from ticket_triage.bundles import resolve_bundle

    path, where = resolve_bundle(bundle, alias=alias, local_winner=Path("artifacts/train/winner"))
    if where not in ("given", "env:TRIAGE_BUNDLE"):
        want = tracking.current_dataset()
        policy = Path(path) / "policy.json"
        got = _json.loads(policy.read_text()).get("dataset") if policy.is_file() else None
        if want and got and want != got:
            raise LookupError(f"the model at {path} ({where}) was trained on dataset {got!r}, but the configured "
                              f"dataset is {want!r} (params.yaml data.name / $TRIAGE_DATASET): run `dvc repro` for "
                              f"{want!r}, or pass --bundle to choose a model explicitly")
    return path


_LABEL_FIELDS = ("topic", "tags", "urgency")  # labels, not inputs: new tickets need not have them


def _cmd_classify(args: argparse.Namespace) -> int:
    from ticket_triage.decision.triage import Triage

    tickets: list[dict[str, Any]] = []
    language_prior = None
    if args.file:
        from ticket_triage.ingest.readers import IngestError, read_tickets

        fmt = args.format or Path(args.file).suffix.lstrip(".") or "csv"
        try:
            mapping, cfg = _load_mapping(args.mapping)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read --mapping {args.mapping}: {exc}", file=sys.stderr)
            return 2
        language_prior = cfg.get("language")  # the data config's language: a prior, not a label
        header: list[str] = []
        if fmt == "csv" and Path(args.file).is_file():
            import csv

            with open(args.file, newline="", encoding="utf-8-sig", errors="replace") as f:
                header = next(csv.reader(f), [])
        if mapping is None and fmt == "csv":
            mapping = {"body": next((c for c in ("body", "text", "description") if c in header), header[-1] if header else "body")}
            for c in ("id", "subject", "created_at"):
                if c in header:
                    mapping[c] = c
        elif mapping is not None:
            mapping = {k: v for k, v in mapping.items() if k not in _LABEL_FIELDS}
            if header:  # optional fields the new file lacks are left out, not refused
                mapping = {k: v for k, v in mapping.items()
                           if k in ("body", "subject") or all(c in header for c in ([v] if isinstance(v, str) else v))}
        defaults = {k: cfg[k] for k in ("channel",) if cfg.get(k)}
        try:
            tks, rejected, _ = read_tickets(args.file, fmt, mapping, defaults=defaults)
        except (IngestError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for r in rejected:
            print(json.dumps({"rejected": r.to_dict() if hasattr(r, "to_dict") else r}, default=str), file=sys.stderr)
        tickets = [t.to_dict() for t in tks]
    elif args.text:
        tickets = [{"id": "cli-1", "subject": args.subject or "", "body": " ".join(args.text)}]
    else:
        print("error: give a ticket text or --file tickets.csv", file=sys.stderr)
        return 2
    try:
        bundle = _resolve_bundle(args.bundle, args.alias)
        triage = Triage.load(bundle)
    except (FileNotFoundError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for d in triage.decide(tickets, language_prior=language_prior):
        print(json.dumps(d.to_dict(), ensure_ascii=False, default=str))
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from ticket_triage.batch.pool import resolve_workers
    from ticket_triage.batch.score import ScoreError, input_files, score_local

    try:
        if "://" not in args.input:
            input_files(args.input, args.format)  # bad input: say so before loading anything
        workers = resolve_workers(args.workers)
    except (ScoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        bundle = _resolve_bundle(args.bundle, args.alias)
        if args.engine == "local":
            from ticket_triage.decision.triage import Triage

            triage = Triage.load(bundle)  # in this process too: a broken bundle fails here, clearly
            if workers == 1:
                report = score_local(triage, args.input, args.out, fmt=args.format, chunk_rows=args.chunk_rows)
            else:
                from ticket_triage.batch.pool import DecisionPool

                with DecisionPool(bundle, workers) as pool:
                    report = score_local(triage, args.input, args.out, fmt=args.format,
                                         chunk_rows=args.chunk_rows, pool=pool.warm())
        else:
            from ticket_triage.batch.spark import score_spark, spark_session

            spark = spark_session(None if args.master == "submit" else args.master)
            report = score_spark(spark, bundle, args.input, args.out, fmt=args.format,
                                 ship_bundle=not args.bundle_on_nodes,
                                 partitions=args.partitions)
    except (ScoreError, FileNotFoundError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0


def _review_cfg(args: argparse.Namespace) -> Any:
    """The ``review`` section (a ReviewConfig), its db_url from --db or the env var it names."""
    import dataclasses

    from ticket_triage.config import ReviewConfig, load_params

    cfg = ReviewConfig.from_dict(load_params().get("review"))
    return dataclasses.replace(cfg, db_url=cfg.resolved_db_url(override=getattr(args, "db", None)))


def _cmd_review(args: argparse.Namespace) -> int:
    from ticket_triage.review.app import serve_review

    cfg = _review_cfg(args)
    Path("var").mkdir(exist_ok=True)
    serve_review(args.host or cfg.host, args.port or int(cfg.port), cfg.db_url, cfg.taxonomy_path or "",
                 reviewers=cfg.reviewers or None, reviewers_env=cfg.reviewers_env, secret_env=cfg.secret_env,
                 claim_ttl_s=float(cfg.claim_ttl_s), cookie_secure=bool(cfg.cookie_secure))
    return 0


def _cmd_feedback(args: argparse.Namespace) -> int:
    from ticket_triage.review.feedback import export_corrections, feedback_report, format_report
    from ticket_triage.review.store import ReviewStore

    cfg = _review_cfg(args)
    store = ReviewStore.from_config(cfg)
    if args.action == "export":
        path = export_corrections(store, args.out or cfg.feedback_dir)
        print(f"wrote {path}" if path else "no new corrections since the last export")
        if path:
            print("next: `dvc add data && dvc repro -f ingest && dvc repro` retrains with them (the ingest stage "
                  "tracks the export, not the feedback folder)")
        return 0
    print(format_report(feedback_report(store, confidence=float(cfg.audit_confidence),
                                        method=cfg.audit_interval)))
    return 0


def _cmd_eval_deprecated(args: argparse.Namespace) -> int:
    import warnings

    msg = "`triage eval run` is deprecated and will be removed: use `triage monitor` (same options)"
    warnings.warn(msg, DeprecationWarning, stacklevel=2)
    print(f"warning: {msg}", file=sys.stderr)
    return _cmd_eval(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from ticket_triage.config import load_params

    if args.engine == "spark" or args.data:
        return _eval_dataset(args, load_params())
    from ticket_triage.monitoring.continuous import run_continuous_eval

    result = run_continuous_eval(load_params(), bundle_dir=args.bundle)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _eval_dataset(args: argparse.Namespace, params: dict[str, Any]) -> int:
    """The labelled-set report over a Parquet dataset, in-process or on Spark."""
    from ticket_triage.batch.score import ScoreError

    if not args.data:
        print("error: --engine spark evaluates a labelled Parquet dataset: pass --data "
              "PATH (columns text, topic)", file=sys.stderr)
        return 2
    target = target_precision(params)
    try:
        bundle = _resolve_bundle(args.bundle, "champion")
        if args.engine == "spark":
            from ticket_triage.batch.spark import evaluate_spark, spark_session

            spark = spark_session(None if args.master == "submit" else args.master)
            metrics = evaluate_spark(spark, bundle, args.data, target_precision=target)
        else:
            import pandas as pd

            from ticket_triage.decision.triage import Triage
            from ticket_triage.evaluation import score_split

            frame = pd.read_parquet(args.data)
            missing = {"text", "topic"} - set(frame.columns)
            if missing:
                raise ValueError(f"{args.data} lacks column(s) {sorted(missing)}: evaluation "
                                 "needs the cleaned 'text' and the gold 'topic'")
            rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
            metrics, _ = score_split(Triage.load(bundle), rows, "heldout",
                                     target_precision=target)
    except (ScoreError, FileNotFoundError, LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps({"engine": args.engine, "data": str(args.data), "metrics": metrics},
                      indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def _cmd_demo_summary(args: argparse.Namespace) -> int:
    from ticket_triage.stages import demo_summary as summary

    print(summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="triage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("config", help="compose conf/ into params.yaml")
    csub = c.add_subparsers(dest="action", required=True)
    cc = csub.add_parser("compose", help="write params.yaml from conf/ (+ Hydra overrides like model=tfidf_logreg)")
    cc.add_argument("overrides", nargs="*")
    cc.add_argument("--out", default="params.yaml")
    cc.add_argument("--save-defaults", action="store_true",
                    help="also make the group choices (data=acme taxonomy=acme) the defaults of conf/config.yaml, "
                         "so `dvc exp run` (which composes params.yaml again from conf/config.yaml) keeps them")
    cc.set_defaults(func=_cmd_config)

    n = sub.add_parser(
        "init", help="profile your export (columns, labels, dates) and draft its data config and taxonomy",
        description="Read an export (CSV, JSONL, Parquet), show its columns, label counts and date range, guess "
                    "which column is the id, date, subject, body and label, and write conf/data/NAME.yaml and "
                    "a taxonomy skeleton conf/taxonomy/NAME.yaml with the labels found. Then: "
                    "`triage config compose --save-defaults data=NAME taxonomy=NAME && dvc repro`.")
    n.add_argument("path", help="the export file")
    n.add_argument("--name", required=True, help="dataset name: names the config files, held-out set and champion")
    n.add_argument("--format", choices=["csv", "jsonl", "parquet"], help="default: from the file extension")
    n.add_argument("--label", help="the label column (topic, category, queue); default: guessed")
    n.add_argument("--date", help="the creation-time column; default: guessed")
    n.add_argument("--text", help="the body column; default: guessed")
    n.add_argument("--subject", help="the subject/title column; default: guessed")
    n.add_argument("--id", help="the ticket id column; default: guessed (else ids are generated)")
    n.add_argument("--language", help="the tickets' language (ISO 639-1, e.g. en): a prior for language checks")
    n.add_argument("--no-dates", action="store_true", help="accept an export without dates (random split)")
    n.add_argument("--force", action="store_true", help="overwrite existing conf/data/NAME.yaml and taxonomy")
    n.set_defaults(func=_cmd_init)

    t = sub.add_parser("taxonomy", help="validate a taxonomy")
    tsub = t.add_subparsers(dest="action", required=True)
    tc = tsub.add_parser("check", help="print a summary of a taxonomy file, or every problem in it")
    tc.add_argument("path")
    tc.add_argument("--data", help="cleaned tickets JSONL: also report topics with no labelled history")
    tc.set_defaults(func=_cmd_taxonomy)

    i = sub.add_parser("ingest", help="read a helpdesk export into canonical tickets (+ rejected rows with reasons)")
    i.add_argument("path", help="a file, or a folder of export files")
    i.add_argument("--format", required=True, choices=["csv", "jsonl", "parquet", "zendesk", "intercom", "front"])
    i.add_argument("--mapping", help="a conf/data/*.yaml file with a `mapping:` of canonical field -> column")
    i.add_argument("--out", required=True, help="output folder: tickets.jsonl, rejected.jsonl, report.json")
    i.set_defaults(func=_cmd_ingest)

    k = sub.add_parser("classify", help="print routing decisions as JSON lines")
    k.add_argument("text", nargs="*", help="the ticket text (body)")
    k.add_argument("--subject")
    k.add_argument("--file", help="a CSV/JSONL/Parquet file of tickets")
    k.add_argument("--format", choices=["csv", "jsonl", "parquet", "zendesk", "intercom", "front"])
    k.add_argument("--mapping", help="a conf/data/*.yaml for --file: its mapping (label columns are not needed) "
                                     "and its language/channel")
    k.add_argument("--bundle", help="a model bundle folder (default: $TRIAGE_BUNDLE, else the registry alias, "
                   "else artifacts/train/winner; see ticket_triage.bundles)")
    k.add_argument("--alias", default="champion", help="registry alias to load (champion|challenger|local)")
    k.set_defaults(func=_cmd_classify)

    sc = sub.add_parser(
        "score", help="score a CSV / JSONL / Parquet file or folder into Parquet decisions",
        description="Decide every ticket of a file or folder with the champion (or --bundle) and "
                    "write Parquet: id, topic, band, confidence, urgency, reason, source, "
                    "model_version; one row per input row (a row without text: band 'rejected'). "
                    "--engine local runs here with a progress bar and writes one file; "
                    "--engine spark runs on Apache Spark and writes a Parquet folder.")
    sc.add_argument("input", help="a .csv/.jsonl/.parquet file or a folder of them")
    sc.add_argument("--out", required=True, help="output Parquet path")
    sc.add_argument("--format", choices=("csv", "jsonl", "parquet"),
                    help="input format (default: from the extension)")
    sc.add_argument("--engine", choices=("local", "spark"), default="local")
    sc.add_argument("--bundle", help="bundle folder (default: $TRIAGE_BUNDLE, then the champion)")
    sc.add_argument("--alias", default="champion", help="registry alias when no --bundle")
    sc.add_argument("--master", default="local[2]",
                    help="Spark master URL (local[2], spark://host:7077, yarn, k8s://...); "
                         "'submit' keeps what spark-submit set")
    sc.add_argument("--partitions", type=int, help="repartition the input (spark)")
    sc.add_argument("--bundle-on-nodes", action="store_true",
                    help="the bundle path is readable on every node (shared mount / hdfs://): "
                         "do not ship it with SparkContext.addFile")
    sc.add_argument("--chunk-rows", type=int, default=2048, help="rows per chunk (local)")
    sc.add_argument("--workers", default="1",
                    help="local: worker processes deciding chunks in parallel, each with the bundle "
                         "loaded and the encoder's threads shared among them, chunks written in input "
                         "order; 'auto' = one per CPU. Each worker loads the bundle first, so it pays on "
                         "large inputs: on 2 cores, 2 workers decided 1.26x the tickets/s of one over 13k "
                         "tickets, and took as long overall (benchmarks/README.md)")
    sc.set_defaults(func=_cmd_score)

    r = sub.add_parser("review", help="serve the review page standalone")
    r.add_argument("--host", default=None, help="default: review.host in params")
    r.add_argument("--port", type=int, default=None, help="default: review.port in params")
    r.add_argument("--db", default=None, help="SQLAlchemy URL (default: review.db_url, a SQLite file under var/)")
    r.set_defaults(func=_cmd_review)

    f = sub.add_parser("feedback", help="reviewer corrections: export for retraining, or report audit precision")
    f.add_argument("action", choices=["export", "report"])
    f.add_argument("--db", default=None, help="SQLAlchemy URL of the review store (default: review.db_url)")
    f.add_argument("--out", default=None, help="default: review.feedback_dir (data/feedback)")
    f.set_defaults(func=_cmd_feedback)

    from ticket_triage.helpdesk.commands import add_parser as add_helpdesk_parser

    add_helpdesk_parser(sub)

    def monitor_args(er: argparse.ArgumentParser) -> None:
        er.add_argument("--bundle", help="bundle folder (default: the champion)")
        er.add_argument("--engine", choices=("local", "spark"), default="local",
                        help="spark: score a labelled Parquet dataset (--data) on Apache Spark and "
                             "report the held-out metrics (accuracy, macro F1, per label, coverage, "
                             "auto-routed precision, ECE)")
        er.add_argument("--data", help="labelled Parquet file or folder (columns text, topic) to "
                                       "evaluate instead of the continuous-evaluation sets")
        er.add_argument("--master", default="local[2]",
                        help="Spark master URL (local[2], spark://host:7077, yarn, k8s://...); "
                             "'submit' keeps what spark-submit set")
        er.add_argument("--out", help="also write the report (JSON) here")

    m = sub.add_parser("monitor", help="continuous evaluation (the DVC stage `monitor`): the champion "
                                       "on held-out + recent traffic; drift; failure catalog")
    monitor_args(m)
    m.set_defaults(func=_cmd_eval)
    e = sub.add_parser("eval", help="deprecated: use `triage monitor`")
    esub = e.add_subparsers(dest="action", required=True)
    er = esub.add_parser("run", help="deprecated alias of `triage monitor`")
    monitor_args(er)
    er.set_defaults(func=_cmd_eval_deprecated)

    d = sub.add_parser("demo-summary", help="what make demo produced and where to look")
    d.set_defaults(func=_cmd_demo_summary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # an unknown key or a wrong type in params.yaml: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
