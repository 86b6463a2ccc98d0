"""Apache Spark (PySpark) engine: score and evaluate datasets larger than one process.

* :func:`spark_session` builds (or reuses) a session: ``local[2]`` by default, any master URL
  (``spark://host:7077``, ``yarn``, ``k8s://...``) otherwise, or the session ``spark-submit``
  already configured.
* :func:`score_spark`: Spark reads the input (Parquet / JSON lines / CSV), ``mapInPandas`` runs
  :func:`ticket_triage.batch.frames.decide_chunk` on Arrow batches, Spark writes a Parquet
  folder. The model bundle reaches the executors with ``SparkContext.addFile`` (shipped from
  the driver; a bundle on storage every node can read, e.g. ``hdfs://`` or a shared mount, is
  used in place with ``ship_bundle=False``). Each Python worker loads one ``Triage`` on its
  first batch and keeps it for the next tasks (PySpark reuses its Python workers), so a
  bundle is loaded once per executor task slot, not per batch. The LLM fallback is never
  called from Spark (batch scoring stays offline and free).
* :func:`evaluate_spark`: the labelled-set report of :func:`ticket_triage.evaluation.score_split`
  (accuracy, macro F1, per-label P/R/F1, coverage, auto-routed precision, band shares, ECE,
  coverage at the target precision, log loss) over a Parquet dataset; executors decide and
  score, the driver receives per-ticket label codes and confidences only (no texts, no model
  inputs: about 20 bytes per ticket) and calls the same metric functions.

Executors import ``ticket_triage``: in local mode they inherit the driver's environment; on a
cluster install the wheel on the nodes or pass it with ``spark-submit --py-files`` (README,
"When one machine is not enough").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ticket_triage.batch.score import ScoreError, ScoreReport, input_files

_TRIAGE: dict[str, Any] = {}  # per Python worker: bundle path -> Triage
_SHIPPED: dict[str, str] = {}  # per driver: shipped name -> local bundle path


def spark_session(master: str | None = "local[2]", app_name: str = "ticket-triage",
                  conf: dict[str, str] | None = None) -> Any:
    """A SparkSession. ``master=None`` keeps what ``spark-submit`` set. Arrow batches of 2,048
    rows; the web UI off; driver bound to 127.0.0.1 in local mode."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ScoreError("the spark engine needs PySpark: pip install 'ticket-triage[spark]' "
                         "(and a Java 17+ runtime: apt-get install openjdk-17-jre-headless)") \
            from None
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        raise ScoreError("the spark engine needs a Java runtime (17+): apt-get install "
                         "openjdk-17-jre-headless, or set JAVA_HOME")
    b = SparkSession.builder.appName(app_name)
    if master:
        b = b.master(master)
    settings = {"spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
                "spark.ui.enabled": "false",
                "spark.sql.session.timeZone": "UTC",
                "spark.python.worker.reuse": "true"}
    if master and master.startswith("local"):
        settings.update({"spark.driver.host": "127.0.0.1",
                         "spark.driver.bindAddress": "127.0.0.1"})
    settings.update(conf or {})
    for k, v in settings.items():
        b = b.config(k, v)
    return b.getOrCreate()


def _ship(spark: Any, bundle: Path) -> str:
    """addFile the bundle folder; returns the name executors resolve with SparkFiles.get."""
    bundle = bundle.resolve()
    name = bundle.name
    if _SHIPPED.get(name) not in (None, str(bundle)):  # another bundle with that folder name
        name = f"{bundle.name}-{hashlib.sha1(str(bundle).encode()).hexdigest()[:8]}"
        if name not in _SHIPPED:
            tmp = Path(tempfile.mkdtemp(prefix="tt-bundle-")) / name
            shutil.copytree(bundle, tmp)
            spark.sparkContext.addFile(str(tmp), recursive=True)
            _SHIPPED[name] = str(bundle)
        return name
    if name not in _SHIPPED:
        spark.sparkContext.addFile(str(bundle), recursive=True)
        _SHIPPED[name] = str(bundle)
    return name


def _executor_triage(bundle: str, shipped: bool) -> Any:
    """The worker's Triage (loaded on first use, then reused by every task of this worker)."""
    if bundle not in _TRIAGE:
        from ticket_triage.decision.triage import Triage

        path = bundle
        if shipped:
            from pyspark import SparkFiles

            path = SparkFiles.get(bundle)
        _TRIAGE[bundle] = Triage.load(Path(path))
    return _TRIAGE[bundle]


def _bundle_ref(spark: Any, bundle: str | Path, ship: bool) -> tuple[str, bool]:
    if ship:
        if not Path(bundle).is_dir():
            raise ScoreError(f"bundle {bundle} is not a folder on the driver; pass a local bundle "
                             "or a path every node can read with ship_bundle=False")
        return _ship(spark, Path(bundle)), True
    return str(bundle), False


def read_input(spark: Any, path: str | Path, fmt: str | None = None) -> Any:
    """A Spark DataFrame over a CSV / JSON lines / Parquet file or folder."""
    p = str(path)
    if "://" in p:  # remote storage: Spark lists it
        if fmt is None:
            raise ScoreError("pass --format for a remote input path")
        files, kind = [p], fmt
    else:
        found, kind = input_files(path, fmt)
        files = [str(f) for f in found]
    reader = spark.read
    if kind == "parquet":
        return reader.parquet(*files)
    if kind == "csv":
        return (reader.option("header", True).option("multiLine", True).option("escape", '"')
                .option("encoding", "UTF-8").csv(files))
    return reader.json(files)


def _spread(spark: Any, df: Any, partitions: int | None) -> Any:
    """``partitions`` if given; else at least one partition per task slot (a single small
    Parquet file is one partition, which would leave all but one core idle)."""
    if partitions:
        return df.repartition(int(partitions))
    slots = int(spark.sparkContext.defaultParallelism)
    return df.repartition(slots) if df.rdd.getNumPartitions() < slots else df


def _scorer(bundle: str, shipped: bool, batch_size: int) -> Callable[[Iterator[Any]], Iterator[Any]]:
    def run(frames: Iterator[Any]) -> Iterator[Any]:
        from ticket_triage.batch.frames import decide_chunk

        triage = _executor_triage(bundle, shipped)
        for pdf in frames:
            yield decide_chunk(triage, pdf, batch_size)
    return run


def score_spark(spark: Any, bundle: str | Path, path: str | Path, out: str | Path, *,
                fmt: str | None = None, ship_bundle: bool = True, batch_size: int = 256,
                partitions: int | None = None, model_version: str | None = None) -> ScoreReport:
    """Score ``path`` on Spark; writes a Parquet folder at ``out`` (overwritten)."""
    from ticket_triage.batch.frames import BODY_ALIASES, TICKET_FIELDS, spark_schema_ddl

    t0 = time.perf_counter()
    df = read_input(spark, path, fmt)
    keep = [c for c in df.columns if c in TICKET_FIELDS or c in BODY_ALIASES]
    if not any(c in keep for c in ("subject", "text", *BODY_ALIASES)):
        raise ScoreError(f"{path} has no subject, body or text column (columns: "
                         f"{', '.join(df.columns) or 'none'}); rename the body column to 'body'")
    df = _spread(spark, df.select(*keep), partitions)
    ref, shipped = _bundle_ref(spark, bundle, ship_bundle)
    decided = df.mapInPandas(_scorer(ref, shipped, batch_size), schema=spark_schema_ddl())
    decided.write.mode("overwrite").parquet(str(out))
    rep = ScoreReport("spark", str(path), str(out), model_version=model_version)
    counts = spark.read.parquet(str(out)).groupBy("band").count().collect()
    rep.bands = {str(r["band"]): int(r["count"]) for r in counts}
    rep.rows = sum(rep.bands.values())
    rep.seconds = time.perf_counter() - t0
    return rep


# ---- evaluation ----------------------------------------------------------------------------
_EVAL_SCHEMA = ("y_true string, y_pred string, band string, conf double, correct boolean, "
                "conf_raw double, correct_raw boolean, p_true double")


def _eval_rows(triage: Any, pdf: Any) -> Any:
    """Per ticket: gold, decision, and the model's calibrated / raw top confidence."""
    import numpy as np
    import pandas as pd

    texts = [str(x) for x in pdf["text"].tolist()]
    tickets = [{"id": str(i), "subject": "", "body": "", "text": t,
                "language": (lang if isinstance(lang, str) else None)}
               for i, t, lang in zip(pdf["id"] if "id" in pdf else range(len(pdf)), texts,
                                     pdf["language"] if "language" in pdf else [None] * len(pdf))]
    decisions = triage.decide(tickets)
    probs_raw = triage.topic_proba(texts, calibrated=False)
    probs_cal = triage.calibrator.transform(probs_raw)
    topics = list(triage.topics)
    y_true = [str(y) for y in pdf["topic"].tolist()]
    y_idx = np.array([topics.index(y) if y in topics else -1 for y in y_true])
    p_true = np.where(y_idx >= 0, probs_cal[np.arange(len(y_idx)), np.maximum(y_idx, 0)], np.nan)
    return pd.DataFrame({
        "y_true": y_true, "y_pred": [d.topic for d in decisions],
        "band": [d.band for d in decisions],
        "conf": probs_cal.max(axis=1).astype("float64"),
        "correct": probs_cal.argmax(axis=1) == y_idx,
        "conf_raw": probs_raw.max(axis=1).astype("float64"),
        "correct_raw": probs_raw.argmax(axis=1) == y_idx,
        "p_true": p_true.astype("float64")})


def _evaluator(bundle: str, shipped: bool) -> Callable[[Iterator[Any]], Iterator[Any]]:
    def run(frames: Iterator[Any]) -> Iterator[Any]:
        triage = _executor_triage(bundle, shipped)
        for pdf in frames:
            if len(pdf):
                yield _eval_rows(triage, pdf)
    return run


def evaluate_spark(spark: Any, bundle: str | Path, path: str | Path, *, prefix: str = "heldout",
                   target_precision: float = 0.99, ship_bundle: bool = True,
                   partitions: int | None = None) -> dict[str, float]:
    """``score_split``'s flat metrics (``{prefix}/...``) for a labelled Parquet dataset
    (columns ``text`` and ``topic``, optional ``id`` / ``language``), computed on Spark."""
    import numpy as np

    from ticket_triage.metrics import (auto_route_metrics, classification_metrics,
                                       coverage_at_precision, expected_calibration_error)

    t0 = time.perf_counter()
    df = read_input(spark, path, "parquet" if "://" in str(path) else None)
    missing = {"text", "topic"} - set(df.columns)
    if missing:
        raise ScoreError(f"{path} lacks column(s) {sorted(missing)}: evaluation needs the cleaned "
                         "'text' and the gold 'topic' (the split stage's files have both)")
    df = _spread(spark, df.select(*[c for c in ("id", "text", "topic", "language")
                                    if c in df.columns]), partitions)
    ref, shipped = _bundle_ref(spark, bundle, ship_bundle)
    rows = df.mapInPandas(_evaluator(ref, shipped), schema=_EVAL_SCHEMA).cache()
    try:
        groups = rows.groupBy("y_true", "y_pred", "band").count().collect()
        conf = rows.select("conf", "correct", "conf_raw", "correct_raw", "p_true").toPandas()
        topics = list(_executor_triage(ref, shipped).topics) if not shipped else None
    finally:
        rows.unpersist()
    n = int(sum(r["count"] for r in groups))
    if n == 0:
        raise ScoreError(f"no labelled tickets to score in {path}")
    if topics is None:
        from ticket_triage.decision.triage import Triage

        topics = list(Triage.load(Path(bundle)).topics)
    # Order-free metrics from the counts: the same functions score_split calls.
    y_true = np.repeat(np.array([r["y_true"] for r in groups], dtype=object),
                       [r["count"] for r in groups])
    y_pred = np.repeat(np.array([r["y_pred"] for r in groups], dtype=object),
                       [r["count"] for r in groups])
    bands = np.repeat(np.array([r["band"] for r in groups], dtype=object),
                      [r["count"] for r in groups])
    cls = classification_metrics(list(y_true), list(y_pred),
                                 labels=sorted(set(topics) | set(y_true.tolist())))
    ar = auto_route_metrics(list(bands), list(y_true), list(y_pred))
    c, ok = conf["conf"].to_numpy(), conf["correct"].to_numpy(dtype=bool)
    m: dict[str, float] = {
        "accuracy": cls["accuracy"], "macro_f1": cls["macro_f1"],
        "model_accuracy": float(ok.mean()),
        "ece": expected_calibration_error(c, ok),
        "ece_uncalibrated": expected_calibration_error(conf["conf_raw"].to_numpy(),
                                                       conf["correct_raw"].to_numpy(dtype=bool)),
        "coverage": ar["coverage"], "auto_precision": ar["auto_precision"],
        "draft_share": ar["draft_share"], "review_share": ar["review_share"],
        "coverage_at_target_precision": coverage_at_precision(c, ok, target_precision),
        "latency_ms_per_ticket": 1000 * (time.perf_counter() - t0) / n,
        "n": float(n),
    }
    p_true = conf["p_true"].to_numpy()
    if not np.isnan(p_true).any():
        from ticket_triage.metrics import log_loss

        m["log_loss"] = _log_loss_from_p(p_true, log_loss)
    for lab, d in cls["per_label"].items():
        for k in ("precision", "recall", "f1"):
            m[f"{lab}/{k}"] = d[k]
    return {f"{prefix}/{k}": float(v) for k, v in m.items() if v is not None}


def _log_loss_from_p(p_true: Any, log_loss: Callable[..., float]) -> float:
    """metrics.log_loss on the probabilities of the true class (a 2-column [1-p, p] matrix
    with every label 1 gives -mean(log p) with the same clipping)."""
    import numpy as np

    probs = np.stack([1.0 - p_true, p_true], axis=1)
    return float(log_loss(probs, np.ones(len(p_true), dtype=int), labels=[0, 1]))
