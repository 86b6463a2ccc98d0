"""The package stage: the champion into the Bento store, then `bentoml build`.

The champion's bundle (MLflow registry alias ``champion``; ``artifacts/train/winner`` when
no registry is reachable and ``allow_local`` is set) is imported as the BentoML model
``ticket-triage`` (its files under ``bundle/``), then the Bento described by
``serving/bentofile.yaml`` is built with it inside. The Bento store is ``$BENTOML_HOME``
(the Makefile points it at ``.bentoml/`` in the project). ``bentoml serve ticket-triage:latest``
then serves it offline; ``bentoml containerize ticket-triage:latest`` makes an OCI image.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

BENTO_MODEL = "ticket-triage"


def import_bundle(bundle_dir: str | Path, *, labels: Mapping[str, str] | None = None,
                  metadata: Mapping[str, Any] | None = None) -> str:
    """Copy a bundle into the Bento model store; returns the model tag."""
    import bentoml

    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "policy.json").is_file():
        raise FileNotFoundError(f"{bundle_dir} is not a model bundle (no policy.json)")
    policy = json.loads((bundle_dir / "policy.json").read_text())
    meta = {"family": policy.get("family"), "model_version": policy.get("model_version"),
            "taxonomy_version": policy.get("taxonomy_version"), **dict(metadata or {})}
    with bentoml.models.create(BENTO_MODEL, labels=dict(labels or {}), metadata=meta) as m:
        shutil.copytree(bundle_dir, m.path_of("bundle"))
    return str(m.tag)


def build_bento(root: str | Path = ".", bentofile: str = "serving/bentofile.yaml") -> str:
    """``bentoml build`` from the project root; returns the Bento tag."""
    import bentoml

    bento = bentoml.bentos.build_bentofile(str(Path(root) / bentofile), build_ctx=str(root))
    return str(bento.tag)


def run_package(params: Mapping[str, Any], *, out_path: str | Path = "artifacts/package/bento.json",
                allow_local: bool = True) -> dict[str, Any]:
    from ticket_triage import tracking

    source = "mlflow:ticket-triage@champion"
    version = None
    try:
        tracking.setup(params.get("tracking"))
        mv = tracking.alias_version("champion")
        if mv is None:
            raise LookupError("no champion alias")
        version = mv.version
        bundle = tracking.download_bundle("champion")
    except Exception as exc:  # registry unreachable or empty
        if not allow_local:
            raise
        bundle = Path(params["paths"]["train"]) / "winner"
        source = f"local:{bundle} ({type(exc).__name__}: {exc})"
    model_tag = import_bundle(bundle, labels={"stage": "champion"},
                              metadata={"registry_version": str(version), "source": source})
    bento_tag = build_bento(".")
    result = {"model": model_tag, "bento": bento_tag, "source": source, "registry_version": version,
              "serve": f"bentoml serve {bento_tag}", "containerize": f"bentoml containerize {bento_tag}"}
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(result, indent=2))
    return result
