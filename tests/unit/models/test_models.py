"""Classifier families behind one interface (ticket_triage.models).

TF-IDF and the encoder plumbing are fast and unmarked; the encoder-based families train a
real MiniLM for a handful of steps and are marked slow.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from ticket_triage.models import FAMILIES, TrainingDataError, build_classifier, load_classifier
from helpers import FAST, check_probs, check_roundtrip, small_tickets

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "tickets_small.csv"

# an ensemble with no encoder: exercises the combination and persistence in milliseconds
TWO_TFIDF = [{"family": "tfidf_logreg", "C": 10.0}, {"family": "tfidf_logreg", "C": 0.5, "char_ngrams": [3, 4]}]


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    return small_tickets()


# --------------------------------------------------------------------------------------------
# the fixture other contributors reuse
def test_fixture_shape():
    with FIXTURE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "created_at", "subject", "body", "tags"]
    assert len(rows) == 48
    assert len({r["id"] for r in rows}) == 48
    counts = {t: sum(r["tags"] == t for r in rows) for t in {r["tags"] for r in rows}}
    assert len(counts) == 4 and set(counts.values()) == {12}
    assert {r["created_at"][:7] for r in rows} == {"2025-01", "2025-02"}


# --------------------------------------------------------------------------------------------
# TF-IDF: fast
def test_tfidf_fits_and_predicts(data):
    texts, labels = data
    clf = build_classifier("tfidf_logreg").fit(texts, labels, progress=False)
    assert clf.labels == sorted(set(labels))
    p = check_probs(clf, texts)
    # column order == labels: the argmax names the training label on (easy) training data
    assert np.mean(np.array(clf.labels)[p.argmax(1)] == np.array(labels)) >= 0.95
    assert clf.predict(["my card was stolen, please block it"]) == ["lost_or_stolen_card"]
    assert clf.predict_proba([]).shape == (0, len(clf.labels))
    assert clf.embed(texts[:2]) is None


def test_tfidf_save_load_identical(data, tmp_path):
    texts, labels = data
    clf = build_classifier("tfidf_logreg").fit(texts, labels, progress=False)
    check_roundtrip(clf, texts, tmp_path)
    assert (tmp_path / "clf" / "model.npz").is_file()
    np.testing.assert_array_equal(load_classifier(tmp_path / "clf").predict_proba(texts), clf.predict_proba(texts))


def test_tfidf_deterministic_and_saga(data):
    texts, labels = data
    a = build_classifier("tfidf_logreg", solver="saga", max_iter=500, seed=3).fit(texts, labels, progress=False)
    b = build_classifier("tfidf_logreg", solver="saga", max_iter=500, seed=3).fit(texts, labels, progress=False)
    np.testing.assert_array_equal(a.predict_proba(texts), b.predict_proba(texts))


def test_tfidf_refuses_untrusted_type(data, tmp_path):
    from ticket_triage.models.safe_io import UntrustedTypeError
    from helpers import tamper

    texts, labels = data
    out = build_classifier("tfidf_logreg").fit(texts, labels, progress=False).save(tmp_path / "clf")
    # a tampered file that names a type able to call an arbitrary function: must not load
    tamper(out / "model.npz", "sklearn.preprocessing._function_transformer.FunctionTransformer")
    with pytest.raises(UntrustedTypeError, match="FunctionTransformer"):
        load_classifier(out)


def test_tfidf_legacy_skops_file_loads_with_trusted_types_only(data, tmp_path):
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException
    from sklearn.preprocessing import FunctionTransformer

    texts, labels = data
    clf = build_classifier("tfidf_logreg").fit(texts, labels, progress=False)
    out = clf.save(tmp_path / "clf")
    (out / "model.npz").unlink()
    sio.dump(clf.pipeline, out / "model.skops")  # as versions before safe_io saved it
    np.testing.assert_array_equal(load_classifier(out).predict_proba(texts), clf.predict_proba(texts))
    sio.dump(FunctionTransformer(func=os.getcwd), out / "model.skops")
    with pytest.raises(UntrustedTypesFoundException):
        load_classifier(out)


# --------------------------------------------------------------------------------------------
# ensemble: fast with two TF-IDF members
def test_ensemble_is_the_geometric_mean_of_its_members(data, tmp_path):
    texts, labels = data
    ens = build_classifier("ensemble", members=TWO_TFIDF).fit(texts, labels, progress=False)
    a, b = ens.members
    assert ens.labels == a.labels == b.labels == sorted(set(labels))
    p = check_probs(ens, texts)
    g = np.sqrt(a.predict_proba(texts) * b.predict_proba(texts))
    np.testing.assert_allclose(p, g / g.sum(axis=1, keepdims=True), rtol=1e-9)
    mean = build_classifier("ensemble", members=TWO_TFIDF, combine="mean", weights=[3, 1]).fit(texts, labels, progress=False)
    ma, mb = mean.members
    np.testing.assert_allclose(mean.predict_proba(texts),
                               0.75 * ma.predict_proba(texts) + 0.25 * mb.predict_proba(texts), rtol=1e-9)
    assert ens.cheap_refit and ens.embed(texts[:2]) is None
    check_roundtrip(ens, texts, tmp_path)
    assert (tmp_path / "clf" / "members" / "1" / "model.npz").is_file()
    # a fresh copy has the same configuration and no weights
    fresh = ens.fresh()
    assert fresh.params == ens.params and not fresh.labels


def test_ensemble_config_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="at least two members"):
        build_classifier("ensemble", members=TWO_TFIDF[:1])
    with pytest.raises(ValueError, match="combine must be one of"):
        build_classifier("ensemble", members=TWO_TFIDF, combine="max")
    with pytest.raises(ValueError, match="weights must be 2"):
        build_classifier("ensemble", members=TWO_TFIDF, weights=[1])
    with pytest.raises(TypeError, match="max_featurez"):
        build_classifier("ensemble", members=[{"family": "tfidf_logreg", "max_featurez": 1}, TWO_TFIDF[0]])


def test_unknown_hyperparameter_is_named():
    with pytest.raises(TypeError, match="max_featurez"):
        build_classifier("tfidf_logreg", max_featurez=10)


def test_predict_before_fit_says_what_to_do():
    with pytest.raises(RuntimeError, match="not trained"):
        build_classifier("tfidf_logreg").predict_proba(["x"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_conf_model_yaml_keys_are_constructor_kwargs(family):
    cfg = yaml.safe_load((ROOT / "conf" / "model" / f"{family}.yaml").read_text())
    assert cfg.pop("family") == family
    clf = build_classifier(family, **cfg)
    assert clf.family == family
    assert clf.params["seed"] == cfg.get("seed", 42)
    for k, v in cfg.items():
        if k not in ("encoder", "pretrained"):
            assert clf.params[k] == v


# training-data errors are raised before any model is loaded, so they are cheap for all families
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_empty_data_error(family):
    with pytest.raises(TrainingDataError, match="no training data"):
        build_classifier(family, **FAST[family]).fit([], [], progress=False)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_too_few_examples_error(family, data):
    texts, labels = data
    texts, labels = texts[:10] + ["a brand new problem"], labels[:10] + ["rare_intent"]
    with pytest.raises(TrainingDataError, match=r"rare_intent \(1\)"):
        build_classifier(family, **FAST[family]).fit(texts, labels, progress=False)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_single_label_error(family):
    with pytest.raises(TrainingDataError, match="only one label"):
        build_classifier(family, **FAST[family]).fit(["a", "b", "c"], ["x", "x", "x"], progress=False)


def test_load_classifier_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved ticket-triage classifier"):
        load_classifier(tmp_path)


# --------------------------------------------------------------------------------------------
# encoder plumbing: fast (nothing is loaded)
def test_default_encoder_is_packaged_minilm():
    from ticket_triage.models.encoder import default_encoder_path, resolve_encoder

    path = Path(default_encoder_path())
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 384
    assert resolve_encoder("default") == str(path)


def test_resolve_encoder_local_dir_and_missing_path(tmp_path):
    from ticket_triage.models.encoder import EncoderNotAvailable, resolve_encoder

    assert resolve_encoder(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(EncoderNotAvailable, match="does not exist"):
        resolve_encoder(str(tmp_path / "nope"))


def test_resolve_hub_name_offline_uncached_asks_for_local_path(monkeypatch, tmp_path):
    from ticket_triage.models.encoder import EncoderNotAvailable, resolve_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(EncoderNotAvailable, match="local model directory"):
        resolve_encoder("some-org/not-cached-encoder")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_encoder("distilbert-base-uncased") == "distilbert-base-uncased"


def test_resolve_device(monkeypatch):
    import torch

    from ticket_triage.models.encoder import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda", fallback=True) == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


def test_torch_threads_respect_cpus(monkeypatch):
    from ticket_triage.models.encoder import configure_torch_threads

    monkeypatch.setenv("TRIAGE_TORCH_THREADS", "64")
    assert configure_torch_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("TRIAGE_TORCH_THREADS", "1")
    assert configure_torch_threads() == 1


def test_finetune_helpers():
    from ticket_triage.models.finetune import (Budget, EarlyStopping, length_grouped_batches,
                                               max_length_from_data, split_validation)

    lengths = list(np.random.default_rng(0).integers(1, 300, size=203))
    batches = length_grouped_batches(lengths, 8, np.random.default_rng(1), mega=5)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert all(len(b) <= 8 for b in batches)
    # within a batch, lengths are sorted (grouped), and grouping cuts padding against random batches
    assert all(lengths[b[j]] >= lengths[b[j + 1]] for b in batches for j in range(len(b) - 1))
    pad = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    rnd = np.random.default_rng(1).permutation(203)
    pad_rnd = sum(len(rnd[s:s + 8]) * max(lengths[i] for i in rnd[s:s + 8]) for s in range(0, 203, 8))
    assert pad < 0.8 * pad_rnd

    x = [f"t{i}" for i in range(40)]
    y = ["a", "b"] * 20
    tx, ty, vx, vy = split_validation(x, y, None, 0.2, seed=0)
    assert len(vx) == 8 and sorted(vy) == ["a"] * 4 + ["b"] * 4 and not set(tx) & set(vx)
    tx, ty, vx, vy = split_validation(x, y, (["u", "v"], ["a", "zz"]), 0.2, seed=0)
    assert (tx, vx, vy) == (x, ["u"], ["a"])  # a given validation set: unseen labels dropped
    assert split_validation(x[:6], y[:6], None, 0.2, seed=0)[2] == []  # too small to hold out

    class Tok:
        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [list(range(min(len(t.split()), max_length))) for t in texts]}

    texts = ["w " * n for n in range(1, 101)]
    assert max_length_from_data(Tok(), texts, cap=256) == 96
    assert max_length_from_data(Tok(), texts, cap=64) == 64
    assert max_length_from_data(Tok(), ["a b"], cap=256) == 32

    assert not Budget(0).expired() and not Budget(None).expired() and Budget(1e-9).expired()

    import torch

    m = torch.nn.Linear(2, 2)
    es = EarlyStopping(patience=2)
    assert es.update(0.5, 1, m)
    best = m.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    assert not es.update(0.4, 2, m) and not es.should_stop
    assert not es.update(0.5, 3, m) and es.should_stop
    es.restore(m)
    assert torch.equal(m.weight, best) and es.best_step == 1


def test_sweep_full_candidates_take_the_training_device():
    from ticket_triage.config import compose
    from ticket_triage.training import resolve_candidates

    params = compose(["sweep=full"])
    fams = {c.family: c.model for c in resolve_candidates(params)}
    assert {"setfit", "transformer", "embed_logreg", "tfidf_logreg", "ensemble"} <= set(fams)
    assert fams["setfit"]["device"] == "cpu" and fams["transformer"]["max_train_minutes"] > 0
    params.setdefault("train", {})["device"] = "cuda"
    fams = {c.family: c.model for c in resolve_candidates(params)}
    assert fams["setfit"]["device"] == "cuda" and fams["transformer"]["device"] == "cuda"
    assert fams["embed_logreg"].get("device", "cpu") == "cpu"  # frozen families keep theirs
    combined = next(c.model for c in resolve_candidates(params) if c.name.startswith("transformer_tfidf"))
    assert [m.get("device") for m in combined["members"]] == ["cuda", None]  # its fine-tuned member too


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml")))
def test_every_conf_model_builds(name):
    """Every model config, including those named after what they combine (transformer_tfidf is an
    ensemble), builds its classifier with the keys as given (members included)."""
    from ticket_triage.config import model_config

    cfg = model_config(name, root=ROOT)
    clf = build_classifier(cfg.pop("family"), **cfg)
    for k, v in cfg.items():
        if k not in ("encoder", "pretrained"):
            assert clf.params[k] == v
    for member, given in zip(getattr(clf, "members", []), cfg.get("members", [])):
        assert member.family == given["family"]
        for k, v in given.items():
            if k not in ("family", "encoder", "pretrained"):
                assert member.params[k] == v, (name, member.family, k)
