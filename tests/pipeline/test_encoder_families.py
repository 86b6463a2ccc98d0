"""The encoder-based families with the real packaged MiniLM (slow: a few seconds to a minute
each): embed_logreg, the default ensemble, SetFit and the fine-tuned transformer fit on the small
fixture, round-trip save/load with identical predictions, stop on their time budget, and carry
their ONNX encoders. The quick model tests (TF-IDF, config errors, helpers) are in
tests/unit/models/test_models.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import FAST, check_probs, check_roundtrip, small_tickets

from ticket_triage.decision.triage import Triage
from ticket_triage.models import build_classifier, load_classifier
from ticket_triage.models.base import META_FILE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    return small_tickets()


# --------------------------------------------------------------------------------------------
# encoder-based families: slow (real MiniLM, a handful of steps)
@pytest.fixture(scope="module")
def embed_clf(data):
    texts, labels = data
    return build_classifier("embed_logreg").fit(texts, labels, progress=False)


@pytest.mark.slow
def test_embed_logreg_fits_and_roundtrips(embed_clf, data, tmp_path):
    texts, labels = data
    p = check_probs(embed_clf, texts)
    assert np.mean(np.array(embed_clf.labels)[p.argmax(1)] == np.array(labels)) >= 0.9
    check_roundtrip(embed_clf, texts, tmp_path)
    saved = tmp_path / "clf"
    # the packaged encoder is referenced, not copied
    assert json.loads((saved / META_FILE).read_text())["params"]["encoder"] == "default"
    assert not list(saved.rglob("*.safetensors"))


@pytest.mark.slow
def test_embed_logreg_embeddings_are_normalized(embed_clf, data):
    texts, labels = data
    e = embed_clf.embed(texts)
    assert e.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # cosine geometry is meaningful: same-intent tickets are closer than different-intent ones
    y = np.array(labels)
    sims = e @ e.T
    same = (y[:, None] == y[None, :]) & ~np.eye(len(y), dtype=bool)
    assert sims[same].mean() > sims[y[:, None] != y[None, :]].mean() + 0.1


@pytest.mark.slow
def test_embed_logreg_records_custom_local_encoder(data, tmp_path):
    from ticket_triage.models.encoder import default_encoder_path

    texts, labels = data
    clf = build_classifier("embed_logreg", encoder=default_encoder_path(), C=1.0).fit(texts, labels, progress=False)
    out = clf.save(tmp_path / "clf")
    assert json.loads((out / META_FILE).read_text())["params"]["encoder"] == str(Path(default_encoder_path()).resolve())
    assert np.allclose(load_classifier(out).predict_proba(texts[:4]), clf.predict_proba(texts[:4]), atol=1e-6)


@pytest.mark.slow
def test_embed_logreg_refuses_untrusted_head(embed_clf, tmp_path):
    from ticket_triage.models.safe_io import UntrustedTypeError
    from helpers import tamper

    out = embed_clf.save(tmp_path / "clf")
    tamper(out / "head.npz", "sklearn.preprocessing._function_transformer.FunctionTransformer")
    with pytest.raises(UntrustedTypeError):
        load_classifier(out)


@pytest.mark.slow
def test_default_ensemble_fits_roundtrips_and_embeds(data, tmp_path):
    cfg = yaml.safe_load((ROOT / "conf" / "model" / "ensemble.yaml").read_text())
    cfg.pop("family")
    texts, labels = data
    ens = build_classifier("ensemble", **cfg).fit(texts, labels, progress=False)
    assert [m.family for m in ens.members] == ["embed_logreg", "tfidf_logreg"]
    check_probs(ens, texts)
    e = ens.embed(texts[:3])
    np.testing.assert_allclose(e, ens.members[0].embed(texts[:3]))
    check_roundtrip(ens, texts, tmp_path)


@pytest.mark.slow
def test_setfit_fits_roundtrips_and_is_deterministic(data, tmp_path):
    texts, labels = data
    clf = build_classifier("setfit", **FAST["setfit"]).fit(texts, labels, progress=False)
    assert clf.labels == sorted(set(labels))
    p = check_probs(clf, texts)
    assert np.mean(np.array(clf.labels)[p.argmax(1)] == np.array(labels)) >= 0.9
    check_roundtrip(clf, texts, tmp_path)
    assert (tmp_path / "clf" / "body" / "model.safetensors").is_file()
    assert (tmp_path / "clf" / "head.npz").is_file()
    e = clf.embed(texts[:3])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    again = build_classifier("setfit", **FAST["setfit"]).fit(texts, labels, progress=False)
    assert np.allclose(again.predict_proba(texts[:8]), p[:8], atol=1e-6)


@pytest.mark.slow
def test_transformer_fits_roundtrips_and_is_deterministic(data, tmp_path):
    texts, labels = data
    clf = build_classifier("transformer", **FAST["transformer"]).fit(texts, labels, progress=False)
    assert clf.labels == sorted(set(labels))
    p = check_probs(clf, texts)
    check_roundtrip(clf, texts, tmp_path)
    saved = tmp_path / "clf" / "model"
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
    assert json.loads((saved / "config.json").read_text())["id2label"]["0"] == clf.labels[0]
    e = clf.embed(texts[:3])
    assert e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    again = build_classifier("transformer", **FAST["transformer"]).fit(texts, labels, progress=False)
    assert np.allclose(again.predict_proba(texts[:8]), p[:8], atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family, line", [("setfit", "setfit contrastive: "), ("transformer", "fine-tuning: ")])
def test_fine_tuning_logs_progress_off_a_terminal(family, line, data, caplog, monkeypatch):
    """In a log (dvc repro > train.log, CI) fine-tuning writes periodic progress lines: SetFit's
    own bar only draws on a terminal, so a silent contrastive phase would hide minutes of work."""
    import logging
    import sys

    texts, labels = data
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setenv("TRIAGE_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="ticket_triage")
    clf = build_classifier(family, **FAST[family]).fit(texts, labels, progress=True)
    lines = [m for m in caplog.messages if m.startswith(line)]
    steps = clf.train_info["steps"]
    assert steps >= 2 and len(lines) >= 2, caplog.messages
    assert lines[-1].endswith("(done)") and f"{steps}/" in lines[-1]


# --------------------------------------------------------------------------------------------
# fine-tuned encoder families: ONNX serving, budget stop, early stopping (ticket_triage.models.finetune)
@pytest.mark.slow
def test_transformer_onnx_int8_backend_carries_the_encoder(data, tmp_path):
    texts, labels = data
    clf = build_classifier("transformer", **FAST["transformer"], backend="onnx-int8").fit(texts, labels, progress=False)
    p = check_probs(clf, texts)
    check_roundtrip(clf, texts, tmp_path)
    onnx_file = tmp_path / "clf" / "model" / "onnx-int8" / "model.onnx"
    assert onnx_file.is_file()  # the bundle carries the exported encoder: no export at load
    mtime = onnx_file.stat().st_mtime_ns
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.runner is not None and loaded.model is None  # served without torch
    assert onnx_file.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(loaded.predict_proba(texts), p)
    e = loaded.embed(texts[:4])
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(e, clf.embed(texts[:4]))
    # the int8 encoder is the fine-tuned one, not the frozen MiniLM
    from ticket_triage.models.encoder import encode, load_encoder

    frozen = encode(texts[:4], load_encoder("default", "cpu", "onnx-int8"), normalize=True, progress=False)
    assert not np.allclose(frozen, e, atol=1e-3)


@pytest.mark.slow
def test_transformer_budget_stop_keeps_the_best_checkpoint(data, tmp_path):
    texts, labels = data
    clf = build_classifier("transformer", batch_size=4, max_length=32, epochs=50,
                           max_train_minutes=1e-4).fit(texts, labels, progress=False)
    info = clf.train_info
    assert info["stopped"] == "budget"
    assert info["steps"] < info["planned_steps"]
    assert info["best_step"] == info["history"][-1][0] and info["best_val_macro_f1"] is not None
    check_probs(clf, texts)
    check_roundtrip(clf, texts, tmp_path)
    assert json.loads((tmp_path / "clf" / "train_info.json").read_text())["stopped"] == "budget"


@pytest.mark.slow
def test_transformer_early_stopping_on_validation_macro_f1(data):
    texts, labels = data
    # learning rates of 0: the validation score cannot improve, so the second evaluation stops it
    clf = build_classifier("transformer", batch_size=4, max_length=32, epochs=20, eval_every=1, patience=1,
                           learning_rate=0.0, head_learning_rate=0.0, max_train_minutes=0)
    clf.fit(texts[:40], labels[:40], progress=False, validation=(texts[40:], labels[40:]))
    info = clf.train_info
    assert info["stopped"] == "early_stopping"
    assert info["steps"] == 2 and info["best_step"] == 1
    assert info["val_examples"] == 8 and info["train_examples"] == 40


@pytest.mark.slow
def test_setfit_budget_stop_and_onnx_backend(data, tmp_path):
    texts, labels = data
    clf = build_classifier("setfit", batch_size=4, num_iterations=5, max_train_minutes=1e-4,
                           backend="onnx").fit(texts, labels, progress=False)
    info = clf.train_info
    assert info["stopped"] == "budget" and info["steps"] < info["planned_steps"]
    assert info["val_examples"] > 0 and info["best_val_macro_f1"] is not None
    check_probs(clf, texts)
    check_roundtrip(clf, texts, tmp_path)
    assert (tmp_path / "clf" / "body" / "onnx" / "model.onnx").is_file()


@pytest.mark.slow
def test_fine_tuned_encoder_bundle_uses_its_embeddings(tmp_path, base_params, small_rows):
    """A fine-tuned transformer served through onnx-int8: the bundle carries the encoder, the
    neighbours (explanations) and the out-of-scope score use its embeddings, and the scorer is
    chosen on the known out-of-scope validation tickets."""
    import copy

    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    params = copy.deepcopy(base_params)
    params["thresholds"].update(tune=False, cross_fit_folds=0)
    rows = copy.deepcopy(small_rows)
    clf = build_classifier("transformer", max_steps=4, batch_size=8, learning_rate=1e-4, backend="onnx-int8")
    clf.fit([r["text"] for r in rows[:40]], [r["topic"] for r in rows[:40]], progress=False,
            validation=([r["text"] for r in rows[40:]], [r["topic"] for r in rows[40:]]))
    oos = ["what is the weather like on mars tomorrow", "recommend a good pasta recipe with tomatoes",
           "who won the football world cup in 1998", "translate good morning into japanese"]
    bundle = build_bundle(clf, rows[:40], rows[40:], params, tmp_path / "b", oos_texts=oos)
    assert (bundle / "classifier" / "model" / "onnx-int8" / "model.onnx").is_file()
    ood = json.loads((bundle / "policy.json").read_text())["ood"]
    assert set(ood["method_auroc"]) == {"knn", "mahalanobis"}
    assert ood["method"] == max(ood["method_auroc"], key=lambda m: (ood["method_auroc"][m], m == "knn"))
    emb = np.load(bundle / "neighbours.npz")["emb"]
    np.testing.assert_allclose(emb, clf.embed([r["text"] for r in rows[:40]]), atol=1e-6)
    tri = Triage.load(bundle)
    assert tri.ood.method == ood["method"]
    ds = tri.decide([{"text": r["text"]} for r in rows[40:]] + [{"subject": "", "body": t} for t in oos])
    assert len(ds) == 12 and all(d.band in ("auto_route", "draft", "review") for d in ds)
    vt = [r["text"] for r in rows[40:]]
    # int8 activations are quantized per batch, so compare the same batch, uncached on both sides
    from ticket_triage.models.encoder import EMBEDDING_CACHE

    EMBEDDING_CACHE.clear()
    served = tri.topic_proba(vt, calibrated=False)
    EMBEDDING_CACHE.clear()
    np.testing.assert_allclose(served, clf.predict_proba(vt), atol=1e-9)


@pytest.mark.slow
def test_fine_tuned_family_cross_fits_when_asked(tmp_path, base_params, small_rows, monkeypatch):
    """thresholds.cross_fit_fine_tuned: each fold fine-tunes a fresh transformer from the
    pretrained weights on the other folds only, and the bundle tunes its thresholds on
    validation plus every training ticket's out-of-fold score; off, validation alone."""
    import copy

    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models.transformer import TransformerClassifier

    params = copy.deepcopy(base_params)
    params["thresholds"].update(tune=True, cross_fit_folds=3, min_support=5, cross_fit_fine_tuned=True)
    rows = copy.deepcopy(small_rows)
    train, val = rows[:36], rows[36:]
    clf = build_classifier("transformer", **FAST["transformer"])
    clf.fit([r["text"] for r in train], [r["topic"] for r in train], progress=False)
    fitted: list[int] = []
    real_fit = TransformerClassifier.fit

    def counting_fit(self, texts, labels, *a, **kw):
        fitted.append(len(texts))
        return real_fit(self, texts, labels, *a, **kw)

    monkeypatch.setattr(TransformerClassifier, "fit", counting_fit)
    th = json.loads((build_bundle(clf, train, val, params, tmp_path / "cf") / "policy.json").read_text())
    info = th["thresholds"]["info"]
    assert info["cross_fit"] == "3 folds" and info["n_cross_fit"] == len(train)
    assert info["n_validation"] == len(train) + len(val)
    assert fitted == [24, 24, 24]  # one fresh fine-tune per fold, on the other two folds
    fitted.clear()
    params["thresholds"]["cross_fit_fine_tuned"] = False
    th = json.loads((build_bundle(clf, train, val, params, tmp_path / "val") / "policy.json").read_text())
    assert "not cheap to refit" in th["thresholds"]["info"]["cross_fit"]
    assert th["thresholds"]["info"]["n_validation"] == len(val) and fitted == []
