"""Drift without labels: is recent traffic still the traffic the model was trained on?

``drift_report(train_frame, recent_frame, cfg)`` compares a reference frame (training tickets,
scored by the model) with recent traffic and computes five signals, each with a threshold
from config (``monitor.drift`` in params.yaml):

============== ===================================================================== ==========
signal         value                                                                 fires when
============== ===================================================================== ==========
label_shift    Jensen-Shannon distance (base 2) between predicted-topic shares;      value >= js_threshold
               PSI and a chi-square p-value in ``detail``                            and p < alpha
confidence     Kolmogorov-Smirnov statistic on top-class confidence                  value >= ks_threshold
                                                                                     and p < alpha
oos_rate       increase of the out-of-scope share (recent - train)                   value >= max_increase
                                                                                     and p < alpha (z-test)
embedding      cross-validated AUC of a logistic-regression domain classifier        value >= auc_threshold
               (train vs recent, each subsampled to <= max_samples); one-sided       and p < alpha
               Mann-Whitney p-value on its out-of-fold scores
new_vocabulary number of emerging terms: document frequency much higher in recent    value >= min_terms
               traffic (log-odds ratio with an informative Beta prior, z-score)
============== ===================================================================== ==========

Status rule: ``retrain recommended`` when at least ``retrain_min_signals`` (default 2) signals
fire -- e.g. embedding drift together with a label shift; ``watch`` when exactly one fires;
``ok`` otherwise. A signal whose columns are missing is reported as skipped and never fires.

Emerging terms are then used to propose candidate new categories: the recent tickets that
are out-of-scope or low-confidence, plus those that use an emerging term (a new kind of
ticket is often confidently forced into an old topic), are clustered (TF-IDF + KMeans, k by
silhouette) and the clusters in which most tickets carry an emerging term are returned with
their terms and example tickets.

Frame columns (all optional except as each signal needs them): ``id``, ``text``,
``predicted`` (predicted topic; in the training frame ``label`` is used when ``predicted`` is
absent), ``confidence`` (top-class probability), ``out_of_scope`` (bool), ``embedding``
(one vector per row; or pass ``train_embeddings`` / ``recent_embeddings``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

STATUSES: tuple[str, ...] = ("ok", "watch", "retrain recommended")


# -- configuration ------------------------------------------------------------------------------
@dataclass
class LabelShiftConfig:
    js_threshold: float = 0.1


@dataclass
class ConfidenceShiftConfig:
    ks_threshold: float = 0.1


@dataclass
class OOSRateConfig:
    max_increase: float = 0.05


@dataclass
class EmbeddingDriftConfig:
    auc_threshold: float = 0.65
    max_samples: int = 2000
    folds: int = 5


@dataclass
class NewVocabularyConfig:
    z_threshold: float = 4.0        # z-score of the log-odds ratio a term must reach
    min_df: int = 5                 # ... and at least this many recent tickets must contain it
    min_terms: int = 5              # the signal fires with this many emerging terms
    prior_strength: float = 100.0   # Beta prior in pseudo-documents, centred on the pooled rate
    max_docs: int = 5000            # per side, subsampled beyond this
    low_confidence: float = 0.5     # recent tickets below this confidence are clustered
    max_clusters: int = 8
    min_cluster_size: int = 3
    min_novelty: float = 0.5        # share of a cluster's tickets with an emerging term
    max_cluster_docs: int = 1000
    examples: int = 3
    top_terms: int = 8


@dataclass
class DriftConfig:
    """Thresholds for every drift signal (``monitor.drift``)."""

    alpha: float = 0.01
    seed: int = 0
    retrain_min_signals: int = 2
    max_threads: int | None = None   # cap BLAS/OpenMP threads (1 is fastest on a busy 2-core box)
    label_shift: LabelShiftConfig = field(default_factory=LabelShiftConfig)
    confidence_shift: ConfidenceShiftConfig = field(default_factory=ConfidenceShiftConfig)
    oos_rate: OOSRateConfig = field(default_factory=OOSRateConfig)
    embedding: EmbeddingDriftConfig = field(default_factory=EmbeddingDriftConfig)
    new_vocabulary: NewVocabularyConfig = field(default_factory=NewVocabularyConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DriftConfig":
        return _build(cls, dict(d or {}), "monitor.drift")


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    from ticket_triage.config import reject_unknown

    known = {f.name: f for f in fields(cls)}
    reject_unknown(d, known, where)
    kw: dict[str, Any] = {}
    for name, value in d.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None  # type: ignore[misc]
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{name} must be a mapping, got {type(value).__name__}")
            kw[name] = _build(type(default), value, f"{where}.{name}")
        else:
            kw[name] = value
    return cls(**kw)


# -- report objects ---------------------------------------------------------------------------
@dataclass
class Signal:
    name: str
    value: float
    threshold: float
    fired: bool
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> bool:
        return "skipped" in self.detail


@dataclass
class NewTermCluster:
    size: int
    novelty: float                  # share of the cluster's tickets containing an emerging term
    terms: list[str]                # top TF-IDF terms of the cluster
    emerging_terms: list[str]       # emerging terms that occur in the cluster
    examples: list[dict[str, str]]  # [{"id", "text"}], closest to the centroid first


@dataclass
class DriftReport:
    signals: list[Signal]
    status: str
    reason: str
    new_term_clusters: list[NewTermCluster] = field(default_factory=list)
    n_train: int = 0
    n_recent: int = 0

    @property
    def fired(self) -> list[str]:
        return [s.name for s in self.signals if s.fired]

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(f"no drift signal {name!r}; have {[s.name for s in self.signals]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN becomes None)."""
        return _json_safe(asdict(self))


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _skipped(name: str, threshold: float, why: str) -> Signal:
    return Signal(name, float("nan"), threshold, False, {"skipped": why})


# -- the signals ------------------------------------------------------------------------------
def label_shift(train_labels: Sequence[Any], recent_labels: Sequence[Any], cfg: DriftConfig) -> Signal:
    """Shift in the predicted-topic distribution: JS distance, PSI, chi-square p-value."""
    from scipy.stats import chi2_contingency

    thr = cfg.label_shift.js_threshold
    a = pd.Series(list(train_labels), dtype=object).fillna("<none>").astype(str)
    b = pd.Series(list(recent_labels), dtype=object).fillna("<none>").astype(str)
    if a.empty or b.empty:
        return _skipped("label_shift", thr, "no predicted topics in one of the frames")
    cats = sorted(set(a) | set(b))
    ca = a.value_counts().reindex(cats, fill_value=0).to_numpy(float)
    cb = b.value_counts().reindex(cats, fill_value=0).to_numpy(float)
    pa, pb = ca / ca.sum(), cb / cb.sum()
    m = (pa + pb) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = lambda p: float(np.sum(np.where(p > 0, p * np.log2(p / m), 0.0)))  # noqa: E731
        js = math.sqrt(max(0.0, (kl(pa) + kl(pb)) / 2))
    eps = 1e-4
    qa, qb = np.clip(pa, eps, None), np.clip(pb, eps, None)
    psi = float(np.sum((qb - qa) * np.log(qb / qa)))
    p_value = 1.0 if len(cats) < 2 else float(chi2_contingency(np.vstack([ca, cb]))[1])
    movers = np.argsort(-np.abs(pb - pa))[:5]
    detail = {"psi": psi, "p_value": p_value,
              "top_movers": [{"label": cats[i], "train_share": float(pa[i]), "recent_share": float(pb[i])}
                             for i in movers]}
    return Signal("label_shift", js, thr, bool(js >= thr and p_value < cfg.alpha), detail)


def confidence_shift(train_conf: Sequence[float], recent_conf: Sequence[float], cfg: DriftConfig) -> Signal:
    """Two-sample Kolmogorov-Smirnov test on top-class confidence."""
    from scipy.stats import ks_2samp

    thr = cfg.confidence_shift.ks_threshold
    a = np.asarray(train_conf, dtype=float)
    b = np.asarray(recent_conf, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return _skipped("confidence", thr, "no confidences in one of the frames")
    res = ks_2samp(a, b)
    detail = {"p_value": float(res.pvalue), "train_mean": float(a.mean()), "recent_mean": float(b.mean()),
              "train_median": float(np.median(a)), "recent_median": float(np.median(b))}
    stat = float(res.statistic)
    return Signal("confidence", stat, thr, bool(stat >= thr and res.pvalue < cfg.alpha), detail)


def oos_rate_shift(train_oos: Sequence[bool], recent_oos: Sequence[bool], cfg: DriftConfig) -> Signal:
    """Increase of the out-of-scope share, with a one-sided two-proportion z-test."""
    from scipy.stats import norm

    thr = cfg.oos_rate.max_increase
    a = np.asarray(train_oos, dtype=float)
    b = np.asarray(recent_oos, dtype=float)
    if a.size == 0 or b.size == 0:
        return _skipped("oos_rate", thr, "no out-of-scope flags in one of the frames")
    ra, rb = a.mean(), b.mean()
    pooled = (a.sum() + b.sum()) / (a.size + b.size)
    se = math.sqrt(max(pooled * (1 - pooled) * (1 / a.size + 1 / b.size), 0.0))
    z = (rb - ra) / se if se > 0 else (0.0 if rb == ra else math.copysign(math.inf, rb - ra))
    p_value = float(norm.sf(z))
    inc = float(rb - ra)
    return Signal("oos_rate", inc, thr, bool(inc >= thr and p_value < cfg.alpha),
                  {"train_rate": float(ra), "recent_rate": float(rb), "p_value": p_value})


def embedding_drift(train_emb: np.ndarray, recent_emb: np.ndarray, cfg: DriftConfig) -> Signal:
    """Domain-classifier two-sample test: can a linear model tell training from recent tickets?

    Both sides are subsampled to the same size (at most ``embedding.max_samples``); the AUC
    is computed from out-of-fold scores of a standardised logistic regression; the p-value is
    a one-sided Mann-Whitney test of recent-vs-train out-of-fold scores (conservative under
    the null, where cross-validated AUC sits slightly below 0.5).
    """
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ec = cfg.embedding
    a, b = np.asarray(train_emb, dtype=float), np.asarray(recent_emb, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be 2-D with the same width, got {a.shape} and {b.shape}; "
                         "embed both frames with the same model")
    m = min(len(a), len(b), ec.max_samples)
    if m < max(ec.folds, 10):
        return _skipped("embedding", ec.auc_threshold, f"too few rows for a domain classifier ({m})")
    rng = np.random.default_rng(cfg.seed)
    a = a[rng.choice(len(a), m, replace=False)]
    b = b[rng.choice(len(b), m, replace=False)]
    x = np.vstack([a, b])
    y = np.r_[np.zeros(m, dtype=int), np.ones(m, dtype=int)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    cv = StratifiedKFold(n_splits=ec.folds, shuffle=True, random_state=cfg.seed)
    scores = cross_val_predict(clf, x, y, cv=cv, method="decision_function")
    res = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    auc = float(res.statistic / (m * m))
    return Signal("embedding", auc, ec.auc_threshold,
                  bool(auc >= ec.auc_threshold and res.pvalue < cfg.alpha),
                  {"p_value": float(res.pvalue), "n_per_side": int(m)})


def emerging_terms(train_texts: Sequence[str], recent_texts: Sequence[str], cfg: DriftConfig
                   ) -> tuple[pd.DataFrame, Any, Any]:
    """Terms whose document frequency is much higher in recent traffic.

    Log-odds ratio of "a ticket contains the term", recent vs train, each smoothed with a Beta
    prior of ``prior_strength`` pseudo-documents centred on the pooled rate; z = log-odds /
    its standard error. Returns a frame (term, recent_df, train_df, recent_rate, train_rate,
    log_odds, z) of the terms with z >= z_threshold and recent_df >= min_df, sorted by z;
    plus the fitted vectorizer and the recent binary document-term matrix.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    vc = cfg.new_vocabulary
    vec = CountVectorizer(binary=True, stop_words="english", lowercase=True,
                          token_pattern=r"(?u)\b[^\W\d_][\w\-]{2,}\b", min_df=2, max_df=0.5)
    try:
        vec.fit(list(train_texts) + list(recent_texts))
    except ValueError:  # empty vocabulary
        return pd.DataFrame(columns=["term", "recent_df", "train_df", "recent_rate", "train_rate",
                                     "log_odds", "z"]), None, None
    xa = vec.transform(train_texts)
    xb = vec.transform(recent_texts)
    da, db = len(train_texts), len(recent_texts)
    ya = np.asarray(xa.sum(axis=0)).ravel().astype(float)
    yb = np.asarray(xb.sum(axis=0)).ravel().astype(float)
    pooled = (ya + yb) / (da + db)
    s = vc.prior_strength
    al, be = s * pooled, s * (1 - pooled)
    lo_b = np.log(yb + al) - np.log(db - yb + be)
    lo_a = np.log(ya + al) - np.log(da - ya + be)
    var = 1 / (yb + al) + 1 / (db - yb + be) + 1 / (ya + al) + 1 / (da - ya + be)
    z = (lo_b - lo_a) / np.sqrt(var)
    keep = (z >= vc.z_threshold) & (yb >= vc.min_df)
    terms = vec.get_feature_names_out()
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-z[idx])]
    frame = pd.DataFrame({"term": terms[idx], "recent_df": yb[idx].astype(int), "train_df": ya[idx].astype(int),
                          "recent_rate": yb[idx] / db, "train_rate": ya[idx] / da,
                          "log_odds": (lo_b - lo_a)[idx], "z": z[idx]})
    return frame, vec, xb


def new_term_clusters(texts: Sequence[str], ids: Sequence[str], emerging: Sequence[str],
                      cfg: DriftConfig) -> list[NewTermCluster]:
    """Cluster ``texts`` (TF-IDF + KMeans, k by silhouette) and keep the clusters in which at
    least ``min_novelty`` of the tickets contain an emerging term, largest first."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import silhouette_score

    vc = cfg.new_vocabulary
    texts, ids = list(texts), [str(i) for i in ids]
    if len(texts) < vc.min_cluster_size or not emerging:
        return []
    if len(texts) > vc.max_cluster_docs:
        pick = np.sort(np.random.default_rng(cfg.seed).choice(len(texts), vc.max_cluster_docs, replace=False))
        texts, ids = [texts[i] for i in pick], [ids[i] for i in pick]
    vec = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1, max_features=20000,
                          token_pattern=r"(?u)\b[^\W\d_][\w\-]{2,}\b")
    try:
        x = vec.fit_transform(texts)
    except ValueError:
        return []
    vocab = vec.get_feature_names_out()
    n = x.shape[0]
    k_max = min(vc.max_clusters, n // max(vc.min_cluster_size, 1))
    best_labels, best_score = np.zeros(n, dtype=int), -1.0
    for k in range(2, k_max + 1):
        km = KMeans(n_clusters=k, n_init=3, random_state=cfg.seed).fit(x)
        if len(set(km.labels_)) < 2:
            continue
        score = silhouette_score(x, km.labels_, metric="cosine",
                                 sample_size=min(n, 1000), random_state=cfg.seed)
        if score > best_score:
            best_labels, best_score = km.labels_, score
    emerging_set = set(emerging)
    term_index = {t: i for i, t in enumerate(vocab)}
    em_cols = [term_index[t] for t in emerging if t in term_index]
    has_em = (np.asarray(x[:, em_cols].sum(axis=1)).ravel() > 0) if em_cols else np.zeros(n, bool)
    out: list[NewTermCluster] = []
    for c in np.unique(best_labels):
        rows = np.nonzero(best_labels == c)[0]
        if len(rows) < vc.min_cluster_size:
            continue
        novelty = float(has_em[rows].mean())
        if novelty < vc.min_novelty:
            continue
        sub = x[rows]
        centroid = np.asarray(sub.mean(axis=0)).ravel()
        top = [vocab[i] for i in np.argsort(-centroid)[: vc.top_terms] if centroid[i] > 0]
        present = np.asarray((sub > 0).sum(axis=0)).ravel()
        em_here = sorted((t for t in emerging_set if t in term_index and present[term_index[t]] > 0),
                         key=lambda t: -present[term_index[t]])
        closeness = np.asarray(sub @ centroid).ravel()
        ex = [{"id": ids[rows[i]], "text": texts[rows[i]][:300]} for i in np.argsort(-closeness)[: vc.examples]]
        out.append(NewTermCluster(size=int(len(rows)), novelty=novelty, terms=top,
                                  emerging_terms=em_here[: vc.top_terms], examples=ex))
    out.sort(key=lambda c: -(c.size * c.novelty))
    return out


# -- the report -------------------------------------------------------------------------------
def _column(frame: pd.DataFrame, *names: str) -> pd.Series | None:
    for n in names:
        if n in frame.columns:
            return frame[n]
    return None


def _embeddings(frame: pd.DataFrame, given: np.ndarray | None) -> np.ndarray | None:
    if given is not None:
        return np.asarray(given, dtype=float)
    if "embedding" in frame.columns and len(frame):
        # rows without one (decide_frame embeds a sample when asked) are left out
        vals = [np.asarray(v, dtype=float) for v in frame["embedding"] if v is not None]
        return np.vstack(vals) if vals else None
    return None


def _mentions(texts: Sequence[str], terms: Sequence[str]) -> np.ndarray:
    """Which texts contain any of ``terms`` as a whole word (case-insensitive)."""
    import re

    if not terms:
        return np.zeros(len(texts), dtype=bool)
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])", re.IGNORECASE)
    return np.fromiter((bool(pattern.search(t)) for t in texts), dtype=bool, count=len(texts))


def _status(signals: list[Signal], cfg: DriftConfig) -> tuple[str, str]:
    fired = [s.name for s in signals if s.fired]
    if len(fired) >= cfg.retrain_min_signals:
        return "retrain recommended", f"{len(fired)} signals fired: {', '.join(fired)}"
    if fired:
        return "watch", f"1 signal fired: {fired[0]}"
    skipped = [s.name for s in signals if s.skipped]
    tail = f" ({', '.join(skipped)} skipped: missing columns or too little data)" if skipped else ""
    return "ok", "no drift signal fired" + tail


def drift_report(train_frame: pd.DataFrame, recent_frame: pd.DataFrame,
                 cfg: DriftConfig | dict[str, Any] | None = None, *,
                 train_embeddings: np.ndarray | None = None,
                 recent_embeddings: np.ndarray | None = None) -> DriftReport:
    """Compute every drift signal and the overall status (see the module docstring)."""
    from threadpoolctl import threadpool_limits

    cfg = cfg if isinstance(cfg, DriftConfig) else DriftConfig.from_dict(cfg)
    with threadpool_limits(limits=cfg.max_threads):
        return _drift_report(train_frame, recent_frame, cfg, train_embeddings, recent_embeddings)


def _drift_report(train_frame: pd.DataFrame, recent_frame: pd.DataFrame, cfg: DriftConfig,
                  train_embeddings: np.ndarray | None, recent_embeddings: np.ndarray | None) -> DriftReport:
    if len(train_frame) == 0 or len(recent_frame) == 0:
        raise ValueError(f"drift_report needs rows in both frames (train {len(train_frame)}, recent "
                         f"{len(recent_frame)}); widen the time window of recent traffic")
    signals: list[Signal] = []

    tl, rl = _column(train_frame, "predicted", "label"), _column(recent_frame, "predicted")
    signals.append(label_shift(tl, rl, cfg) if tl is not None and rl is not None else
                   _skipped("label_shift", cfg.label_shift.js_threshold, "no 'predicted' column"))

    tc, rc = _column(train_frame, "confidence"), _column(recent_frame, "confidence")
    signals.append(confidence_shift(tc, rc, cfg) if tc is not None and rc is not None else
                   _skipped("confidence", cfg.confidence_shift.ks_threshold, "no 'confidence' column"))

    to, ro = _column(train_frame, "out_of_scope"), _column(recent_frame, "out_of_scope")
    signals.append(oos_rate_shift(to.astype(bool), ro.astype(bool), cfg) if to is not None and ro is not None
                   else _skipped("oos_rate", cfg.oos_rate.max_increase, "no 'out_of_scope' column"))

    te, re_ = _embeddings(train_frame, train_embeddings), _embeddings(recent_frame, recent_embeddings)
    signals.append(embedding_drift(te, re_, cfg) if te is not None and re_ is not None else
                   _skipped("embedding", cfg.embedding.auc_threshold, "no embeddings"))

    clusters: list[NewTermCluster] = []
    vc = cfg.new_vocabulary
    if "text" in train_frame.columns and "text" in recent_frame.columns:
        rng = np.random.default_rng(cfg.seed)
        tt = train_frame["text"].fillna("").astype(str).to_numpy()
        if len(tt) > vc.max_docs:
            tt = tt[rng.choice(len(tt), vc.max_docs, replace=False)]
        recent = recent_frame
        if len(recent) > vc.max_docs:
            recent = recent.iloc[np.sort(rng.choice(len(recent), vc.max_docs, replace=False))]
        rt = recent["text"].fillna("").astype(str).tolist()
        terms, _, _ = emerging_terms(list(tt), rt, cfg)
        n_terms = len(terms)
        signals.append(Signal("new_vocabulary", float(n_terms), float(vc.min_terms),
                              bool(n_terms >= vc.min_terms),
                              {"terms": terms.head(20).to_dict(orient="records")}))
        if n_terms:
            # candidates: tickets the model is unsure about plus every ticket using an emerging
            # term (a new kind of ticket is often confidently forced into an old topic)
            mask = _mentions(rt, terms["term"].tolist())
            if "out_of_scope" in recent.columns:
                mask |= recent["out_of_scope"].fillna(False).astype(bool).to_numpy()
            if "confidence" in recent.columns:
                mask |= recent["confidence"].fillna(0.0).to_numpy(float) < vc.low_confidence
            ids = recent["id"].astype(str).tolist() if "id" in recent.columns else [str(i) for i in recent.index]
            pool = np.nonzero(mask)[0]
            clusters = new_term_clusters([rt[i] for i in pool], [ids[i] for i in pool],
                                         terms["term"].tolist(), cfg)
    else:
        signals.append(_skipped("new_vocabulary", float(vc.min_terms), "no 'text' column"))

    status, reason = _status(signals, cfg)
    return DriftReport(signals=signals, status=status, reason=reason, new_term_clusters=clusters,
                       n_train=int(len(train_frame)), n_recent=int(len(recent_frame)))
