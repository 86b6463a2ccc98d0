"""The keep-alive race behind the rare client-side ReadError: reuse connections right at 5 s idle.

``--clients`` connections (one httpx client each, its pool keeping connections 10 s) each send a
request to ``/classify``, idle 4.98-5.02 s, and send again, ``--rounds`` times, against a running
server. With uvicorn's default ``--timeout-keep-alive`` (5 s) the server closes connections just
as they are reused and some requests fail; with ``--timeout-keep-alive 75`` (``make serve``)
none do. Use the floor service, so that nothing but the connection handling is measured:

    cd benchmarks && ../.venv/bin/bentoml serve floor_service:TicketTriageFloor --port 3998 [--timeout-keep-alive 75] &
    .venv/bin/python benchmarks/bench_keepalive.py --url http://127.0.0.1:3998
"""

from __future__ import annotations

import argparse
import asyncio
import random

import httpx


async def _client(url: str, k: int, rounds: int) -> tuple[int, int]:
    ok = errors = 0
    limits = httpx.Limits(max_connections=1, keepalive_expiry=10.0)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as c:
        for _ in range(rounds):
            try:
                r = await c.post("/classify", json={"subject": "", "body": f"my card {k} was declined"})
                ok += r.status_code == 200
            except httpx.HTTPError:
                errors += 1
            await asyncio.sleep(random.uniform(4.98, 5.02))
    return ok, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:3998")
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)

    async def run() -> list[tuple[int, int]]:
        return await asyncio.gather(*(_client(args.url, k, args.rounds) for k in range(args.clients)))

    res = asyncio.run(run())
    ok, errors = sum(r[0] for r in res), sum(r[1] for r in res)
    print(f"{ok} answered, {errors} failed of {ok + errors} requests (connections reused at ~5 s idle)")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
