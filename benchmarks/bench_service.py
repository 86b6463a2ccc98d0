"""Load-test a running triage service on loopback.

    bentoml serve serving.service:TicketTriage --host 127.0.0.1 --port 3000 &
    python benchmarks/bench_service.py --url http://127.0.0.1:3000 [--duration 60] [--out bench.json]
    # or let it start a fresh server per run (median of --runs), see --serve:
    python benchmarks/bench_service.py --serve artifacts/bench/banking77_ensemble_cascade --runs 3
    # the same protocol against the floor: the same HTTP surface answering a canned decision
    # (benchmarks/floor_service.py), what BentoML + middlewares + pydantic + this load generator cost
    python benchmarks/bench_service.py --serve-floor --runs 3
    # two service processes, one encoder thread each (the environment reaches the server;
    # recorded as server_env in the results):
    TRIAGE_SERVICE_WORKERS=2 TRIAGE_TORCH_THREADS=1 python benchmarks/bench_service.py --serve DIR --runs 3

With ``--serve BUNDLE`` the script starts ``bentoml serve`` itself for every run, on a free
loopback port, with ``TRIAGE_BUNDLE=BUNDLE`` and a copy of params.yaml whose review queue is a
throw-away SQLite file and whose per-client review quota is lifted (a load generator is one
client: with the default 120 review items a minute it measures 429s, not the service), and
stops it afterwards; it reports each run and the median of the runs.

Measures single-ticket latency (p50/p99) at 1, 8 and 32 concurrent clients, batch throughput
(tickets/s through /classify_batch), the resident memory of the server process tree (psutil:
the process listening on the port plus its children) and the errors seen during a bounded
run at 32 clients. Refuses any URL that is not loopback. Tickets come from a CSV with
subject/body (or text) columns: by default BANKING77's test and train sets (13k distinct
texts). Every request carries a ticket text the server has not seen in this run (after a
full pass over the corpus a "(ref N)" suffix keeps them distinct), so the service's
embedding cache never answers for the encoder: the figures are those of new traffic.
The server keeps that cache between runs, so start a fresh server for every run; the script
reads the cache size from /info/ready and warns (and records ``server_cache_entries_at_start``)
when the server has already embedded tickets.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import ipaddress
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_TICKETS = [SHARED / "banking77" / "test.csv", SHARED / "banking77" / "train.csv"]
FALLBACK_TICKETS = ROOT / "tests" / "fixtures" / "tickets_small.csv"


class Corpus:
    """Hands out tickets never repeated within one run (see the module docstring)."""

    def __init__(self, rows: list[dict[str, str]]):
        self.rows = rows
        self.i = 0

    def __len__(self) -> int:
        return len(self.rows)

    def next(self) -> dict[str, str]:
        r = dict(self.rows[self.i % len(self.rows)])
        wrap = self.i // len(self.rows)
        self.i += 1
        if wrap:
            r["body"] = f"{r['body']} (ref {wrap})"
        return r


def load_tickets(paths: "Path | list[Path]") -> Corpus:
    rows, seen = [], set()
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                t = {"subject": r.get("subject") or "", "body": r.get("body") or r.get("text") or ""}
                key = (t["subject"], t["body"])
                if (t["subject"] + t["body"]).strip() and key not in seen:
                    seen.add(key)
                    rows.append(t)
    if not rows:
        raise SystemExit(f"{paths}: no rows with a subject, body or text column")
    return Corpus(rows)


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"{url}: this benchmark only runs against loopback (127.0.0.1 / ::1 / localhost)")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


async def single_run(client: httpx.AsyncClient, tickets: Corpus, concurrency: int,
                     requests: int | None, duration: float | None) -> dict[str, float]:
    """``concurrency`` clients each sending /classify until ``requests`` or ``duration``."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    stages: dict[str, int] = {}  # which stage of a cascade decided (explanation.stage)
    sent = 0
    stop_at = time.perf_counter() + duration if duration else None

    async def worker(wid: int) -> None:
        nonlocal sent
        while True:
            if requests is not None and sent >= requests:
                return
            if stop_at is not None and time.perf_counter() >= stop_at:
                return
            sent += 1
            t = tickets.next()
            t0 = time.perf_counter()
            try:
                r = await client.post("/classify", json=t)
                if r.status_code != 200:
                    errors[f"http_{r.status_code}"] = errors.get(f"http_{r.status_code}", 0) + 1
                    continue
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            lat.append((time.perf_counter() - t0) * 1000)
            # which stage decided, without parsing the JSON (the load generator shares the CPUs)
            body = r.content
            stage = ("cheap" if b'"stage":"cheap"' in body else "full" if b'"stage":"full"' in body
                     else "no cascade")
            stages[stage] = stages.get(stage, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": sent, "ok": len(lat),
            "errors": sum(errors.values()), "error_kinds": errors,
            "p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
            "mean_ms": round(statistics.fmean(lat), 2) if lat else float("nan"),
            "rps": round(len(lat) / wall, 1) if wall else 0.0, "seconds": round(wall, 2),
            "stages": stages}


async def batch_run(client: httpx.AsyncClient, tickets: Corpus, batch: int,
                    rounds: int) -> dict[str, float]:
    await client.post("/classify_batch", json={"tickets": [tickets.next() for _ in range(batch)]})  # warm-up
    times = []
    errors = 0
    for _ in range(rounds):
        payload = {"tickets": [tickets.next() for _ in range(batch)]}
        t0 = time.perf_counter()
        r = await client.post("/classify_batch", json=payload)
        times.append(time.perf_counter() - t0)
        if r.status_code != 200:
            errors += 1
    total = sum(times)
    return {"batch": batch, "rounds": rounds, "errors": errors,
            "tickets_per_s": round(batch * rounds / total, 1) if total else 0.0,
            "p50_ms_per_batch": round(pct([t * 1000 for t in times], 50), 1)}


def server_rss_mb(port: int, pid: int | None) -> float | None:
    """RSS of the server process (by pid, or the one listening on ``port``) and its children."""
    try:
        import psutil
    except ImportError:
        return None
    proc = None
    if pid:
        proc = psutil.Process(pid)
    else:
        for p in psutil.process_iter(["pid"]):
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                       for c in p.net_connections(kind="tcp")):
                    proc = p
                    break
            except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
    if proc is None:
        return None
    # the listener may be a worker: walk up to the `bentoml serve` parent, then sum the tree
    try:
        parent = proc.parent()
        while parent is not None and "bentoml" in " ".join(parent.cmdline()):
            proc, parent = parent, parent.parent()
        procs = [proc, *proc.children(recursive=True)]
        return round(sum(p.memory_info().rss for p in procs) / 2**20, 1)
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return None


async def main_async(args: argparse.Namespace) -> dict:
    tickets = load_tickets(args.tickets or ([p for p in DEFAULT_TICKETS if p.is_file()] or [FALLBACK_TICKETS]))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        r = await client.get("/readyz")
        if r.status_code != 200:
            raise SystemExit(f"{args.url}/readyz answered {r.status_code}: start the service first")
        info = (await client.get("/info/ready")).json()
        cached = int(info.get("embedding_cache_entries") or 0)
        if cached:
            print(f"warning: the server has already cached {cached} ticket embeddings; a previous run's "
                  "texts will be cache hits: restart the server for figures of new traffic", file=sys.stderr)
        await single_run(client, tickets, 1, requests=10, duration=None)  # warm-up
        out: dict = {"url": args.url, "model_version": info.get("model_version"), "corpus_texts": len(tickets),
                     "llm": (info.get("llm") or {}).get("enabled"), "server_cache_entries_at_start": cached,
                "single": []}
        for c in (1, 8, 32):
            res = await single_run(client, tickets, c, requests=args.requests * max(1, c // 4), duration=None)
            out["single"].append(res)
            print(f"single c={c:<3} p50 {res['p50_ms']:>8.1f} ms  p99 {res['p99_ms']:>8.1f} ms  "
                  f"{res['rps']:>7.1f} req/s  errors {res['errors']}", flush=True)
        out["batch"] = []
        for b in (100, 1000):
            res = await batch_run(client, tickets, b, rounds=args.batch_rounds)
            out["batch"].append(res)
            print(f"batch {b:<5} {res['tickets_per_s']:>9.1f} tickets/s  "
                  f"p50 {res['p50_ms_per_batch']} ms/batch  errors {res['errors']}", flush=True)
        port = urlsplit(args.url).port or 80
        out["rss_mb_before_soak"] = server_rss_mb(port, args.pid)
        # the soak opens its own connections: a pooled keep-alive connection that idled past the
        # server's keep-alive timeout during the batch phase would fail its next POST (a client artefact)
        async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as fresh:
            soak = await single_run(fresh, tickets, 32, requests=None, duration=args.duration)
        out["soak_32"] = soak
        out["rss_mb_after_soak"] = server_rss_mb(port, args.pid)
        out["distinct_tickets_sent"] = tickets.i
        print(f"soak  c=32 {soak['seconds']}s: {soak['ok']} ok, {soak['errors']} errors "
              f"{soak['error_kinds'] or ''}, p99 {soak['p99_ms']} ms; server RSS "
              f"{out['rss_mb_before_soak']} -> {out['rss_mb_after_soak']} MiB", flush=True)
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: Path | None, workdir: Path, ready_timeout: float = 300.0) -> tuple[subprocess.Popen, str]:
    """``bentoml serve`` of ``bundle`` on a free loopback port with benchmark params (see the
    module docstring); returns (process, url) once /readyz answers 200. ``bundle`` None: the
    floor service (benchmarks/floor_service.py: the same HTTP surface, a canned decision)."""
    import yaml

    from ticket_triage.service.packaging import SERVE_OPTIONS

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    review = params.setdefault("review", {})
    review["db_url"] = f"sqlite:///{workdir / 'review.sqlite'}"
    review["max_items_per_client_per_minute"] = 10**9
    (workdir / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    port = _free_port()
    env = {**os.environ, "TRIAGE_PARAMS": str(workdir / "params.yaml"), "HF_HUB_OFFLINE": "1"}
    if bundle is not None:
        env["TRIAGE_BUNDLE"] = str(Path(bundle).resolve())
    target, cwd = (("service:TicketTriage", ROOT / "serving") if bundle is not None
                   else ("floor_service:TicketTriageFloor", ROOT / "benchmarks"))
    env.pop("TRIAGE_REVIEW_DB_URL", None)
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "bentoml"), "serve", target,
                             "--host", "127.0.0.1", "--port", str(port), *SERVE_OPTIONS],  # as make serve
                            cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (workdir / "serve.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"bentoml serve exited with {proc.returncode} before it was ready:\n{tail}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise SystemExit(f"bentoml serve was not ready after {ready_timeout:.0f} s; see {workdir / 'serve.log'}")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def summarise(runs: list[dict]) -> dict:
    """Median over runs of each figure (single-ticket levels, batches, soak)."""
    med = statistics.median
    out: dict = {"runs": len(runs), "single": [], "batch": []}
    for i, level in enumerate(runs[0]["single"]):
        rs = [r["single"][i] for r in runs]
        out["single"].append({"concurrency": level["concurrency"],
                              **{k: round(med([x[k] for x in rs]), 2) for k in ("p50_ms", "p99_ms", "rps")},
                              "errors": sum(x["errors"] for x in rs)})
    for i, level in enumerate(runs[0]["batch"]):
        rs = [r["batch"][i] for r in runs]
        out["batch"].append({"batch": level["batch"], "tickets_per_s": round(med([x["tickets_per_s"] for x in rs]), 1),
                             "errors": sum(x["errors"] for x in rs)})
    out["soak_32"] = {"ok": med([r["soak_32"]["ok"] for r in runs]), "errors": sum(r["soak_32"]["errors"] for r in runs),
                      "p99_ms": med([r["soak_32"]["p99_ms"] for r in runs])}
    out["rss_mb_after_soak"] = med([r["rss_mb_after_soak"] or 0 for r in runs])
    stages: dict[str, int] = {}
    for r in runs:
        for level in r["single"]:
            for k, v in (level.get("stages") or {}).items():
                stages[k] = stages.get(k, 0) + v
    total = sum(stages.values()) or 1
    out["stage_share"] = {k: round(v / total, 4) for k, v in sorted(stages.items())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Load-test a running triage service (loopback only).")
    ap.add_argument("--url", default="http://127.0.0.1:3000")
    ap.add_argument("--tickets", nargs="+", type=Path, default=None,
                    help="CSV file(s) with subject/body or text columns (default: BANKING77 test + train "
                         "from ../shared/datasets, else the test fixture)")
    ap.add_argument("--requests", type=int, default=200, help="requests per client level (x c/4 above 4)")
    ap.add_argument("--batch-rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the 32-client soak run")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request client timeout (s)")
    ap.add_argument("--pid", type=int, default=None, help="server pid (default: found by port)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--serve", type=Path, default=None, metavar="BUNDLE",
                    help="start a fresh `bentoml serve` of this bundle for every run (benchmark params: "
                         "throw-away review queue, no per-client review quota) instead of using --url")
    ap.add_argument("--serve-floor", action="store_true",
                    help="like --serve, but of benchmarks/floor_service.py: the service's HTTP surface "
                         "(BentoML, middlewares, pydantic models) answering a canned decision, the latency "
                         "floor no decision code can go under on this machine")
    ap.add_argument("--runs", type=int, default=1, help="with --serve: runs, each on a fresh server; median reported")
    args = ap.parse_args(argv)
    if args.serve is not None and args.serve_floor:
        ap.error("--serve and --serve-floor exclude each other: run them one after the other")
    if args.serve is None and not args.serve_floor:
        check_loopback(args.url)
        out = asyncio.run(main_async(args))
    else:
        if args.serve is not None and not (args.serve / "policy.json").is_file():
            raise SystemExit(f"{args.serve}: not a bundle (no policy.json); train one first, e.g. "
                             "benchmarks/bench_policy.py --bundle-out DIR")
        runs = []
        for k in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
                proc, args.url = start_server(args.serve, Path(tmp))
                print(f"run {k + 1}/{args.runs}: fresh server {args.url} (pid {proc.pid})", flush=True)
                try:
                    args.pid = proc.pid
                    runs.append(asyncio.run(main_async(args)))
                finally:
                    stop_server(proc)
        out = {"bundle": str(args.serve) if args.serve is not None else "floor (benchmarks/floor_service.py)",
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
               f"{platform.python_implementation()} {platform.python_version()}",
               "server_env": {k: os.environ.get(k) for k in ("TRIAGE_SERVICE_WORKERS", "TRIAGE_TORCH_THREADS",
                                                             "TRIAGE_BLAS_THREADS")},
               "median": summarise(runs), "per_run": runs}
        print("median of", len(runs), "runs:", json.dumps(out["median"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    soak_errors = out["median"]["soak_32"]["errors"] if "median" in out else out["soak_32"]["errors"]
    return 1 if soak_errors else 0


if __name__ == "__main__":
    sys.exit(main())
