"""Failure catalog: grouping, filtering and escaping of ticket text."""

from __future__ import annotations

from ticket_triage.monitoring.reports import failure_catalog, render_failure_catalog


def _rows():
    rows = []
    for i in range(6):
        rows.append({"id": f"c{i}", "text": f"card arrived broken number {i}", "true_label": "card", "predicted": "card",
                     "confidence": 0.9})
    for i in range(5):
        rows.append({"id": f"r{i}", "text": f"refund for a double charge on my invoice {i}", "true_label": "refund",
                     "predicted": "billing", "confidence": 0.5 + i / 20})
    for i in range(3):
        rows.append({"id": f"p{i}", "text": f"password reset email never arrives {i}", "true_label": "login",
                     "predicted": "email", "confidence": 0.6})
    rows.append({"id": "x<1>", "text": "<script>alert('x')</script> | pipe `code` text", "true_label": "login",
                 "predicted": "email", "confidence": 0.7})
    rows.append({"id": "o1", "text": "agent changed the tag after review", "true_label": "card", "predicted": "card",
                 "overridden": True})
    return rows


def test_catalog_groups_by_pair():
    cat = failure_catalog(_rows(), max_examples=2)
    assert cat["n_rows"] == 16
    assert cat["n_failures"] == 10  # 5 + 3 + 1 misclassified, 1 overridden; correct rows excluded
    assert cat["n_misclassified"] == 9 and cat["n_overridden"] == 1
    top = cat["pairs"][0]
    assert (top["true_label"], top["predicted"], top["count"]) == ("refund", "billing", 5)
    assert len(top["examples"]) == 2
    assert top["examples"][0]["id"] == "r4"  # most confident mistake first
    assert [(p["true_label"], p["predicted"], p["count"]) for p in cat["pairs"][1:]] == [
        ("login", "email", 4), ("card", "card", 1)]
    assert cat["clusters"], "10 failing tickets should give text clusters"
    assert sum(c["size"] for c in cat["clusters"]) == 10


def test_render_escapes_html_and_markdown(tmp_path):
    md, html_path = render_failure_catalog(_rows(), tmp_path / "catalog")
    h = html_path.read_text()
    assert "<script>" not in h
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in h
    assert "x&lt;1&gt;" in h
    m = md.read_text()
    assert "<script>" not in m
    assert "\\<script\\>" in m and "\\| pipe \\`code\\`" in m
    assert "refund → billing (5)" in m
    # every table row has the same number of unescaped pipes as its header
    for line in m.splitlines():
        if line.startswith("| id | confidence | text |"):
            n = line.count("|")
    rows = [ln for ln in m.splitlines() if ln.startswith("| x\\<1\\> | 0.70 |")]
    assert rows and all(ln.replace("\\|", "").count("|") == n for ln in rows)


def test_missing_columns_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="true_label"):
        failure_catalog([{"id": "1", "text": "x", "predicted": "a"}])
