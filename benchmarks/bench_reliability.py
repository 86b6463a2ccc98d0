"""Reliability load test: 32 clients for 60 s against a fresh ``bentoml serve``, mixed traffic.

    flock /tmp/tt-bench.lock python benchmarks/bench_reliability.py [--bundle DIR] [--runs 3]
        [--clients 32] [--duration 60] [--out benchmarks/results/reliability.json]

Each run starts its own server on a free loopback port (API key set, so the guard is on the
path; LLM off; a temporary SQLite review queue with no per-client quota) and holds ``--clients``
closed-loop clients for ``--duration`` seconds. Every client picks, per request:

* 70% ``/classify`` with a BANKING77 ticket the server has not seen in this run,
* 10% ``/classify_batch`` of 10 such tickets,
* 10% a French ticket with a unique id (band ``review``: it is queued for review),
* 10% a bad input from the HTTP corpus (``tests/fixtures/bad_inputs/http_cases.py``) that must
  get its documented 4xx.

An **error** is any answer other than the expected one (5xx, a wrong status, a timeout, a dropped
connection). After the run the review queue is read: every acknowledged review ticket must be
there exactly once. Reports p50 / p99 of the good requests per kind, requests/s, errors, and the
queue check; the medians over ``--runs`` fresh servers go to ``--out``.

Without ``--bundle`` a TF-IDF bundle is trained on 3,000 BANKING77 training tickets (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SHARED = ROOT.parent / "shared" / "datasets"
API_KEY = "bench-reliability-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))], 1)


def build_bundle(out: Path, params: dict) -> Path:
    from ticket_triage.data import clean_tickets
    from ticket_triage.decision.bundle import build_bundle as build
    from ticket_triage.ingest.readers import read_tickets
    from ticket_triage.models import build_classifier
    from ticket_triage.taxonomy import parse_taxonomy

    print("training a TF-IDF bundle on 3,000 BANKING77 training tickets ...", flush=True)
    tickets, _, _ = read_tickets(SHARED / "banking77" / "train.csv", "csv", {"body": "text", "topic": "category"})
    random.Random(0).shuffle(tickets)
    p = copy.deepcopy(params)
    p["thresholds"]["tune"] = False
    rows, _, _, _ = clean_tickets(tickets[:3000], parse_taxonomy(p["taxonomy"]), p["clean"])
    hp = {k: v for k, v in p["model"].items() if k != "family"}
    clf = build_classifier("tfidf_logreg", **hp)
    clf.fit([r["text"] for r in rows], [r["topic"] for r in rows], progress=False)
    return build(clf, rows[:2400], rows[2400:], p, out, model_version="bench-reliability")


def start_server(bundle: Path, params: dict, tmp: Path) -> tuple[subprocess.Popen, str, Path]:
    from ticket_triage.config import write_params

    p = copy.deepcopy(params)
    db = tmp / "review.sqlite"
    p["review"].update({"db_url": f"sqlite:///{db}", "audit_share": 0.0, "enqueue_from_api": True,
                        "max_items_per_client_per_minute": 0})
    write_params(p, tmp / "params.yaml")
    env = {**os.environ, "TRIAGE_BUNDLE": str(bundle), "TRIAGE_LLM_ENABLED": "false",
           "TRIAGE_PARAMS": str(tmp / "params.yaml"), "TRIAGE_API_KEYS": API_KEY,
           "BENTOML_HOME": str(tmp / "bentoml"), "HF_HUB_OFFLINE": "1", "BENTOML_DO_NOT_TRACK": "True",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("TRIAGE_REVIEW_DB_URL", None)
    port = free_port()
    log = (tmp / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", "serving.service:TicketTriage",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{(tmp / 'serve.log').read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 240:
            raise SystemExit("server not ready after 240 s")
        time.sleep(0.5)
    print(f"server ready in {time.monotonic() - t0:.1f} s", flush=True)
    return proc, url, db


def stop_server(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def soak(url: str, clients: int, duration: float, texts: list[str], run: int) -> dict:
    from fixtures.bad_inputs.http_cases import HTTP

    bad = [c for c in HTTP if 400 <= c[4] < 500 and c[4] != 413 and len(c[0]) < 60]
    lat: dict[str, list[float]] = {"classify": [], "batch": [], "review": [], "bad": []}
    errors: dict[str, int] = {}
    acked: list[str] = []
    counter = {"n": 0}
    stop_at = time.perf_counter() + duration

    def text() -> str:
        counter["n"] += 1
        return f"{texts[counter['n'] % len(texts)]} (r{run} n{counter['n']})"

    async def worker(wid: int) -> None:
        rnd = random.Random(wid * 1000 + run)
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"authorization": f"Bearer {API_KEY}"}) as c:
            i = 0
            while time.perf_counter() < stop_at:
                i += 1
                x = rnd.random()
                t0 = time.perf_counter()
                try:
                    if x < 0.7:
                        kind, expect = "classify", 200
                        r = await c.post("/classify", json={"body": text()})
                    elif x < 0.8:
                        kind, expect = "batch", 200
                        r = await c.post("/classify_batch", json={"tickets": [{"body": text()} for _ in range(10)]})
                    elif x < 0.9:
                        kind, expect = "review", 200
                        tid = f"rel-{run}-{wid}-{i}"
                        r = await c.post("/classify", json={"id": tid, "language": "fr", "subject": "Virement",
                                                            "body": f"Mon virement {tid} est bloqué."})
                    else:
                        kind = "bad"
                        case = bad[rnd.randrange(len(bad))]
                        _, path, body, headers, expect, _ = case
                        content = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
                        r = (await c.get(path)) if content is None else await c.post(path, content=content, headers=headers)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if r.status_code != expect:
                    key = f"{kind}:http_{r.status_code}"
                    errors[key] = errors.get(key, 0) + 1
                    continue
                lat[kind].append((time.perf_counter() - t0) * 1000)
                if kind == "review":
                    if r.json()["band"] != "review":
                        errors["review:not_review_band"] = errors.get("review:not_review_band", 0) + 1
                    else:
                        acked.append(tid)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(clients)))
    wall = time.perf_counter() - t0
    n = sum(len(v) for v in lat.values()) + sum(errors.values())
    return {"requests": n, "requests_per_s": round(n / wall, 1), "errors": sum(errors.values()),
            "errors_by_kind": errors, "acked_review": acked,
            **{f"{k}_p50_ms": pct(v, 50) for k, v in lat.items()},
            **{f"{k}_p99_ms": pct(v, 99) for k, v in lat.items()},
            "all_good_p50_ms": pct([x for v in lat.values() for x in v], 50),
            "all_good_p99_ms": pct([x for v in lat.values() for x in v], 99)}


def queued_ids(db: Path) -> dict[str, int]:
    import sqlalchemy as sa

    from ticket_triage.storage import review_items

    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(review_items.c.ticket_id)).all()
    finally:
        engine.dispose()
    out: dict[str, int] = {}
    for (t,) in rows:
        out[t] = out.get(t, 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None, help="model bundle (default: train a TF-IDF one)")
    ap.add_argument("--runs", type=int, default=3, help="fresh servers; medians are reported")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from ticket_triage.config import compose

    params = compose(["model=tfidf_logreg", "sweep=single"], root=ROOT)
    with open(SHARED / "banking77" / "test.csv", newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    with tempfile.TemporaryDirectory(prefix="bench-rel-") as tmpd:
        tmp = Path(tmpd)
        bundle = args.bundle or build_bundle(tmp / "bundle", params)
        runs = []
        for run in range(args.runs):
            rt = tmp / f"run{run}"
            rt.mkdir()
            proc, url, db = start_server(bundle, params, rt)
            try:
                res = asyncio.run(soak(url, args.clients, args.duration, texts, run))
            finally:
                stop_server(proc)
            q = queued_ids(db)
            acked = res.pop("acked_review")
            res["review_acked"] = len(acked)
            res["review_lost"] = len(set(acked) - set(q))
            res["review_duplicated"] = sum(1 for n in q.values() if n > 1)
            print(json.dumps(res), flush=True)
            runs.append(res)
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float))]
    summary = {
        "command": "flock /tmp/tt-bench.lock python benchmarks/bench_reliability.py " + " ".join(sys.argv[1:]),
        "data": "BANKING77 test texts (unseen per run), French review tickets, HTTP bad-input corpus",
        "bundle": str(args.bundle) if args.bundle else "TF-IDF on 3,000 BANKING77 training tickets",
        "clients": args.clients, "duration_s": args.duration, "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in keys},
        "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
                    "note": "shared with other engineers' test runs"},
    }
    try:
        summary["machine"]["cpu"] = next(line.split(":", 1)[1].strip() for line in
                                         open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(json.dumps(summary["median"], indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
