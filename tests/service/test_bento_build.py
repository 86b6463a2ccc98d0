"""The Bento: its requirements cover what serving/service.py imports, pinned to the installed
versions; a built Bento pins the model version it was built with and serves that one even when
a newer model is in the store; its Dockerfile installs the pinned requirements.

`bentoml containerize` needs a container engine and network access to the package index, which
the test machines do not have: the generated Dockerfile and requirements are checked instead."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
import yaml

from helpers import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
BENTOFILE = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())
# distributions that come with another pinned one, or with BentoML itself
PROVIDED = {"bentoml", "mlflow-skinny", "mlflow-tracing"}


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "ticket_triage":
        return None
    p = ROOT / "src" / Path(*parts)
    for cand in (p / "__init__.py", p.with_suffix(".py")):
        if cand.is_file():
            return cand
    return None


def third_party_imports(entry: Path) -> set[str]:
    """Top-level third-party modules imported (at any depth, lazy imports too) by ``entry`` and
    every ticket_triage module it reaches."""
    seen: set[Path] = set()
    third: set[str] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top == "ticket_triage":
                    f = _module_file(name)
                    if f is not None:
                        todo.append(f)
                elif top not in sys.stdlib_module_names and top not in {"serving", "__future__"}:
                    third.add(top)
    return third


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def test_bentofile_pins_everything_the_service_imports():
    pins = {}
    for line in BENTOFILE["python"]["packages"]:
        name, _, pin = line.split("#")[0].strip().partition("==")
        assert pin, f"{line!r} is not an exact pin"
        pins[_norm(name)] = pin
    dists = packages_distributions()
    needed = {_norm(d) for top in third_party_imports(ROOT / "serving" / "service.py")
              for d in dists.get(top, [top])} - PROVIDED
    assert {"sqlalchemy", "pandas", "omegaconf", "numpy", "fastapi"} <= needed  # the walk reaches them
    missing = sorted(needed - set(pins))
    assert not missing, f"serving/bentofile.yaml python.packages lacks {missing}"
    for name, pin in pins.items():
        assert pin == version(name).split("+")[0], f"{name}=={pin} but {version(name)} is installed (requirements.lock)"
    assert not BENTOFILE["python"].get("extra_index_url"), "an extra index an offline mirror cannot serve"


def test_pinned_bentofile_names_the_exact_model(tmp_path):
    from ticket_triage.service.packaging import BENTO_MODEL_ENV, pinned_bentofile

    out = pinned_bentofile("ticket-triage:abc123", ROOT, out=tmp_path / "bentofile.yaml")
    cfg = yaml.safe_load(out.read_text())
    assert cfg["models"] == ["ticket-triage:abc123"]
    assert {"name": BENTO_MODEL_ENV, "value": "ticket-triage:abc123"} in cfg["envs"]
    assert cfg["service"] == BENTOFILE["service"] and cfg["python"] == BENTOFILE["python"]


def test_bento_model_tag_order(tmp_path):
    from ticket_triage.bundles import bento_model_tag

    (tmp_path / "bento.yaml").write_text(yaml.safe_dump({"models": [{"tag": "other:1"}, {"tag": "ticket-triage:v7"}]}))
    assert bento_model_tag({"TRIAGE_BENTO_MODEL": "ticket-triage:env"}, tmp_path) == "ticket-triage:env"
    assert bento_model_tag({}, tmp_path) == "ticket-triage:v7"
    assert bento_model_tag({}, tmp_path / "missing") == "ticket-triage:latest"
    assert bento_model_tag({}) == "ticket-triage:latest"


BUILD = """
import json, sys
from ticket_triage.service.packaging import build_bento, import_bundle
pinned = import_bundle(sys.argv[1], metadata={"which": "pinned"})
bento = build_bento(sys.argv[2], model_tag=pinned, pinned_path=sys.argv[3])
newer = import_bundle(sys.argv[1], metadata={"which": "newer"})   # now ticket-triage:latest
print(json.dumps({"pinned": pinned, "bento": bento, "newer": newer}))
"""


@pytest.mark.slow
def test_built_bento_serves_the_model_it_was_built_with(tiny_bundle, tmp_path, free_port):
    import httpx

    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    for k in ("TRIAGE_BUNDLE", "TRIAGE_BENTO_MODEL", "MLFLOW_TRACKING_URI"):
        env.pop(k, None)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/empty.db"  # no registry fallback to hide a miss
    env["TRIAGE_API_KEYS"] = "bento-test-key-0123456789"  # /info/ready names the bundle source to key holders
    r = subprocess.run([sys.executable, "-c", BUILD, str(tiny_bundle), str(ROOT), str(tmp_path / "bentofile.yaml")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    tags = json.loads(r.stdout.strip().splitlines()[-1])
    assert tags["pinned"] != tags["newer"]
    name, ver = tags["bento"].split(":")
    bento_dir = tmp_path / "bentoml" / "bentos" / name / ver
    meta = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert [m["tag"] for m in meta["models"]] == [tags["pinned"]]
    assert {"name": "TRIAGE_BENTO_MODEL", "value": tags["pinned"], "stage": "all"} in meta["envs"]
    # the Dockerfile installs exactly the pinned requirements
    docker = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in docker
    assert f"ENV TRIAGE_BENTO_MODEL=$TRIAGE_BENTO_MODEL" in docker
    reqs = [x for x in (bento_dir / "env" / "python" / "requirements.txt").read_text().splitlines()
            if x and not x.startswith("#")]
    assert reqs and all("==" in x for x in reqs), reqs
    assert not any(x.startswith("--") for x in reqs), "an index option the offline mirror cannot serve"

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    from ticket_triage.service.packaging import SERVE_OPTIONS  # as the package stage prints the command

    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tags["bento"], "--host", "127.0.0.1",
                             "--port", str(port), *SERVE_OPTIONS], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                          headers={"Authorization": "Bearer bento-test-key-0123456789"}) as client:
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                try:
                    ready = client.get("/info/ready")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(1)
            info = ready.json()
            assert info["bundle_source"] == f"bento:{tags['pinned']}", info
            assert client.get("/").status_code == 200           # the OpenAPI docs are at / (README)
            assert "/classify" in client.get("/docs.json").json()["paths"]
            assert client.post("/classify", json={"subject": "", "body": "my transfer is pending"}).status_code == 200
    finally:
        stop_process_group(proc)
        log.close()
