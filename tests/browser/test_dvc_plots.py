"""`dvc plots show` and `dvc plots diff` pages render in Chromium with the network cut off:
the page is built from .dvc/plots/offline.html, which carries vega, vega-lite and vega-embed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
N_PLOTS = len(yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"])


def _dvc(*args: str, cwd: Path = ROOT) -> None:
    r = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _render_offline(page_file: Path, tmp_path: Path) -> tuple[int, list[str]]:
    """Open the page with every non-file request aborted; return (#rendered vega views, blocked URLs)."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: (route.continue_() if route.request.url.startswith("file:")
                                              else (blocked.append(route.request.url), route.abort())))
            page.goto(page_file.as_uri())
            page.wait_for_function(f"document.querySelectorAll('.vega-embed svg, .vega-embed canvas').length >= {N_PLOTS}",
                                   timeout=30_000)
            n = page.locator(".vega-embed svg, .vega-embed canvas").count()
            page.screenshot(path=str(tmp_path / "plots.png"), full_page=True)
        finally:
            browser.close()
    return n, blocked


def test_plots_show_renders_offline(tmp_path):
    _dvc("plots", "show", "-o", str(tmp_path / "show"))
    n, blocked = _render_offline(tmp_path / "show" / "index.html", tmp_path)
    assert n >= N_PLOTS and not blocked


def test_plots_diff_renders_offline(tmp_path):
    """A diff against the last commit (the workspace's plots against HEAD's)."""
    _dvc("plots", "diff", "HEAD", "-o", str(tmp_path / "diff"))
    n, blocked = _render_offline(tmp_path / "diff" / "index.html", tmp_path)
    assert n >= N_PLOTS and not blocked
