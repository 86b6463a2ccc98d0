"""Fixtures for the service tests: the fake OpenAI endpoint and an LLM config file.

The model bundle comes from the session fixture ``tiny_bundle`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "tests"):  # `serving` and the `fakes` package
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from fakes.openai_server import FakeOpenAI  # noqa: E402

LLM_TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def fake_llm():
    with FakeOpenAI() as fake:
        yield fake


def _write_llm_config(path: Path, **over) -> Path:
    cfg = {"enabled": True, "model": "fake-model", "timeout_s": LLM_TIMEOUT_S, "max_retries": 1,
           "backoff_s": 0.05, "max_backoff_s": 0.2, "failures_to_open": 100, "reset_after_s": 60,
           "daily_budget_usd": 1.0, "price_input_per_1m": 1.0, "price_output_per_1m": 1.0,
           # every band, so the fixture model's confidence never decides whether the fake is asked
           "bands": ["auto_route", "draft", "review"], "cache_size": 1000, **over}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def write_llm_config():
    """``write_llm_config(path, **overrides)`` writes an enabled LLM config for the fake."""
    return _write_llm_config


@pytest.fixture(scope="session")
def llm_timeout() -> float:
    return LLM_TIMEOUT_S


@pytest.fixture(scope="session")
def free_port():
    """``free_port()`` -> a free TCP port on 127.0.0.1."""
    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return pick

