"""The stage entry points: what `pipelines/*.py` (the DVC stages) call, and the demo summary.

Each takes the composed params (``ticket_triage.config.load_params()``), reads its declared
inputs, writes its declared outputs and a metrics JSON, and returns the report: ingest, clean,
split (data), evaluate (the sweep winner on test and held-out, registered as ``challenger``)
and promote (challenger vs champion). Training is ``ticket_triage.training``; continuous
evaluation is ``ticket_triage.monitoring``. :func:`demo_summary` is what `make demo` prints.
A problem the user must fix raises
:class:`ticket_triage.data.DataError` (or :class:`PromotionRefused`) before any output is written.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

from ticket_triage.config import DataConfig, sections, target_precision
from ticket_triage.data import (
    SPLITS,
    DataError,
    check_clean,
    clean_tickets,
    iter_jsonl,
    read_tickets_jsonl,
    split_tickets,
    write_jsonl,
)
from ticket_triage.evaluation import headline, review_loads, score_split, write_cascade_plot, write_plots
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

    cfg = sections(params)
    data = cfg.data
    out = Path(out_dir or cfg.paths.ingest)
    defaults = {k: getattr(data, k) for k in ("channel", "language") if getattr(data, k)}
    from ticket_triage.ingest.profile import source_fingerprint

    fingerprint = source_fingerprint(data.path)
    tickets, rejected, report = read_tickets(
        data.path, data.format, data.mapping, defaults=defaults, urgency_map=data.urgency_map)
    check_ingest(tickets, report, data, rejected=rejected)
    feedback_dir = Path(cfg.paths.feedback)
    tickets, n_overridden, n_added = merge_feedback(tickets, feedback_dir)
    write_jsonl(out / "tickets.jsonl", tickets)
    write_jsonl(out / "rejected.jsonl", (r.to_dict() if hasattr(r, "to_dict") else r for r in rejected))
    summary = report.to_dict()
    # the read time goes to the log, not into report.json: DVC hashes this folder, and a
    # timing in it would make every rerun look like new data to the stages downstream
    log.info("ingest: read %d rows in %.2f s", summary.get("rows_in", 0), float(summary.pop("seconds", 0.0) or 0.0))
    summary.update({"feedback_overridden": n_overridden, "feedback_added": n_added,
                    "tickets_written": len(tickets),
                    "dataset": {"name": str(data.name or "unnamed"), "fingerprint": fingerprint}})
    write_json(out / "report.json", summary)
    write_json(metrics_path, {"ingest/rows_in": summary["rows_in"], "ingest/tickets_out": summary["tickets_out"],
                              "ingest/rejected": summary["rejected"],
                              "ingest/feedback_overridden": n_overridden, "ingest/feedback_added": n_added})
    return summary


def check_ingest(tickets: list[Any], report: Any, data: Mapping[str, Any] | DataConfig, *, rejected: list[Any] = (),
                 now: datetime | None = None) -> None:
    """Refuse an export that cannot train a model: no tickets, no labels, no dates where the
    data config maps a date column, dates in the future (or before 1990: the readers reject
    such rows as ``implausible_date``). Raises :class:`DataError`."""
    data = DataConfig.from_dict(data)
    mapping = data.mapping or {}
    name = data.name or "<name>"
    bad_dates = [r for r in rejected if getattr(r, "reason", None) == "implausible_date"]
    if bad_dates:
        ex = "; ".join(str(getattr(r, "detail", ""))[:120] for r in bad_dates[:3])
        raise DataError(f"{len(bad_dates)} of {report.rows_in} rows are dated in the future or before 1990 (e.g. {ex}): "
                        f"check that mapping.created_at ({mapping.get('created_at')!r}) is the creation time and how it "
                        "is written (day/month order, epoch milliseconds vs seconds, time zone); nothing was written")
    if not tickets:
        raise DataError(f"no ticket could be read from {data.path} ({report.rows_in} rows, rejected: "
                        f"{report.rejected_by_reason}): see the rejected rows' reasons with `triage ingest`, and fix "
                        f"the mapping in conf/data/{name}.yaml")
    if not any(t.topic or t.tags for t in tickets):
        cols = [mapping.get(k) for k in ("topic", "tags") if mapping.get(k)]
        raise DataError(
            (f"the label column(s) {cols} are empty in all {len(tickets)} tickets" if cols else
             f"the data config (conf/data/{name}.yaml) maps no label column (mapping.topic or mapping.tags)")
            + ": training needs each ticket's topic. Map the column that holds your team's topic, category or "
            "queue (`triage init EXPORT --name NAME` shows the columns); to classify unlabelled tickets use "
            "`triage classify --file`")
    dated = [t.created_at for t in tickets if t.created_at is not None]
    if mapping.get("created_at") and not dated:
        raise DataError(f"mapping.created_at is {mapping['created_at']!r} but no ticket has a date there: fix the "
                        f"column name in conf/data/{name}.yaml, or remove mapping.created_at to accept a random "
                        "(stratified) split, which overstates accuracy on a ticket stream")
    now = now or datetime.now(timezone.utc)
    future = sorted((t.created_at, t.id) for t in tickets if t.created_at is not None and t.created_at > now + timedelta(days=1))
    if future:
        ex = ", ".join(f"{tid} ({d.isoformat()})" for d, tid in future[-3:])
        raise DataError(f"{len(future)} of {len(dated)} tickets are dated in the future (e.g. {ex}): check that "
                        f"mapping.created_at ({mapping.get('created_at')!r}) is the creation time and how it is written "
                        "(day/month order, epoch milliseconds vs seconds, time zone); nothing was written")


def run_clean(params: Mapping[str, Any], metrics_path: str | Path = "eval/metrics/clean.json",
              progress: bool = True) -> dict[str, Any]:
    from ticket_triage.text.clean import CleanConfig

    cfg = sections(params)
    clean_cfg = CleanConfig.from_dict(params.get("clean"))
    paths = cfg.paths
    taxonomy = taxonomy_from_params(params)
    tickets = read_tickets_jsonl(Path(paths.ingest) / "tickets.jsonl")
    kept, aside, rejected, report = clean_tickets(tickets, taxonomy, clean_cfg, progress=progress,
                                                  language_prior=cfg.data.language)
    if report.unmapped_tags:
        log.warning("unmapped source tags (tickets set aside): %s",
                    ", ".join(f"{t} ({n})" for t, n in list(report.unmapped_tags.items())[:20]))
    if report.maps_from_suggestions:
        log.warning("maps_from suggestions: %s", ", ".join(f"{t!r} -> topic {tid!r}"
                                                         for t, tid in report.maps_from_suggestions.items()))
    check_clean(report, clean_cfg, taxonomy)
    out = Path(paths.clean)
    write_jsonl(out / "tickets.jsonl", kept)
    write_jsonl(out / "set_aside.jsonl", aside)
    write_jsonl(out / "rejected.jsonl", rejected)
    rep = report.to_dict()
    rep["conserved"] = report.conserved
    rep["warnings"] = []
    if report.unmapped_tags:
        rep["warnings"].append(
            f"{report.set_aside_by_reason.get('unmapped_tags', 0)} tickets set aside, their source tags map to no topic: "
            + ", ".join(f"{t!r} ({n})" for t, n in list(report.unmapped_tags.items())[:20])
            + "".join(f"; suggestion: add {t!r} to maps_from of topic {tid!r}" for t, tid in report.maps_from_suggestions.items()))
    if report.topics_without_history:
        rep["warnings"].append(f"topics with no labelled tickets (new categories): {', '.join(report.topics_without_history)}")
    ingest_report = Path(paths.ingest) / "report.json"
    rep["dataset"] = (json.loads(ingest_report.read_text()).get("dataset") if ingest_report.is_file() else None) or {
        "name": str(cfg.data.name or "unnamed"), "fingerprint": None}
    write_json(out / "report.json", rep)
    write_json(metrics_path, {"clean/tickets_in": report.tickets_in, "clean/kept": report.kept,
                              "clean/duplicates": report.duplicates, "clean/set_aside": report.set_aside,
                              "clean/rejected": report.rejected})
    if report.topics_without_history:
        log.warning("topics with no labelled history yet (new categories): %s",
                    ", ".join(report.topics_without_history))
    return rep


def run_split(params: Mapping[str, Any], metrics_path: str | Path = "eval/metrics/split.json") -> dict[str, Any]:
    cfg = sections(params)
    paths = cfg.paths
    rows = list(iter_jsonl(Path(paths.clean) / "tickets.jsonl"))
    clean_report = Path(paths.clean) / "report.json"
    dataset = (json.loads(clean_report.read_text()).get("dataset") if clean_report.is_file() else None) or {
        "name": str(cfg.data.name or "unnamed"), "fingerprint": None}
    splits, heldout, report = split_tickets(
        rows, cfg.split, heldout_path=paths.heldout, seed=cfg.seed, dataset=dataset)
    out = Path(paths.split)
    for name in SPLITS:
        write_jsonl(out / f"{name}.jsonl", splits[name])
    write_json(out / "report.json", report)
    write_json(metrics_path, {f"split/{k}": v["size"] for k, v in report["splits"].items()}
               | {"split/heldout": report["heldout"]["size"]})
    return report


# -- evaluate stage ----------------------------------------------------------------------------
def run_evaluate(params: Mapping[str, Any], *, bundle_dir: str | Path | None = None,
                 out_dir: str | Path | None = None, metrics_path: str | Path = "eval/metrics.json",
                 plots_dir: str | Path = "eval/plots", register: bool = True) -> dict[str, Any]:
    """Evaluate the sweep winner once on the test split and on the dataset's frozen held-out
    set, log it to MLflow and register it as ``ticket-triage``, tagged with its dataset and
    taxonomy, with the dataset's alias ``challenger-<data.name>``."""
    from ticket_triage import tracking
    from ticket_triage.decision.triage import Triage

    cfg = sections(params)
    paths = cfg.paths
    bundle = Path(bundle_dir or Path(paths.train) / "winner")
    out = Path(out_dir or paths.evaluate)
    out.mkdir(parents=True, exist_ok=True)
    triage = Triage.load(bundle)
    target = target_precision(params)
    test_rows = list(iter_jsonl(Path(paths.split) / "test.jsonl"))
    held_rows = list(iter_jsonl(paths.heldout))
    dataset = dataset_of(params)
    held_meta_path = Path(paths.heldout).with_suffix(".json")
    held_meta = json.loads(held_meta_path.read_text()) if held_meta_path.is_file() else {}
    if held_meta.get("dataset") not in (None, dataset["name"]):
        raise DataError(f"the held-out set {paths.heldout} belongs to dataset {held_meta['dataset']!r}, the model to "
                        f"{dataset['name']!r}: rerun the split stage, or set paths.heldout to eval/heldout/<data.name>.jsonl")
    metrics: dict[str, float] = {}
    details = {}
    for prefix, rows in (("test", test_rows), ("heldout", held_rows)):
        if rows:
            flat, det = score_split(triage, rows, prefix, target_precision=target)
            metrics.update(flat)
            details[prefix] = det
            write_plots(det, triage.topics, plots_dir, prefix)
    write_cascade_plot(bundle, plots_dir)  # only when the bundle has a cascade
    review = review_loads(params, triage, {p: d["decisions"] for p, d in details.items()})
    head_metrics = headline(metrics)
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(head_metrics, indent=2, sort_keys=True) + "\n")
    (out / "per_label.json").write_text(json.dumps({p: d["per_label"] for p, d in details.items()}, indent=2))
    result: dict[str, Any] = {"metrics": head_metrics, "bundle": str(bundle), "review_load": review}
    if register:
        tracking.setup(cfg.tracking)
        sweep = json.loads((Path(paths.train) / "sweep.json").read_text()) if (Path(paths.train) / "sweep.json").is_file() else {}
        data_name = str(cfg.data.name or "data")
        family = triage.policy.family
        winner = sweep.get("winner") or triage.model_version
        summary = (f"held-out accuracy {head_metrics.get('heldout/accuracy', float('nan')):.4f}, "
                   f"test accuracy {head_metrics.get('test/accuracy', float('nan')):.4f}, test auto-routed "
                   f"{head_metrics.get('test/coverage', float('nan')):.1%} at precision "
                   f"{head_metrics.get('test/auto_precision', float('nan')):.4f}")
        with tracking.run(tracking.run_name("evaluate", family),
                          tags={"stage": "evaluate", "model_family": family, "winner": winner,
                                "winner_run_id": sweep.get("winner_run_id", "")},
                          description=(f"The sweep winner `{winner}` ({family}) scored once on the `{data_name}` "
                                       f"test split ({len(test_rows):,} tickets) and the frozen held-out set "
                                       f"({len(held_rows):,} tickets): {summary}. Its model is registered as "
                                       f"`ticket-triage` with alias `{tracking.alias_name('challenger', dataset['name'])}`."
                                       )) as run:
            if test_rows:
                tracking.log_dataset(test_rows, Path(paths.split) / "test.jsonl", "test", name=f"{data_name}-test")
            if held_rows:
                tracking.log_dataset(held_rows, paths.heldout, "heldout", name=f"{data_name}-heldout")
            tracking.log_metrics(metrics)
            tracking.log_artifacts(plots_dir, "plots")
            tracking.log_artifacts(out / "per_label.json")
            uri = tracking.log_bundle_model(bundle, [{"subject": "Card not arrived", "body": "I ordered a card two weeks ago and it has not arrived."}])
        version = tracking.register(uri, "challenger", tags={
            "heldout_accuracy": head_metrics.get("heldout/accuracy", float("nan")),
            "heldout_macro_f1": head_metrics.get("heldout/macro_f1", float("nan")),
            "test_accuracy": head_metrics.get("test/accuracy", float("nan")),
            "family": family, "git_sha": tracking.git_sha(), "evaluate_run_id": run.info.run_id,
            "dataset": dataset["name"], "dataset_fingerprint": dataset.get("fingerprint") or "unknown",
            "taxonomy": triage.taxonomy.name, "taxonomy_version": str(triage.taxonomy.version)},
            description=(f"`{winner}` ({family}, {triage.policy.label_level} "
                         f"labels) from sweep run {sweep.get('parent_run_id', '?')}, trained on `{data_name}` at git "
                         f"{tracking.git_sha(short=True)} (data md5 {tracking.data_hash()}); {summary}. "
                         f"Evaluation run {run.info.run_id}."), dataset=dataset["name"])
        result["registered_version"] = version
        result["dataset"] = dataset
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def dataset_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset the split stage worked on (name, source fingerprint), from its report;
    ``data.name`` when there is no report."""
    cfg = sections(params)
    rep = Path(cfg.paths.split) / "report.json"
    ds = (json.loads(rep.read_text()).get("dataset") if rep.is_file() else None) or {}
    return {"name": str(ds.get("name") or cfg.data.name or "unnamed"),
            "fingerprint": ds.get("fingerprint")}


class PromotionRefused(ValueError):
    """The challenger cannot be compared with the champion; nothing was changed."""


# -- promote stage -----------------------------------------------------------------------------
def decide_promotion(challenger: Mapping[str, float], champion: Mapping[str, float] | None,
                     metric: str, tolerance: float) -> tuple[bool, str]:
    """Promote unless the challenger is worse than the champion by more than ``tolerance``."""
    c = float(challenger.get(metric, float("nan")))
    if c != c:
        return False, f"challenger has no {metric}: keep the champion"
    if champion is None:
        return True, "no champion yet: the challenger becomes champion"
    b = float(champion.get(metric, float("nan")))
    if b != b:
        return True, f"champion has no {metric}: promote"
    if c + tolerance >= b:
        return True, f"challenger {metric}={c:.4f} vs champion {b:.4f} (tolerance {tolerance}): promote"
    return False, f"challenger {metric}={c:.4f} is worse than champion {b:.4f} by more than {tolerance}: keep champion"


def run_promote(params: Mapping[str, Any], *, out_path: str | Path | None = None) -> dict[str, Any]:
    """Make the dataset's challenger its champion unless it is worse by more than
    ``promote.tolerance``. The first model of a dataset becomes its champion. Raises
    :class:`PromotionRefused` (and changes nothing) when the two versions disagree on the
    dataset or taxonomy (name, version), unless ``promote.force``."""
    from ticket_triage import tracking

    pc = sections(params)
    cfg = pc.promote
    metric = cfg.metric
    tag = metric.replace("/", "_")
    dataset = dataset_of(params)["name"]
    tracking.setup(pc.tracking)
    chal = tracking.alias_version("challenger", dataset=dataset)
    if chal is None:
        raise LookupError(f"no challenger registered for dataset {dataset!r}: run the evaluate stage first")
    champ = tracking.alias_version("champion", dataset=dataset)
    chal_tags = tracking.version_tags(chal)
    champ_tags = tracking.version_tags(champ) if champ is not None else None
    differ = {k: (champ_tags.get(k), chal_tags.get(k)) for k in tracking.VERSION_TAGS
              if champ_tags is not None and champ_tags.get(k) != chal_tags.get(k)}
    if chal_tags.get("dataset") not in (None, dataset):
        differ["dataset"] = (dataset, chal_tags.get("dataset"))
    if differ and not cfg.force:
        what = "; ".join(f"{k}: champion {a!r}, challenger {b!r}" for k, (a, b) in differ.items())
        raise PromotionRefused(
            f"refusing to compare challenger v{chal.version} with champion v{champ.version if champ else '-'} of "
            f"dataset {dataset!r}: they differ in {what}. Their held-out scores are not comparable, so the champion "
            "alias was not changed. To replace the champion anyway (a new taxonomy version was adopted), rerun "
            "with promote.force=true (`triage config compose ... promote.force=true && dvc repro promote`)")
    to_num = lambda t: {tag: float(t[tag])} if t and tag in t else {}  # noqa: E731
    ok, why = decide_promotion({metric: to_num(chal_tags).get(tag, float("nan"))},
                               {metric: to_num(champ_tags).get(tag, float("nan"))} if champ is not None else None,
                               metric, float(cfg.tolerance))
    chal_v = str(chal.version)
    champ_v = str(champ.version) if champ is not None else None
    if differ:  # promote.force: the user chose to replace a champion of another taxonomy
        ok, why = True, "promote.force: " + ", ".join(differ) + " differ; the challenger replaces the champion"
    if ok and champ_v != chal_v:
        tracking.set_alias(chal_v, "champion", dataset=dataset)
    result = {"promoted": ok, "reason": why, "dataset": dataset, "alias": tracking.alias_name("champion", dataset),
              "challenger_version": chal_v,
              "champion_version": chal_v if ok else champ_v, "previous_champion": champ_v}
    _log_promotion(tracking, result, chal_tags, champ_tags, metric, float(cfg.tolerance))
    out = Path(out_path or Path(pc.paths.promote) / "decision.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    log.info("promote: %s", why)
    return result


COMPARED_TAGS = ("heldout_accuracy", "heldout_macro_f1", "test_accuracy")


def _log_promotion(tracking: Any, result: Mapping[str, Any], chal_tags: Mapping[str, str],
                   champ_tags: Mapping[str, str] | None, metric: str, tolerance: float) -> None:
    """One MLflow run per promotion decision: challenger and champion side by side (metrics
    ``challenger/*`` and ``champion/*``, a comparison table artifact), the decision as tags
    and description; the challenger version gets the decision as its ``promotion`` tag."""
    def num(tags: Mapping[str, str] | None, key: str) -> float:
        try:
            return float((tags or {})[key])
        except (KeyError, TypeError, ValueError):
            return float("nan")

    chal_v, prev = result["challenger_version"], result["previous_champion"]
    rows = [f"| {k} | {num(chal_tags, k):.4f} | " + (f"{num(champ_tags, k):.4f} |" if champ_tags is not None else "- |")
            for k in COMPARED_TAGS]
    table = "\n".join([f"| metric | challenger v{chal_v} | champion " + (f"v{prev}" if prev else "(none)") + " |",
                        "|---|---:|---:|", *rows])
    with tracking.run(tracking.run_name("promote", f"v{chal_v}-vs-" + (f"v{prev}" if prev else "none")),
                      tags={"stage": "promote", "promoted": str(result["promoted"]).lower(),
                            "challenger_version": chal_v, "champion_version": str(result["champion_version"]),
                            "previous_champion": str(prev), "challenger_family": chal_tags.get("family", ""),
                            "champion_family": (champ_tags or {}).get("family", "")},
                      params={"metric": metric, "tolerance": tolerance},
                      description=f"{result['reason']}.\n\n{table}"):
        tracking.log_metrics({f"challenger/{k}": num(chal_tags, k) for k in COMPARED_TAGS}
                             | ({f"champion/{k}": num(champ_tags, k) for k in COMPARED_TAGS} if champ_tags is not None else {}))
        tracking.log_text(table + "\n", "comparison.md")
    tracking.set_version_tag(chal_v, "promotion", result["reason"])


# -- demo summary ------------------------------------------------------------------------------
def _load_json(path: str | Path) -> dict:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else {}


def demo_summary(root: str | Path = ".") -> str:
    root = Path(root)
    ing = _load_json(root / "artifacts/ingest/report.json")
    cln = _load_json(root / "artifacts/clean/report.json")
    spl = _load_json(root / "artifacts/split/report.json")
    trn = _load_json(root / "artifacts/train/sweep.json")
    ev = _load_json(root / "eval/metrics.json")
    pro = _load_json(root / "artifacts/promote/decision.json")
    mon = _load_json(root / "eval/continuous/result.json")
    pkg = _load_json(root / "artifacts/package/bento.json")
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
                     f"{spl.get('heldout', {}).get('size')} frozen in {spl.get('heldout', {}).get('path', 'eval/heldout/')}")
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
