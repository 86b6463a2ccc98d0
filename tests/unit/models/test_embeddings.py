"""Tests for ticket_triage.models.embeddings: the one embedding cache."""

from __future__ import annotations

import numpy as np

from ticket_triage.models.embeddings import CachedClassifier, EmbeddingStore, owner_token


class Encoder:
    """Stands in for a frozen encoder (weak-referenceable like real ones)."""


def test_a_new_encoder_never_gets_the_embeddings_of_a_freed_one():
    """Keys are tokens, not id(): CPython reuses the memory (the id) of a freed object, and a
    new encoder there must not be served the dead one's embeddings."""
    cache = EmbeddingStore()
    first = Encoder()
    old_id = id(first)
    cache.put_many(first, True, ["hello"], np.ones((1, 3), dtype=np.float32))
    del first  # freed at once (no cycle): its memory is the next Encoder's, usually
    # CPython usually gives the next Encoder the freed one's memory, so its id; whether or not
    # it does in this run, no fresh encoder may be served the dead one's embeddings
    seen_reuse = False
    for _ in range(1000):
        cand = Encoder()
        assert cache.get_many(cand, True, ["hello"]) == [None]
        if id(cand) == old_id:
            seen_reuse = True
            break
    print(f"freed id reused by a new encoder in this run: {seen_reuse}")


def test_tokens_are_stable_per_object_and_distinct_across_objects():
    a, b, plain = Encoder(), Encoder(), object()
    assert owner_token(a) == owner_token(a) != owner_token(b)
    assert owner_token(plain) == owner_token(plain)


class FakeClassifier:
    params = {"normalize": True}

    def __init__(self):
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded += list(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    def predict_proba_embeddings(self, emb):
        return emb / emb.sum(axis=1, keepdims=True)

    def predict_proba(self, texts):  # pragma: no cover - must not be used on this path
        raise AssertionError("classified from text although embeddings were cached")


def test_cached_classifier_embeds_each_text_once_and_classifies_from_the_cache(monkeypatch):
    for capacity in ("50000", "0"):  # the shared LRU, and the per-wrapper dict when it is off
        monkeypatch.setenv("TRIAGE_EMBED_CACHE", capacity)
        clf = FakeClassifier()
        cached = CachedClassifier(clf)
        cached.seed(["seeded"], np.array([[9.0, 9.0]], dtype=np.float32))
        first = cached.embed(["a", "bb", "a", "seeded"])
        again = cached.predict_proba(["bb", "a"])
        assert clf.embedded == ["a", "bb"]
        assert first.tolist() == [[1, 1], [2, 1], [1, 1], [9, 9]]
        np.testing.assert_allclose(again, [[2 / 3, 1 / 3], [0.5, 0.5]])
        assert cached.embed([]).shape == (0, 2)


def test_a_copied_encoder_gets_its_own_token():
    import copy

    a = Encoder()
    tok = owner_token(a)
    b = copy.deepcopy(a)
    assert owner_token(b) != tok and owner_token(a) == tok
