"""Two service replicas (two real `bentoml serve` processes, as behind a load balancer) share one
review queue on PostgreSQL: 16 concurrent /classify_batch calls spread over both replicas, each
carrying the same review-band ticket id, queue it once; a second ticket under that id with other
content is queued too; reviewers on either replica's page never get the same item. The second
replica runs two worker processes (TRIAGE_SERVICE_WORKERS=2), so three processes share the queue."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import stop_process_group

from ticket_triage.config import write_params

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240
# The fixture bundle knows English only: a French ticket goes to review (unsupported_language).
FRENCH = {"id": "DUP-1", "language": "fr", "subject": "Virement bloqué",
          "body": "Mon virement est bloqué depuis hier."}
FRENCH_OTHER = {"id": "DUP-1", "language": "fr", "subject": "Carte perdue",
                "body": "J'ai perdu ma carte hier soir, bloquez-la."}
ENV_DROP = ("TRIAGE_PARAMS", "TRIAGE_REVIEW_DB_URL", "TRIAGE_REVIEWERS", "TRIAGE_LLM_CONFIG",
            "TRIAGE_LLM_BASE_URL", "TRIAGE_LLM_MODEL", "ZENDESK_WEBHOOK_SECRET")

pytestmark = pytest.mark.slow  # two bentoml serve processes (30-90 s on 2 busy cores)


@pytest.fixture(scope="module")
def replicas(tiny_bundle, base_params, tmp_path_factory, postgres_server, free_port):
    httpx = pytest.importorskip("httpx")
    tmp = tmp_path_factory.mktemp("replicas")
    db_url = postgres_server.create_database()
    params = copy.deepcopy(base_params)
    params["review"].update({"db_url": db_url, "audit_share": 0.0, "enqueue_from_api": True})
    params_path = write_params(params, tmp / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    env.update({"TRIAGE_BUNDLE": str(tiny_bundle), "TRIAGE_LLM_ENABLED": "false",
                "TRIAGE_PARAMS": str(params_path), "HF_HUB_OFFLINE": "1",
                "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])})
    procs, clients, logs = [], [], []
    try:
        for i in range(2):
            port = free_port()
            log = (tmp / f"serve-{i}.log").open("w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", "serving.service:TicketTriage",
                 "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT, env={**env, "BENTOML_HOME": str(tmp / f"bentoml-{i}"),
                               "TRIAGE_SERVICE_WORKERS": str(i + 1)},
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
        t0 = time.monotonic()
        for i, (proc, client) in enumerate(zip(procs, clients)):
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"replica {i} exited:\n{(tmp / f'serve-{i}.log').read_text()[-3000:]}")
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() - t0 > START_TIMEOUT_S:
                    pytest.fail(f"replica {i} not ready:\n{(tmp / f'serve-{i}.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield clients, db_url, procs
    finally:
        for c in clients:
            c.close()
        for p in procs:
            stop_process_group(p)
        for log in logs:
            log.close()


def test_replicas_share_one_postgresql_queue_without_duplicates(replicas):
    import sqlalchemy as sa

    clients, db_url, _ = replicas
    barrier = threading.Barrier(16)
    statuses: list[int] = []

    def call(i: int) -> None:
        barrier.wait()
        r = clients[i % 2].post("/classify_batch", json={"tickets": [
            FRENCH, {"id": f"EN-{i}", "subject": "Transfer pending",
                     "body": "I sent money yesterday and the transfer is still pending."}]})
        statuses.append(r.status_code)
        assert r.json()["decisions"][0]["band"] == "review"

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 16
    # the same id with other content, through the other replica: queued as well
    assert clients[1].post("/classify", json=FRENCH_OTHER).status_code == 200

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            texts = [r[0] for r in conn.execute(sa.text(
                "SELECT text FROM review_items WHERE ticket_id = 'DUP-1' ORDER BY id"))]
    finally:
        engine.dispose()
    assert len(texts) == 2, texts
    assert "virement" in texts[0].lower() and "carte" in texts[1].lower()


def test_service_workers_sets_the_worker_processes(replicas):
    """TRIAGE_SERVICE_WORKERS=2 starts two BentoML service workers (each with the bundle); the
    default one."""
    import psutil

    _, _, procs = replicas

    def workers(proc) -> int:
        kids = psutil.Process(proc.pid).children(recursive=True)
        return sum("--worker-id" in " ".join(k.cmdline()) for k in kids)

    assert [workers(p) for p in procs] == [1, 2]
