"""`triage score`: decisions for a whole file or folder of tickets, written as Parquet.

Input: a CSV, JSONL or Parquet file, or a folder of them (one format per folder; the format
comes from the extension or ``fmt``). Output: Parquet with one row per input row and the
columns of :data:`ticket_triage.batch.frames.DECISION_COLUMNS`.

Two engines, one decision function (:func:`ticket_triage.batch.frames.decide_chunk`):

* ``local``: this process reads the input in chunks (pyarrow / pandas), decides each chunk and
  appends it to one Parquet file; memory stays bounded by the chunk size; a progress bar (or,
  when stderr is not a terminal, a log line every ~10%) shows tickets/s; with ``--workers N``
  the chunks are decided by N worker processes (:class:`ticket_triage.batch.pool.DecisionPool`)
  and still written in input order;
* ``spark``: :func:`ticket_triage.batch.spark.score_spark` (Spark reads, executors decide with
  one ``Triage`` per Python worker, Spark writes a Parquet folder).
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}


class ScoreError(ValueError):
    """The input or the options cannot be scored (message says what to change)."""


@dataclass
class ScoreReport:
    """What a scoring run did: rows in, decisions per band, output, speed."""

    engine: str
    input: str
    output: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    bands: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    model_version: str | None = None

    @property
    def tickets_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "input": self.input, "output": self.output,
                "files": len(self.files), "rows": self.rows, "bands": self.bands,
                "seconds": round(self.seconds, 3), "tickets_per_s": round(self.tickets_per_s, 1),
                "model_version": self.model_version}


def input_files(path: str | Path, fmt: str | None = None) -> tuple[list[Path], str]:
    """The files to score and their format; a folder gives its files of that format, sorted."""
    p = Path(path)
    if not p.exists():
        raise ScoreError(f"input {p} does not exist; give a CSV, JSONL or Parquet file or a folder")
    if fmt is not None and fmt not in ("csv", "jsonl", "parquet"):
        raise ScoreError(f"--format {fmt!r} is not one of csv, jsonl, parquet")
    if p.is_file():
        f = fmt or FORMATS.get(p.suffix.lower())
        if f is None:
            raise ScoreError(f"cannot tell the format of {p.name} from its extension; pass "
                             "--format csv|jsonl|parquet")
        return [p], f
    files = sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith((".", "_"))
                   and FORMATS.get(x.suffix.lower()) is not None
                   and (fmt is None or FORMATS[x.suffix.lower()] == fmt))
    if not files:
        raise ScoreError(f"folder {p} holds no .csv, .jsonl or .parquet files"
                         + (f" of format {fmt}" if fmt else ""))
    kinds = {FORMATS[x.suffix.lower()] for x in files}
    if len(kinds) > 1:
        raise ScoreError(f"folder {p} mixes formats {sorted(kinds)}; pass --format to pick one")
    return files, kinds.pop()


def count_rows(files: list[Path], fmt: str) -> int | None:
    """Rows in the input (cheap for Parquet and JSONL; None for CSV, whose rows may span lines)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if fmt == "jsonl":
        n = 0
        for f in files:
            with open(f, "rb") as fh:
                n += sum(1 for line in fh if line.strip())
        return n
    return None


def iter_chunks(files: list[Path], fmt: str, chunk_rows: int = 2048) -> Iterator[Any]:
    """pandas frames of at most ``chunk_rows`` input rows (strings kept as strings)."""
    import pandas as pd

    for f in files:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(f).iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
        elif fmt == "csv":
            try:
                reader = pd.read_csv(f, dtype=str, keep_default_na=False, chunksize=chunk_rows,
                                     encoding="utf-8-sig")
                yield from reader
            except pd.errors.EmptyDataError:
                continue
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise ScoreError(f"{f.name} is not a readable CSV ({exc}); run `triage ingest` "
                                 "on it first (it reports bad rows and repairs encodings)") from None
        else:
            try:
                yield from pd.read_json(f, lines=True, dtype=False, chunksize=chunk_rows,
                                        convert_dates=False, encoding="utf-8")
            except ValueError as exc:
                raise ScoreError(f"{f.name} is not valid JSON lines ({exc}); run `triage ingest` "
                                 "on it first (it rejects bad lines with a reason)") from None


class _Progress:
    """tqdm on a terminal; on a log, a line every ~10% (or every 50k rows without a total)."""

    def __init__(self, total: int | None, desc: str):
        self.total, self.n, self.t0, self.next_log = total, 0, time.perf_counter(), 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="ticket", mininterval=0.5)
        self.step = max(1, (total or 500_000) // 10)
        self.desc = desc

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.n >= self.next_log:
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            of = f"/{self.total:,}" if self.total else ""
            print(f"{self.desc}: {self.n:,}{of} tickets ({rate:,.0f}/s)", file=sys.stderr,
                  flush=True)
            self.next_log = self.n + self.step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def score_local(triage: Any, path: str | Path, out: str | Path, *, fmt: str | None = None,
                chunk_rows: int = 2048, progress: bool = True, pool: Any = None) -> ScoreReport:
    """Score in this process, or with ``pool`` (a :class:`~ticket_triage.batch.pool.DecisionPool`)
    on several cores, chunks in input order; writes one Parquet file at ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ticket_triage.batch.frames import decide_chunk

    files, fmt = input_files(path, fmt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    rep = ScoreReport("local" if pool is None else f"local x{pool.workers}", str(path), str(out),
                      [str(f) for f in files], model_version=getattr(triage, "model_version", None))
    bar = _Progress(count_rows(files, fmt) if progress else None, "score") if progress else None
    t0 = time.perf_counter()
    writer = None
    try:
        chunks = iter_chunks(files, fmt, chunk_rows)
        decided = pool.map(chunks) if pool is not None else (decide_chunk(triage, c) for c in chunks)
        for dec in decided:
            table = pa.Table.from_pandas(dec, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rep.rows += len(dec)
            for b, n in dec["band"].value_counts().items():
                rep.bands[str(b)] = rep.bands.get(str(b), 0) + int(n)
            if bar is not None:
                bar.update(len(dec))
        if writer is None:  # no rows at all: still write an empty, typed file
            from ticket_triage.batch.frames import DECISION_COLUMNS

            import pandas as pd

            empty = pd.DataFrame({c: pd.Series(dtype="float64" if c == "confidence" else "object")
                                  for c in DECISION_COLUMNS})
            writer = pq.ParquetWriter(tmp, pa.Table.from_pandas(empty, preserve_index=False).schema)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    tmp.replace(out)
    rep.seconds = time.perf_counter() - t0
    return rep
