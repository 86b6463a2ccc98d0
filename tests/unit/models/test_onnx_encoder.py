"""The ONNX Runtime encoder backend (ticket_triage.models.onnx_encoder) against torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ticket_triage.models import build_classifier, load_classifier
from ticket_triage.models.encoder import default_encoder_path, encode, load_encoder
from ticket_triage.models.onnx_encoder import OnnxExportError, _st_config, export

TEXTS = ["my card was stolen yesterday", "How do I top up with Apple Pay?", "x",
         "I was charged twice for the same coffee and the second charge is still pending " * 12]


def test_unsupported_encoders_are_refused_with_the_alternative(tmp_path):
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls"}))
    with pytest.raises(OnnxExportError, match="mean pooling only: use backend: torch"):
        _st_config(tmp_path)
    (tmp_path / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(OnnxExportError, match="use backend: torch"):
        export(tmp_path)


def test_runs_hold_about_tokens_per_run_padded_tokens():
    """Texts sorted longest first are cut into runs of <= batch_size texts and ~256 padded tokens
    (long texts alone, short ones together), covering every text once, in order."""
    from types import SimpleNamespace

    from ticket_triage.models.onnx_encoder import TOKENS_PER_RUN, OnnxSentenceEncoder

    enc = SimpleNamespace(tokens_per_run=TOKENS_PER_RUN)
    widths = [256, 200, 30, 20, 10, 10, 5] + [4] * 100
    runs = OnnxSentenceEncoder._runs(enc, widths, 64)
    assert runs[:3] == [(0, 1), (1, 2), (2, 10)]  # 256 // 30 = 8 texts from the 30-token one on
    assert runs[3] == (10, 74) and runs[-1] == (74, len(widths))  # 64 at most per run
    assert [s for s, _ in runs[1:]] == [e for _, e in runs[:-1]] and runs[0][0] == 0
    assert all(max(widths[s:e]) * (e - s) <= TOKENS_PER_RUN for s, e in runs if e - s < 64 and e - s > 1)
    assert OnnxSentenceEncoder._runs(enc, [], 64) == []
    assert OnnxSentenceEncoder._runs(SimpleNamespace(tokens_per_run=10**6), [3] * 5, 2) == [(0, 2), (2, 4), (4, 5)]


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of torch, onnx, onnx-int8"):
        build_classifier("embed_logreg", backend="tensorrt")


@pytest.mark.slow
def test_onnx_matches_torch_and_int8_is_close():
    ref = encode(TEXTS, load_encoder("default", "cpu", "torch"), progress=False)
    fp32 = load_encoder("default", "cpu", "onnx")
    got = encode(TEXTS, fp32, progress=False)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(got * ref, axis=1)) > 0.99999
    # one at a time (no padding) gives the same as the padded batch
    one = np.vstack([encode([t], fp32, progress=False) for t in TEXTS])
    np.testing.assert_allclose(one, got, atol=1e-5)
    assert encode([], fp32, progress=False).shape == (0, 384)
    int8 = encode(TEXTS, load_encoder("default", "cpu", "onnx-int8"), progress=False)
    cos = np.sum(int8 * ref, axis=1)
    assert cos.min() > 0.95 and not np.allclose(int8, got, atol=1e-4)  # quantized, not a copy


@pytest.mark.slow
def test_export_is_cached(tmp_path):
    a = export(default_encoder_path(), "onnx", out_dir=tmp_path)
    mtime = a.stat().st_mtime_ns
    assert export(default_encoder_path(), "onnx", out_dir=tmp_path) == a
    assert a.stat().st_mtime_ns == mtime and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


@pytest.mark.slow
def test_embed_logreg_saves_its_backend(tmp_path):
    texts = ["card stolen", "stolen card please block", "lost my card", "transfer pending",
             "my transfer is still pending", "where is my transfer"]
    labels = ["card", "card", "card", "transfer", "transfer", "transfer"]
    clf = build_classifier("embed_logreg", backend="onnx").fit(texts, labels, progress=False)
    loaded = load_classifier(clf.save(tmp_path / "clf"))
    assert loaded.params["backend"] == "onnx"
    assert type(loaded._encoder()).__name__ == "OnnxSentenceEncoder"
    np.testing.assert_allclose(loaded.predict_proba(texts), clf.predict_proba(texts), atol=1e-9)


def test_embedding_cache_counts_and_bounds_its_entries(monkeypatch):
    """The service reports len(EMBEDDING_CACHE) so load tests can tell cache hits from new traffic."""
    import numpy as np

    from ticket_triage.models.embeddings import EmbeddingStore

    cache = EmbeddingStore()
    model = object()
    assert len(cache) == 0
    cache.put_many(model, True, ["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert len(cache) == 3 and cache.get_many(model, True, ["b", "z"])[1] is None
    monkeypatch.setenv("TRIAGE_EMBED_CACHE", "2")
    cache.put_many(model, True, ["d"], np.ones((1, 3), dtype=np.float32))
    assert len(cache) == 2 and cache.get_many(model, True, ["a"]) == [None]  # oldest evicted
    cache.clear()
    assert len(cache) == 0
