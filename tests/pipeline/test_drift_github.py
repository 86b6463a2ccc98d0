"""Drift on real, dated tickets (GitHub issues): an injected shift is flagged, random halves are not.

Reference frames are scored out of sample (a model fitted on one part of the reference
period scores the rest), as in production where the reference is the validation split.
Embeddings are cheap TF-IDF + SVD vectors fitted on the model's training part.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ticket_triage.monitoring.drift import DriftConfig, drift_report

DATA = Path("/work/shared/datasets/github-issues/train.csv")
pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"{DATA} not available (shared datasets not mounted)")
CFG = DriftConfig.from_dict({"max_threads": 1, "seed": 0})

NEW = ["charged twice for my subscription renewal, please refund the invoice",
       "invoice shows the wrong subscription tier after renewal; need a refund of the billing difference",
       "refund request: the renewal billing charged my card twice, see invoice",
       "cannot download the invoice pdf for billing; subscription refund still pending"]
EXTRA = ["account", "yesterday", "team plan", "credit card", "annual", "monthly", "receipt", "VAT number"]


@pytest.fixture(scope="module")
def issues() -> pd.DataFrame:
    df = pd.read_csv(DATA)
    df["text"] = (df["title"].fillna("") + "\n" + df["body"].fillna("")).str.slice(0, 2000)
    df["id"] = [f"gh{i}" for i in range(len(df))]
    return df.sort_values("created_at").reset_index(drop=True)


def _injected(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [NEW[i % len(NEW)] + " " + " ".join(rng.choice(EXTRA, 3)) for i in range(n)]
    return pd.DataFrame({"id": [f"new{i}" for i in range(n)], "text": texts, "label": "question"})


def _score(fit: pd.DataFrame, reference: pd.DataFrame, recent: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        vec = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000)
        x = vec.fit_transform(fit["text"])
        clf = LogisticRegression(C=5.0, max_iter=300).fit(x, fit["label"])
        svd = TruncatedSVD(64, random_state=0).fit(x)

        def frame(d: pd.DataFrame) -> pd.DataFrame:
            xd = vec.transform(d["text"])
            p = clf.predict_proba(xd)
            return pd.DataFrame({"id": d["id"].to_numpy(), "text": d["text"].to_numpy(),
                                 "predicted": clf.classes_[p.argmax(axis=1)], "confidence": p.max(axis=1),
                                 "out_of_scope": p.max(axis=1) < 0.45, "embedding": list(svd.transform(xd))})

        return frame(reference), frame(recent)


def test_injected_shift_is_flagged(issues):
    old, new = issues.iloc[:300], issues.iloc[300:]
    perm = np.random.default_rng(0).permutation(len(old))
    fit, reference = old.iloc[perm[:150]], old.iloc[perm[150:]]
    recent = pd.concat([new[new["label"] == "bug"], _injected(40)], ignore_index=True)
    ref_frame, recent_frame = _score(fit, reference, recent)
    t = time.perf_counter()
    rep = drift_report(ref_frame, recent_frame, CFG)
    print(f"drift_report on {len(ref_frame)} + {len(recent_frame)} rows: {time.perf_counter() - t:.2f}s; "
          f"{rep.status}: {rep.reason}")
    assert rep.status == "retrain recommended"
    assert {"label_shift", "embedding", "new_vocabulary"} <= set(rep.fired)
    shift = rep.signal("label_shift")
    assert shift.value >= 0.2 and shift.detail["p_value"] < 1e-6
    terms = {d["term"] for d in rep.signal("new_vocabulary").detail["terms"]}
    assert {"invoice", "refund", "subscription"} <= terms
    injected = [c for c in rep.new_term_clusters if {"invoice", "refund"} & set(c.emerging_terms)]
    assert injected, f"no cluster of the injected tickets among {[c.terms for c in rep.new_term_clusters]}"
    assert all(e["id"].startswith("new") for e in injected[0].examples)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_halves_of_one_period_do_not_drift(issues, seed):
    perm = np.random.default_rng(seed).permutation(len(issues))
    fit, reference, recent = (issues.iloc[perm[i::3]] for i in range(3))
    ref_frame, recent_frame = _score(fit, reference, recent)
    rep = drift_report(ref_frame, recent_frame, CFG)
    assert rep.fired == [], rep.to_dict()["signals"]
    assert rep.status == "ok" and rep.new_term_clusters == []


@pytest.mark.slow
def test_drift_report_runtime_on_10k_rows():
    """10,000 reference + 10,000 recent rows (synthetic Zipf texts, 384-d embeddings) within budget."""
    rng = np.random.default_rng(0)
    vocab = np.array([f"term{i}" for i in range(20000)])
    p = 1 / np.arange(1, len(vocab) + 1) ** 1.05
    p /= p.sum()

    def frame(n: int, shift: float) -> pd.DataFrame:
        words = rng.choice(len(vocab), (n, 60), p=p)
        conf = rng.beta(5, 2 - shift, n)
        return pd.DataFrame({"id": [f"t{i}" for i in range(n)], "text": [" ".join(vocab[w]) for w in words],
                             "predicted": rng.choice([f"topic{i}" for i in range(30)], n),
                             "confidence": conf, "out_of_scope": conf < 0.4,
                             "embedding": list(rng.normal(shift, 1.0, (n, 384)))})

    ref, recent = frame(10_000, 0.0), frame(10_000, 0.5)
    t = time.perf_counter()
    rep = drift_report(ref, recent, CFG)
    elapsed = time.perf_counter() - t
    print(f"drift_report on 10,000 + 10,000 rows: {elapsed:.1f}s ({rep.status})")
    assert "embedding" in rep.fired
    assert elapsed < 120
