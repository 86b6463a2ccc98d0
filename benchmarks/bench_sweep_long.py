"""The default ``fast`` sweep, end to end, on 20,000 long tickets: wall time and peak RSS per stage.

Data: ``make_long_tickets.py`` (real GitHub issues and helpdesk e-mails grown to real length:
mean ~2,450 characters, English + German, dated 2016-2023, 13 topics). A scratch project is made
under ``--workdir`` (a copy of ``conf/`` and ``pipelines/``, a data config and the generated
taxonomy, ``rules=generic``, the default ``sweep=fast``), and the stages ``ingest``, ``clean``,
``split`` and ``train`` run there one after the other as the DVC stages would (``python
pipelines/<stage>.py``), each under ``/usr/bin/time -v`` (peak RSS of the stage). Output of the
stages streams to ``<workdir>/sweep.log``; this script prints a line per stage.

The target (issue 13): the whole thing in <= 30 minutes on 2 cores. Run it alone, under the
shared lock, bounded:

    flock /tmp/tt-bench.lock timeout 2400 python benchmarks/bench_sweep_long.py

Writes benchmarks/results/sweep_long.json (also when a stage fails or time runs out: what was
reached is recorded, stage by stage).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "clean", "split", "train")


def _setup(workdir: Path, n: int, seed: int, overrides: list[str]) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from make_long_tickets import generate, taxonomy_yaml

    import csv

    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "data").mkdir(parents=True)
    shutil.copytree(ROOT / "conf", workdir / "conf")
    shutil.copytree(ROOT / "pipelines", workdir / "pipelines")
    # a snapshot of the library: edits to the checkout while this runs do not leak into it
    shutil.copytree(ROOT / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__"))
    rows = generate(n, seed)
    csv_path = workdir / "data" / "long_tickets.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (workdir / "conf" / "taxonomy" / "long_tickets.yaml").write_text(taxonomy_yaml(rows), encoding="utf-8")
    (workdir / "conf" / "data" / "long_tickets.yaml").write_text(
        "# 20k long tickets made by benchmarks/make_long_tickets.py\nname: long_tickets\nformat: csv\n"
        f"path: {csv_path}\nlanguage: en\nmapping:\n  created_at: created_at\n  subject: subject\n"
        "  body: body\n  tags: [tag]\n  language: language\n  channel: source\n", encoding="utf-8")
    from ticket_triage.config import compose, write_params

    params = compose(["data=long_tickets", "taxonomy=long_tickets", "rules=generic", *overrides], root=workdir)
    write_params(params, workdir / "params.yaml")
    lens = [len(r["subject"]) + len(r["body"]) for r in rows]
    return {"tickets": len(rows), "mean_chars": sum(lens) / len(lens),
            "languages": {k: sum(r["language"] == k for r in rows) for k in sorted({r["language"] for r in rows})},
            "topics": len({r["label"] for r in rows}),
            "dates": [min(r["created_at"] for r in rows), max(r["created_at"] for r in rows)]}


def _run_stage(stage: str, workdir: Path, log, env: dict, deadline: float) -> dict:
    left = deadline - time.monotonic()
    if left <= 0:
        return {"stage": stage, "status": "not started (time budget spent)"}
    cmd = ["/usr/bin/time", "-v", "timeout", str(int(left)), sys.executable, f"pipelines/{stage}.py"]
    log.write(f"\n===== {stage}: {' '.join(cmd)}\n")
    log.flush()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    err = proc.stderr
    log.write(err)
    log.flush()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    user = re.search(r"User time \(seconds\): ([\d.]+)", err)
    sys_t = re.search(r"System time \(seconds\): ([\d.]+)", err)
    status = "ok" if proc.returncode == 0 else ("timed out" if proc.returncode == 124 else f"exit {proc.returncode}")
    return {"stage": stage, "status": status, "wall_s": round(wall, 1),
            "cpu_s": round(float(user.group(1)) + float(sys_t.group(1)), 1) if user and sys_t else None,
            "peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="tickets to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="/tmp/tt-long-sweep", help="scratch project (removed and recreated)")
    ap.add_argument("--budget-s", type=int, default=2100, help="stop starting/continuing stages after this")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sweep_long.json"))
    ap.add_argument("overrides", nargs="*", help="extra config overrides (e.g. sweep=single)")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    started = time.monotonic()
    deadline = started + args.budget_s
    env = {**os.environ, "PYTHONPATH": f"{workdir / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns.db'}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg"}
    cpu = subprocess.run(["bash", "-c", "lscpu | grep 'Model name' | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    res: dict = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                 "machine": {"nproc": os.cpu_count(), "cpu": cpu,
                             "note": "shared with other engineers' test and benchmark runs"},
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "stages": []}
    t0 = time.monotonic()
    res["data"] = _setup(workdir, args.n, args.seed, args.overrides)
    res["setup_s"] = round(time.monotonic() - t0, 1)
    print(f"generated {res['data']['tickets']:,} tickets (mean {res['data']['mean_chars']:,.0f} chars) "
          f"in {res['setup_s']} s; stage output: {workdir / 'sweep.log'}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (workdir / "sweep.log").open("w", encoding="utf-8") as log:
        for stage in STAGES:
            r = _run_stage(stage, workdir, log, env, deadline)
            res["stages"].append(r)
            print(f"{stage:>7}: {r['status']}, {r.get('wall_s', '-')} s wall, {r.get('cpu_s', '-')} CPU-s, "
                  f"peak RSS {r.get('peak_rss_mb', '-')} MB", flush=True)
            res["total_s"] = round(time.monotonic() - started, 1)
            out.write_text(json.dumps(res, indent=2))
            if r["status"] != "ok":
                break
    metrics = workdir / "artifacts" / "metrics" / "train.json"
    if metrics.is_file():
        res["train_metrics"] = json.loads(metrics.read_text())
    res["total_s"] = round(time.monotonic() - started, 1)
    res["peak_rss_mb"] = max((r.get("peak_rss_mb") or 0) for r in res["stages"])
    res["finished"] = all(r["status"] == "ok" for r in res["stages"]) and len(res["stages"]) == len(STAGES)
    out.write_text(json.dumps(res, indent=2))
    print(f"total {res['total_s']} s ({res['total_s'] / 60:.1f} min), peak RSS {res['peak_rss_mb']} MB, "
          f"finished: {res['finished']}; wrote {out}", flush=True)
    return 0 if res["finished"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
