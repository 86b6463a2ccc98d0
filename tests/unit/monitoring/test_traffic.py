"""decide_frame: the drift frame of a set of tickets, embedding only what the drift test uses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ticket_triage.monitoring import drift as D
from ticket_triage.monitoring.traffic import decide_frame


class _Classifier:
    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded.extend(texts)
        return np.array([[float(len(t)), float(sum(map(ord, t)) % 97), 1.0] for t in texts])


class _Triage:
    """What decide_frame reads of a Triage: clean, decide, classifier.embed."""

    def __init__(self) -> None:
        self.classifier = _Classifier()

    def clean(self, ticket):
        return ticket.body.strip()

    def decide(self, tickets):
        return [SimpleNamespace(topic="a" if len(t.text) % 2 else "b", confidence=0.9, reason="above_auto_threshold")
                for t in tickets]


ROWS = [{"id": f"t{i}", "subject": "", "body": f"ticket number {i} " + "x" * (i % 7)} for i in range(60)]


def test_embeds_only_a_seeded_sample_when_asked():
    tri = _Triage()
    frame, decisions = decide_frame(tri, ROWS, embed_max=10, seed=3)
    assert len(frame) == len(decisions) == 60
    assert len(tri.classifier.embedded) == 10  # not all 60
    have = [i for i, v in enumerate(frame["embedding"]) if v is not None]
    assert len(have) == 10
    for i in have:  # each row's own embedding
        np.testing.assert_array_equal(frame["embedding"][i], _Classifier().embed([frame["text"][i]])[0])
    again, _ = decide_frame(_Triage(), ROWS, embed_max=10, seed=3)
    assert [v is not None for v in again["embedding"]] == [v is not None for v in frame["embedding"]]
    everything, _ = decide_frame(tri2 := _Triage(), ROWS)
    assert len(tri2.classifier.embedded) == 60 and all(v is not None for v in everything["embedding"])


def test_drift_report_uses_the_embedded_rows_only():
    ref, _ = decide_frame(_Triage(), ROWS)
    recent, _ = decide_frame(_Triage(), ROWS, embed_max=20, seed=1)
    report = D.drift_report(ref, recent, {"max_threads": 1})
    emb = next(s for s in report.signals if s.name == "embedding")
    assert not emb.skipped and emb.detail["n_per_side"] == 20
