import json

import numpy as np

from ticket_triage.inference import Triage, aggregate_to_topics


def test_aggregate_fine_to_topics():
    p = np.array([[0.2, 0.3, 0.5]])
    out = aggregate_to_topics(p, ["i1", "i2", "i3"], {"i1": "A", "i2": "A", "i3": "B"}, ["A", "B"])
    assert np.allclose(out, [[0.5, 0.5]])


def test_bundle_decides_and_explains(tiny_bundle):
    tri = Triage.load(tiny_bundle)
    ds = tri.decide([
        {"id": "a", "subject": "", "body": "My card was stolen yesterday and someone used it"},
        {"id": "b", "subject": "Transfer", "body": "My transfer to a friend is still pending since Monday"},
        {"id": "c", "subject": "", "body": "   "},
        {"id": "d", "subject": "", "body": "\x00\xff" * 10},
    ])
    assert [d.ticket_id for d in ds] == ["a", "b", "c", "d"]
    assert ds[0].topic == "fraud_and_security" and ds[0].urgency == "P1" and ds[0].rule_hits
    assert ds[0].band != "auto_route" or ds[0].source == "rules"
    assert ds[1].topic == "transfers" and ds[1].source == "model"
    assert ds[2].band == "review" and ds[2].reason == "empty_text"
    for d in ds:
        assert d.band in ("auto_route", "draft", "review")
        json.dumps(d.to_dict())
    assert tri.describe()["llm_fallback"] == "off"


def test_huge_text_is_handled(tiny_bundle):
    tri = Triage.load(tiny_bundle)
    d = tri.decide_one({"subject": "x", "body": "transfer pending " * 70000})
    assert d.topic is not None
