"""ticket_triage.models.safe_io: pickle-free, linear-size persistence of the scikit-learn parts
(TF-IDF pipelines, logistic-regression heads, the secondary tagger, the urgency model)."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import tamper
from ticket_triage.models.safe_io import ALLOWED, UntrustedTypeError, dump_estimator, load_estimator

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "tickets_small.csv"


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    with FIXTURE.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [f"{r['subject']}. {r['body']}" for r in rows], [r["tags"] for r in rows]


def _tfidf(max_features: int | None = None):
    from ticket_triage.models.tfidf_logreg import TfidfLogReg

    return TfidfLogReg(**({"max_features": max_features} if max_features else {}))


def test_tfidf_pipeline_roundtrip_is_exact_and_pickle_free(data, tmp_path):
    texts, labels = data
    clf = _tfidf().fit(texts, labels, progress=False)
    f = dump_estimator(clf.pipeline, tmp_path / "m.npz")
    with np.load(f, allow_pickle=False) as z:  # every member is a plain array
        assert all(z[n].dtype != object for n in z.files)
    back = load_estimator(f)
    unseen = ["the app crashes when I upload a file", "Rechnung doppelt bezahlt", "", "🙂 ünïcödé"]
    np.testing.assert_array_equal(back.predict_proba(texts + unseen), clf.pipeline.predict_proba(texts + unseen))
    assert list(back.classes_) == list(clf.pipeline.classes_)
    word = back.named_steps["features"].transformer_list[0][1]
    assert word.vocabulary_ == clf.pipeline.named_steps["features"].transformer_list[0][1].vocabulary_


def test_archive_members_do_not_grow_with_the_vocabulary(data, tmp_path):
    """Linear cost by construction: the vocabulary is one blob, not one archive entry per term."""
    texts, labels = data
    small = dump_estimator(_tfidf(max_features=50).fit(texts, labels, progress=False).pipeline, tmp_path / "s.npz")
    big = _tfidf().fit(texts * 3 + [t[::-1] for t in texts], labels * 4, progress=False)
    vocab = len(big.pipeline.named_steps["features"].transformer_list[1][1].vocabulary_)
    assert vocab > 2000
    large = dump_estimator(big.pipeline, tmp_path / "l.npz")
    with zipfile.ZipFile(small) as a, zipfile.ZipFile(large) as b:
        assert len(a.namelist()) == len(b.namelist()) < 40


def test_secondary_and_urgency_roundtrip(data, tmp_path):
    from ticket_triage.decision.secondary import SecondaryTagger
    from ticket_triage.decision.urgency import UrgencyModel

    texts, labels = data
    tags = [[y] + (["vip"] if i % 3 == 0 else []) for i, y in enumerate(labels)]
    tagger = SecondaryTagger(min_count=5).fit(texts, tags)
    again = SecondaryTagger.load(tagger.save(tmp_path / "sec"))
    assert (tmp_path / "sec" / "secondary.npz").is_file()
    assert again.predict(texts) == tagger.predict(texts)
    np.testing.assert_array_equal(again.pipeline.predict_proba(texts), tagger.pipeline.predict_proba(texts))
    urg = UrgencyModel().fit(texts, ["high" if i % 2 else "low" for i in range(len(texts))])
    back = UrgencyModel.load(urg.save(tmp_path / "urg"))
    assert (tmp_path / "urg" / "urgency.npz").is_file()
    np.testing.assert_array_equal(back.predict_proba(texts), urg.predict_proba(texts))


def test_untrusted_type_is_refused_before_anything_is_built(data, tmp_path):
    texts, labels = data
    f = dump_estimator(_tfidf().fit(texts, labels, progress=False).pipeline, tmp_path / "m.npz")
    tamper(f, "os.system")
    with pytest.raises(UntrustedTypeError, match="os.system"):
        load_estimator(f)
    assert "os.system" not in ALLOWED


def test_unsupported_objects_are_refused_at_save(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    with pytest.raises(TypeError, match="FunctionTransformer"):
        dump_estimator(FunctionTransformer(func=len), tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temporary left behind


def test_broken_files_give_a_clear_error(data, tmp_path):
    texts, labels = data
    f = dump_estimator(_tfidf().fit(texts, labels, progress=False).pipeline, tmp_path / "m.npz")
    raw = f.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="save the model again|not a ticket-triage model"):
        load_estimator(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="no manifest"):
        load_estimator(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="save it again"):
        load_estimator(tmp_path / "missing.npz")
    m = json.loads(np.load(f)["__manifest__"].tobytes())
    assert m["format"].startswith("ticket-triage-sklearn/")


@pytest.mark.parametrize("items", [[], [""], ["a\x00b"], ["a", "b\x00", ""], ["x", "ü", "🙂", "a b"]])
def test_string_lists_survive_any_content(items, tmp_path):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression()
    lr.classes_ = np.array(items, dtype=object)
    lr.vocab_like_ = {s: i for i, s in enumerate(items)}
    back = load_estimator(dump_estimator(lr, tmp_path / "s.npz"))
    assert list(back.classes_) == items and back.classes_.dtype == object
    assert back.vocab_like_ == lr.vocab_like_
