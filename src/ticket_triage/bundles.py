"""Where a model bundle comes from: the one resolve order for the service, the CLI and monitoring.

:func:`resolve_bundle` returns ``(bundle_dir, where)`` trying, in this order:

1. ``given`` -- an explicit bundle directory (``--bundle``, ``bundle_dir=``)      -> ``"given"``
2. the environment variable ``TRIAGE_BUNDLE``                                   -> ``"env:TRIAGE_BUNDLE"``
3. the model packaged in the Bento store (only when ``bento_model_path`` is passed: the service;
   the tag the Bento was built with, see :func:`bento_model_tag`)               -> ``"bento:<tag>"``
4. the MLflow registry alias (``champion`` by default)                           -> ``"mlflow:ticket-triage@champion"``
5. the local sweep winner ``<paths.train>/winner`` (only when ``local_winner`` is passed: the
   CLI and continuous evaluation; logged as a warning)                           -> ``"local:<dir> (...)"``

A directory counts as a bundle when it, or its ``bundle/`` folder, holds ``policy.json``. An
explicit choice (1, 2) that is not a bundle is an error, not a reason to look further. When
nothing is found, ``FileNotFoundError`` lists every place tried and what to set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_BUNDLE = "TRIAGE_BUNDLE"
ENV_BENTO_MODEL = "TRIAGE_BENTO_MODEL"  # set in a built Bento: the model tag it was built with
BENTO_MODEL_TAG = "ticket-triage:latest"  # outside a built Bento (bentoml serve serving.service:...)
REGISTRY_ALIAS = "champion"
REGISTERED_MODEL = "ticket-triage"


def bento_model_tag(env: Mapping[str, str] | None = None, bento_root: str | Path | None = None) -> str:
    """The Bento model to serve: ``TRIAGE_BENTO_MODEL`` (set in the Bento's image by the package
    stage), else the ``ticket-triage`` model recorded in the ``bento.yaml`` of the Bento being
    served (``bento_root``: `bentoml serve <bento>` does not apply the Bento's envs), else latest."""
    env = os.environ if env is None else env
    if env.get(ENV_BENTO_MODEL):
        return env[ENV_BENTO_MODEL]
    meta = Path(bento_root) / "bento.yaml" if bento_root else None
    if meta is not None and meta.is_file():
        import yaml

        name = BENTO_MODEL_TAG.split(":")[0]
        for m in (yaml.safe_load(meta.read_text()) or {}).get("models") or []:
            tag = str(m.get("tag", "")) if isinstance(m, dict) else str(m)
            if tag.split(":")[0] == name:
                return tag
    return BENTO_MODEL_TAG


def bundle_in(path: str | Path) -> Path | None:
    """``path`` or ``path/bundle`` when it holds ``policy.json``, else None."""
    path = Path(path)
    for cand in (path, path / "bundle"):
        if (cand / "policy.json").is_file():
            return cand
    return None


def resolve_bundle(given: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                   bento_model_path: Callable[[], str | Path | None] | None = None,
                   download: Callable[[str], str | Path] | None = None,
                   alias: str = REGISTRY_ALIAS, tracking_cfg: Mapping[str, Any] | None = None,
                   local_winner: str | Path | None = None,
                   bento_root: str | Path | None = None) -> tuple[Path, str]:
    """Find the model bundle -> ``(bundle_dir, where)`` in the order of the module docstring.

    ``download(alias)`` fetches a registry alias (default: ``ticket_triage.tracking.download_bundle``
    after ``tracking.setup(tracking_cfg)``); ``alias="local"`` skips the registry. The Bento model
    is the one of :func:`bento_model_tag` (``bento_root``: the Bento being served)."""
    env = os.environ if env is None else env
    if given:
        found = bundle_in(Path(given).expanduser())
        if found is None:
            raise FileNotFoundError(f"{given} is not a model bundle (no policy.json in it or in its "
                                    "bundle/ folder): point it at a trained bundle dir, e.g. "
                                    "artifacts/train/winner")
        return found, "given"
    tried: list[str] = []
    if env.get(ENV_BUNDLE):
        p = Path(env[ENV_BUNDLE]).expanduser()
        found = bundle_in(p)
        if found is None:
            raise FileNotFoundError(f"{ENV_BUNDLE}={p} is not a model bundle (no policy.json in it "
                                    "or in its bundle/ folder): point it at a trained bundle dir, "
                                    "e.g. artifacts/train/bundle")
        return found, f"env:{ENV_BUNDLE}"
    tried.append(f"env {ENV_BUNDLE} (unset)")
    if bento_model_path is not None:
        tag = bento_model_tag(env, bento_root)
        try:
            mp = bento_model_path()
        except Exception as exc:  # not in the store, or no store at all
            mp = None
            tried.append(f"Bento store {tag} ({type(exc).__name__}: {exc})")
        if mp is not None:
            found = bundle_in(Path(mp))
            if found is not None:
                return found, f"bento:{tag}"
            tried.append(f"Bento store {tag} at {mp} (no policy.json)")
    if alias != "local":
        if download is None:
            def download(name: str) -> str | Path:
                from ticket_triage import tracking

                if not (os.environ.get("MLFLOW_TRACKING_URI") or (tracking_cfg or {}).get("uri")
                        or Path("mlruns.db").exists()):
                    raise LookupError("no tracking store (MLFLOW_TRACKING_URI unset, no mlruns.db "
                                      "here); not creating one just to look")
                tracking.setup(tracking_cfg)
                return tracking.download_bundle(name)
        try:
            p = Path(download(alias))
            found = bundle_in(p)
            if found is not None:
                return found, f"mlflow:{REGISTERED_MODEL}@{alias}"
            tried.append(f"MLflow alias {alias} -> {p} (no policy.json)")
        except Exception as exc:  # no store, no such alias, unreachable server
            tried.append(f"MLflow alias {alias} ({type(exc).__name__}: {exc})")
    if local_winner is not None:
        found = bundle_in(local_winner)
        if found is not None:
            note = (f"local:{found} (no {alias} in the model registry: {tried[-1]}; using the local "
                    "sweep winner)" if alias != "local" else f"local:{found}")
            if alias != "local":
                log.warning(note)
            return found, note
        tried.append(f"local sweep winner {local_winner} (no policy.json)")
    raise FileNotFoundError(
        "no model bundle: tried " + "; ".join(tried) + f". Pass --bundle, set {ENV_BUNDLE} to a "
        f"bundle dir, run `dvc repro` (train, evaluate, promote) so the registry has a {alias}"
        + (f", or run the package stage (`dvc repro package`) to import {BENTO_MODEL_TAG}"
           if bento_model_path is not None else ""))


def copy_bundle(src: str | Path, dst: str | Path) -> Path:
    """Copy the bundle at ``src`` to ``dst`` (replacing what was there); returns ``dst``."""
    import shutil

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst
