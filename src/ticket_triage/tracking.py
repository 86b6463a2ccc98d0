"""The sole MLflow caller: runs, metrics, artifacts, the model registry and its aliases.

The tracking URI comes from ``MLFLOW_TRACKING_URI`` (the Makefile defaults it to the local
SQLite store ``mlruns.db``); ``tracking.uri`` in params is used only when the variable is
unset. Nothing happens at import time.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

MODEL_NAME = "ticket-triage"


def setup(cfg: Mapping[str, Any] | None = None, *, experiment: str | None = None) -> str:
    """Point MLflow at the store (env first) and select ``experiment`` (default: the
    configured one, ``ticket-triage``). Returns the tracking URI."""
    import mlflow

    cfg = dict(cfg or {})
    uri = os.environ.get("MLFLOW_TRACKING_URI") or cfg.get("uri") or "sqlite:///mlruns.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or uri)
    name = experiment or cfg.get("experiment", "ticket-triage")
    if mlflow.get_experiment_by_name(name) is None:
        loc = cfg.get("artifact_location")
        mlflow.create_experiment(name, artifact_location=Path(loc).resolve().as_uri() if loc else None)
    mlflow.set_experiment(name)
    return uri


def git_sha(short: bool = False) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "nogit"
    except (OSError, subprocess.SubprocessError):
        return "nogit"


def data_hash(lock_path: str | Path = "dvc.lock", dvc_file: str | Path = "data.dvc") -> str:
    """md5 of the raw data as DVC pinned it (data.dvc), or 'unknown'."""
    import yaml

    p = Path(dvc_file)
    if p.is_file():
        outs = (yaml.safe_load(p.read_text()) or {}).get("outs") or [{}]
        return str(outs[0].get("md5", "unknown"))
    return "unknown"


@contextmanager
def run(name: str, *, nested: bool = False, tags: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None) -> Iterator[Any]:
    import mlflow

    with mlflow.start_run(run_name=name, nested=nested) as r:
        mlflow.set_tags({"git_sha": git_sha(), "data_md5": data_hash(),
                         "dvc_exp": os.environ.get("DVC_EXP_NAME", ""), **dict(tags or {})})
        if params:
            items = {k[:250]: str(v)[:500] for k, v in params.items()}
            keys = list(items)
            for i in range(0, len(keys), 100):
                mlflow.log_params({k: items[k] for k in keys[i:i + 100]})
        yield r


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import mlflow

    # NaN is kept (e.g. the precision of an empty auto-route band): MLflow shows it as NaN
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    mlflow.log_metrics(clean, step=step)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    p = Path(path)
    if p.is_dir():
        mlflow.log_artifacts(str(p), artifact_path=artifact_path)
    elif p.is_file():
        mlflow.log_artifact(str(p), artifact_path=artifact_path)


def log_bundle_model(bundle_dir: str | Path, input_example: list[dict[str, str]], *, name: str = "model") -> str:
    """Log the bundle as a pyfunc model (models from code: nothing is pickled). Returns its URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(input_example)
    out = pd.DataFrame([{"topic": "t", "confidence": 0.5, "band": "draft", "urgency": "P3", "reason": "r",
                         "source": "model"}])
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Add type hints to the `predict` method")
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"bundle": str(bundle_dir)}, signature=infer_signature(example, out),
            input_example=example, pip_requirements=["ticket-triage"])
    return info.model_uri


def register(model_uri: str, alias: str = "challenger", name: str = MODEL_NAME,
             tags: Mapping[str, str] | None = None) -> str:
    """Register a model version and point ``alias`` at it. Returns the version."""
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, name)
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, mv.version)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, mv.version, k, str(v))
    return str(mv.version)


def alias_version(alias: str, name: str = MODEL_NAME) -> Any | None:
    """The model version behind an alias, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias(version: str, alias: str, name: str = MODEL_NAME) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, version)


def version_tags(version: Any) -> dict[str, str]:
    return dict(getattr(version, "tags", {}) or {})


def download_bundle(alias: str = "champion", dst: str | Path | None = None, name: str = MODEL_NAME) -> Path:
    """Download the bundle behind a registry alias; returns the local bundle directory."""
    import mlflow

    mv = alias_version(alias, name)
    if mv is None:
        raise LookupError(f"no model version of {name!r} has alias {alias!r}: run `dvc repro` (train, evaluate, "
                          "promote) first, or set TRIAGE_BUNDLE to a bundle directory")
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{alias}", dst_path=str(dst) if dst else None)
    bundle = Path(path) / "artifacts" / "bundle"
    if not bundle.is_dir():
        cands = list(Path(path).rglob("policy.json"))
        if not cands:
            raise FileNotFoundError(f"model {name}@{alias} has no bundle artifact under {path}")
        bundle = cands[0].parent
    return bundle
