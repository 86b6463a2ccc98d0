"""Failure catalog: where the model goes wrong, grouped so that a person can act on it.

``failure_catalog(rows)`` keeps the misclassified tickets (``true_label != predicted``) and
the overridden ones (a reviewer changed the tag: ``overridden`` true), then groups them

* by (true, predicted) pair, largest groups first, with example tickets;
* by text cluster (TF-IDF + KMeans over the failing tickets), with top terms, the pairs that
  dominate each cluster and examples.

``render_failure_catalog(rows, out_dir)`` writes ``failure_catalog.md`` and
``failure_catalog.html``. Ticket text is user content: every field is HTML-escaped in the
HTML file and Markdown-escaped (pipes, backticks, angle brackets, newlines) in the Markdown.

Row keys: ``id``, ``text``, ``true_label``, ``predicted``; optional ``confidence``,
``band``, ``source``, ``overridden`` (bool).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

MAX_TEXT = 240


def _is_failure(r: dict[str, Any]) -> bool:
    return bool(r.get("overridden")) or r.get("true_label") != r.get("predicted")


def _example(r: dict[str, Any]) -> dict[str, Any]:
    text = " ".join(str(r.get("text") or "").split())
    return {"id": str(r.get("id", "")), "text": text[:MAX_TEXT] + ("..." if len(text) > MAX_TEXT else ""),
            "true_label": str(r.get("true_label")), "predicted": str(r.get("predicted")),
            "confidence": r.get("confidence"), "band": r.get("band"),
            "overridden": bool(r.get("overridden"))}


def _clusters(fail: list[dict[str, Any]], max_clusters: int, max_examples: int, seed: int) -> list[dict[str, Any]]:
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [str(r.get("text") or "") for r in fail]
    k = min(max_clusters, len(fail) // 3)
    if k < 2:
        return []
    try:
        x = TfidfVectorizer(stop_words="english", sublinear_tf=True, max_features=20000,
                            token_pattern=r"(?u)\b[^\W\d_][\w\-]{2,}\b").fit(texts)
    except ValueError:  # no usable words
        return []
    vocab = x.get_feature_names_out()
    from threadpoolctl import threadpool_limits

    m = x.transform(texts)
    with threadpool_limits(limits=1):  # a few hundred rows: threads only add overhead
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(m)
    out = []
    for c in range(k):
        rows = np.nonzero(km.labels_ == c)[0]
        if len(rows) == 0:
            continue
        centre = km.cluster_centers_[c]
        terms = [str(vocab[i]) for i in np.argsort(-centre)[:6] if centre[i] > 0]
        closeness = np.asarray(m[rows] @ centre).ravel()
        pairs = Counter((str(fail[i].get("true_label")), str(fail[i].get("predicted"))) for i in rows)
        out.append({"size": int(len(rows)), "terms": terms,
                    "pairs": [{"true_label": t, "predicted": p, "count": n} for (t, p), n in pairs.most_common(3)],
                    "examples": [_example(fail[rows[i]]) for i in np.argsort(-closeness)[:max_examples]]})
    out.sort(key=lambda d: -d["size"])
    return out


def failure_catalog(rows: Iterable[dict[str, Any]], *, max_examples: int = 5, max_clusters: int = 8,
                    seed: int = 0) -> dict[str, Any]:
    """Group the failing rows (see the module docstring); plain data, JSON-serialisable."""
    rows = list(rows)
    for i, r in enumerate(rows):
        missing = [k for k in ("id", "text", "true_label", "predicted") if k not in r]
        if missing:
            raise ValueError(f"row {i} lacks {missing}; each row needs id, text, true_label and predicted")
    fail = [r for r in rows if _is_failure(r)]
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in fail:
        by_pair.setdefault((str(r["true_label"]), str(r["predicted"])), []).append(r)
    pairs = sorted(by_pair.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return {
        "n_rows": len(rows),
        "n_failures": len(fail),
        "n_misclassified": sum(1 for r in fail if r["true_label"] != r["predicted"]),
        "n_overridden": sum(1 for r in fail if r.get("overridden")),
        "pairs": [{"true_label": t, "predicted": p, "count": len(rs),
                   "share": len(rs) / len(fail),
                   "examples": [_example(r) for r in sorted(rs, key=lambda r: -(r.get("confidence") or 0))[:max_examples]]}
                  for (t, p), rs in pairs],
        "clusters": _clusters(fail, max_clusters, max_examples, seed),
    }


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|#])")


def _md(s: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(s).split()))


def _conf(v: Any) -> str:
    return "" if v is None else f"{float(v):.2f}"


def _markdown(cat: dict[str, Any], title: str) -> str:
    lines = [f"# {_md(title)}", "",
             f"{cat['n_failures']} failing tickets out of {cat['n_rows']} "
             f"({cat['n_misclassified']} misclassified, {cat['n_overridden']} overridden by a reviewer).", ""]
    lines += ["## By (true, predicted) pair", "", "| true | predicted | count | share |", "|---|---|---:|---:|"]
    lines += [f"| {_md(p['true_label'])} | {_md(p['predicted'])} | {p['count']} | {p['share']:.1%} |" for p in cat["pairs"]]
    for p in cat["pairs"]:
        lines += ["", f"### {_md(p['true_label'])} → {_md(p['predicted'])} ({p['count']})", "",
                  "| id | confidence | text |", "|---|---:|---|"]
        lines += [f"| {_md(e['id'])} | {_conf(e['confidence'])} | {_md(e['text'])} |" for e in p["examples"]]
    if cat["clusters"]:
        lines += ["", "## By text cluster", ""]
        for i, c in enumerate(cat["clusters"], 1):
            pairs = ", ".join(f"{_md(q['true_label'])} → {_md(q['predicted'])} ({q['count']})" for q in c["pairs"])
            lines += [f"### Cluster {i}: {c['size']} tickets, terms: {_md(', '.join(c['terms']))}", "",
                      f"Main pairs: {pairs}", "", "| id | true | predicted | text |", "|---|---|---|---|"]
            lines += [f"| {_md(e['id'])} | {_md(e['true_label'])} | {_md(e['predicted'])} | {_md(e['text'])} |"
                      for e in c["examples"]]
            lines.append("")
    return "\n".join(lines) + "\n"


def _html(cat: dict[str, Any], title: str) -> str:
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
             "table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;"
             "text-align:left;vertical-align:top}td.num{text-align:right}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p>{cat['n_failures']} failing tickets out of {cat['n_rows']} ({cat['n_misclassified']} misclassified, "
             f"{cat['n_overridden']} overridden by a reviewer).</p>",
             "<h2>By (true, predicted) pair</h2>",
             "<table><thead><tr><th>true</th><th>predicted</th><th>count</th><th>share</th></tr></thead><tbody>"]
    parts += [f"<tr><td>{e(p['true_label'])}</td><td>{e(p['predicted'])}</td><td class=num>{p['count']}</td>"
              f"<td class=num>{p['share']:.1%}</td></tr>" for p in cat["pairs"]]
    parts.append("</tbody></table>")
    for p in cat["pairs"]:
        parts.append(f"<h3>{e(p['true_label'])} → {e(p['predicted'])} ({p['count']})</h3>")
        parts.append("<table><thead><tr><th>id</th><th>confidence</th><th>text</th></tr></thead><tbody>")
        parts += [f"<tr><td>{e(x['id'])}</td><td class=num>{_conf(x['confidence'])}</td><td>{e(x['text'])}</td></tr>"
                  for x in p["examples"]]
        parts.append("</tbody></table>")
    if cat["clusters"]:
        parts.append("<h2>By text cluster</h2>")
        for i, c in enumerate(cat["clusters"], 1):
            pairs = ", ".join(f"{e(q['true_label'])} → {e(q['predicted'])} ({q['count']})" for q in c["pairs"])
            parts.append(f"<h3>Cluster {i}: {c['size']} tickets, terms: {e(', '.join(c['terms']))}</h3>")
            parts.append(f"<p>Main pairs: {pairs}</p>")
            parts.append("<table><thead><tr><th>id</th><th>true</th><th>predicted</th><th>text</th></tr></thead><tbody>")
            parts += [f"<tr><td>{e(x['id'])}</td><td>{e(x['true_label'])}</td><td>{e(x['predicted'])}</td>"
                      f"<td>{e(x['text'])}</td></tr>" for x in c["examples"]]
            parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def render_failure_catalog(rows: Iterable[dict[str, Any]], out_dir: str | Path, *, max_examples: int = 5,
                           max_clusters: int = 8, seed: int = 0,
                           title: str = "Failure catalog") -> tuple[Path, Path]:
    """Write ``failure_catalog.md`` and ``failure_catalog.html`` into ``out_dir``."""
    cat = failure_catalog(rows, max_examples=max_examples, max_clusters=max_clusters, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out / "failure_catalog.md", out / "failure_catalog.html"
    md_path.write_text(_markdown(cat, title), encoding="utf-8")
    html_path.write_text(_html(cat, title), encoding="utf-8")
    return md_path, html_path
