"""Rebuild .dvc/plots/offline.html: DVC's plots page with vega, vega-lite and vega-embed inlined,
so `dvc plots show` / `dvc plots diff` pages render without a network (DVC's own page loads
them from a CDN). Run from the repository root:

    mkdir -p /tmp/vega && (cd /tmp/vega && npm pack vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 \
        && for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
    python .dvc/plots/build_offline_template.py /tmp/vega

The versions are the ones DVC's renderer (dvc-render) names; all three are BSD-3-Clause
(licences in .dvc/plots/LICENSES.txt). `.dvc/config` points `plots.html_template` at the page.
"""

import sys
from pathlib import Path

PKGS = [("vega-5.20.2", "vega.min.js"), ("vega-lite-5.2.0", "vega-lite.min.js"),
        ("vega-embed-6.18.2", "vega-embed.min.js")]


def main(src: str) -> None:
    here = Path(__file__).parent
    scripts, licences = [], []
    for pkg, js in PKGS:
        base = Path(src) / pkg / "package"
        code = (base / "build" / js).read_text(encoding="utf-8")
        if "</script" in code or "{plot_divs}" in code:
            raise SystemExit(f"{js} cannot be inlined as is")
        scripts.append(f"<!-- {pkg} (BSD-3-Clause) -->\n<script>{code}</script>")
        licences.append(f"== {pkg} ==\n{(base / 'LICENSE').read_text(encoding='utf-8')}")
    page = ("<!DOCTYPE html>\n<html>\n<head>\n{refresh_tag}\n<meta charset=\"utf-8\">\n"
            "<title>DVC plots (offline)</title>\n" + "\n".join(scripts) +
            "\n<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>\n"
            "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")
    (here / "offline.html").write_text(page, encoding="utf-8")
    (here / "LICENSES.txt").write_text("\n\n".join(licences), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/vega")
