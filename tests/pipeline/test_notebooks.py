"""The notebooks stay runnable (executed with nbclient on the fixture) and are committed
with their outputs stripped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = {
    "threshold_tuning.ipynb": ["ECE", "coverage at", "auto_route thresholds"],
    "error_analysis.ipynb": ["failing tickets of", "flagged (estimated noise"],
}


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.append(data.get("text/plain", ""))
            parts.append(data.get("text/markdown", ""))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Make sure a 'python3' kernel running this interpreter exists (register one in a temp
    JUPYTER_PATH when the environment has none)."""
    from jupyter_client.kernelspec import find_kernel_specs

    if "python3" in find_kernel_specs():
        yield None
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(prefix=str(prefix), kernel_name="python3")
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter") + (os.pathsep + old if old else "")
    try:
        assert "python3" in find_kernel_specs(), "could not register a python3 kernel for nbclient"
        yield prefix
    finally:
        if old is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = old


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_outputs_are_stripped(name):
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{name} was committed with outputs: clear them (Kernel > Restart & Clear Output) before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs(name, kernel_env, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.delenv("TRIAGE_BUNDLE", raising=False)  # always the fixture bundle here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    seconds = time.perf_counter() - t0
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    text = _text_outputs(nb)
    for needle in NOTEBOOKS[name]:
        assert needle in text, f"{name}: expected {needle!r} in the outputs"
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images >= 1, f"{name} displayed no figure"
    assert seconds < 600, f"{name} took {seconds:.0f}s; keep notebooks small (< 60 s on an idle machine)"
