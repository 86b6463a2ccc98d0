"""`triage helpdesk sync --once | run | trust`: the command line of the helpdesk integration
(argument parsing and printing only; the work is in :mod:`.worker` and :mod:`.trust`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def add_parser(sub: Any) -> None:
    """Register ``triage helpdesk ...`` on the CLI's subparsers."""
    h = sub.add_parser(
        "helpdesk", help="Zendesk / Intercom / Front: drafts in, corrections back, per-label trust",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Poll the configured helpdesks (params.yaml `helpdesk`: its provider and "
                    "`additional:` ones), classify new tickets with the model bundle, write "
                    "drafts (tags, internal note, Zendesk topic field) through the persisted "
                    "outbox, and read agent corrections back into the review store.\n\n"
                    "  triage helpdesk sync --once     one pass, then a summary (for cron)\n"
                    "  triage helpdesk run             keep polling; SIGTERM stops after the pass\n"
                    "  triage helpdesk trust [--apply] per-label confirmation rate, switch labels "
                    "to auto-route\n\nCredentials come from the env vars the config names "
                    "(*_env); see README, 'Helpdesk integration'.")
    hsub = h.add_subparsers(dest="action", required=True)
    for name, helptext in (("sync", "one pass: poll, classify, draft, deliver, read corrections"),
                           ("run", "the long-running worker (health file, JSON logs on stderr)"),
                           ("trust", "per-label trust report; --apply switches labels")):
        hp = hsub.add_parser(name, help=helptext)
        hp.add_argument("--params", help="params file (default: $TRIAGE_PARAMS, else params.yaml)")
        hp.add_argument("--db", help="review store URL (default: review.db_url / $TRIAGE_REVIEW_DB_URL)")
        hp.add_argument("--provider", choices=["zendesk", "intercom", "front"],
                        help="only this helpdesk (default: every configured one)")
        if name in ("sync", "run"):
            hp.add_argument("--bundle", help="model bundle folder (default: $TRIAGE_BUNDLE, else "
                                             "the registry champion)")
            hp.add_argument("--health-file", help="default: helpdesk.worker.health_file")
            hp.add_argument("--interval", type=float, help="seconds between passes "
                                                           "(default: helpdesk.worker.interval_s)")
        if name == "sync":
            hp.add_argument("--once", action="store_true", help="one pass and exit (required)")
        if name == "run":
            hp.add_argument("--max-passes", type=int, default=None, help=argparse.SUPPRESS)
        if name == "trust":
            hp.add_argument("--apply", action="store_true",
                            help="switch labels that meet the target to auto-route (and back "
                                 "those that fell below), recorded with who and when")
            hp.add_argument("--by", help="who applies (default: $USER)")
            hp.add_argument("--json", action="store_true", help="machine-readable report")
        hp.set_defaults(func=run)


def setup(args: argparse.Namespace, *, need_model: bool = True) -> tuple[Any, Any, Any]:
    """(params, store, adapters) for the helpdesk commands."""
    import dataclasses

    from ticket_triage.config import ReviewConfig, load_params
    from ticket_triage.helpdesk import LazyTriage, adapters_from_params
    from ticket_triage.review.store import ReviewStore

    params = load_params(args.params or os.environ.get("TRIAGE_PARAMS") or None)
    cfg = ReviewConfig.from_dict(params.get("review"))
    cfg = dataclasses.replace(cfg, db_url=cfg.resolved_db_url(override=getattr(args, "db", None)))
    store = ReviewStore.from_config(cfg)
    taxonomy = None
    if cfg.taxonomy_path:
        from ticket_triage.taxonomy import load_taxonomy

        try:
            taxonomy = load_taxonomy(cfg.taxonomy_path)
        except (OSError, ValueError):
            taxonomy = None

    def load() -> Any:
        from ticket_triage.decision.triage import Triage

        from pathlib import Path

        from ticket_triage.bundles import resolve_bundle

        return Triage.load(resolve_bundle(getattr(args, "bundle", None), alias="champion",
                                          local_winner=Path("artifacts/train/winner"))[0])

    adapters = adapters_from_params(params, classify=LazyTriage(load), store=store,
                                    taxonomy=taxonomy)
    if getattr(args, "provider", None):
        adapters = [a for a in adapters if a.name == args.provider]
        if not adapters:
            raise ValueError(f"helpdesk {args.provider!r} is not configured (helpdesk.provider "
                             "or helpdesk.additional in params.yaml)")
    return params, store, adapters


def run(args: argparse.Namespace) -> int:
    from ticket_triage.config import ConfigError

    try:
        params, store, adapters = setup(args)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "trust":
        return trust(args, adapters)
    problems = [f"{a.name}: {p}" for a in adapters for p in a.config_problems()]
    if problems:
        print("error: the helpdesk is not configured:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    from ticket_triage.helpdesk.worker import HelpdeskWorker, format_summary, setup_json_logging

    hd = adapters[0].cfg
    health = args.health_file or hd.worker_health_file
    if health and not os.path.isabs(health):
        from ticket_triage.config import find_root

        try:
            health = str(find_root() / health)
        except ConfigError:
            pass

    def progress(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    worker = HelpdeskWorker(adapters, interval_s=args.interval or hd.worker_interval_s,
                            health_file=health, progress=progress)
    try:
        if args.action == "sync":
            if not args.once:
                print("error: `triage helpdesk sync` needs --once (the loop is "
                      "`triage helpdesk run`)", file=sys.stderr)
                return 2
            worker.run_pass(wait=True)
            worker.write_health("idle")
        else:
            setup_json_logging()
            worker.install_signal_handlers()
            worker.run(max_passes=args.max_passes)
    except (FileNotFoundError, LookupError) as exc:  # no model bundle
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = worker.summary()
    print(format_summary(rows))
    failed = [r for r in rows if r.get("error")]
    return 1 if failed and len(failed) == len(rows) else 0


def trust(args: argparse.Namespace, adapters: list[Any]) -> int:
    from ticket_triage.helpdesk.trust import apply_trust, format_report, trust_report

    out = []
    for a in adapters:
        report = trust_report(a)
        if args.json:
            out.append({"helpdesk": a.name, "labels": [r.to_dict() for r in report]})
        else:
            print(format_report(a, report))
        if args.apply:
            who = args.by or os.environ.get("USER") or "unknown"
            changed = apply_trust(a, by=who, report=report)
            for r in changed:
                print(f"{a.name}: {r.label} switched {r.action} by {who} ({r.why})",
                      file=sys.stderr)
            if not changed:
                print(f"{a.name}: no label to switch", file=sys.stderr)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0
