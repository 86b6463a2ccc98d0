"""The decision object: a raw ticket in, a routing Decision out.

:class:`Triage` is the only place that turns tickets into decisions; the evaluator, the
BentoML service, the review queue, the helpdesk adapters and ``triage classify`` all call
:meth:`Triage.decide`. This module loads a bundle and decides; building one at training time is
:func:`ticket_triage.decision.bundle.build_bundle`.

Precedence inside :meth:`Triage.decide` (most important first):

1. empty text -> ``review`` (reason ``empty_text``);
2. rules (``conf/rules``): a rule may set the topic (source ``rules``), raise the urgency and
   pin the band; a pinned band is a ceiling no later step can lift;
3. language: a language the model was not trained on -> ``review``;
4. out-of-scope score above the tuned cut-off -> ``review`` (reason ``out_of_scope``),
   unless a rule set the topic;
5. calibrated confidence vs the per-label thresholds -> ``auto_route`` / ``draft`` /
   ``review``; labels pinned in the thresholds config and cold-start topics never auto-route;
   a rule-set topic the model does not agree with is at most a ``draft``;
6. the LLM fallback (when configured) for the bands it is configured for, never for
   rule-pinned tickets; its verdict moves the band one step (see ``ticket_triage.decision.llm``).

A bundle with a ``cascade/`` stage (:mod:`ticket_triage.decision.cascade`) first lets the cheap
TF-IDF stage auto-route the tickets it is certified on (no rule hit, supported language, in its
scope); only the rest go through steps 1-6, with the full-stage thresholds tuned on that
residual. Every decision then says which stage made it (``explanation["stage"]``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ticket_triage.schema import Decision, Ticket
from ticket_triage.taxonomy import Taxonomy, parse_taxonomy


POLICY_FILE = "policy.json"
BAND_ORDER = ("review", "draft", "auto_route")  # least to most trusting
log = logging.getLogger(__name__)

MAX_TEXT_CHARS_FOR_MODEL = 20000


def _min_band(a: str, b: str | None) -> str:
    if b is None:
        return a
    return a if BAND_ORDER.index(a) <= BAND_ORDER.index(b) else b


def aggregate_to_topics(probs: np.ndarray, fine_labels: Sequence[str], fine_to_coarse: Mapping[str, str],
                        topics: Sequence[str]) -> np.ndarray:
    """Sum fine-label (e.g. intent) probabilities into topic probabilities."""
    return probs @ topic_matrix(fine_labels, fine_to_coarse, topics)


def topic_matrix(fine_labels: Sequence[str], fine_to_coarse: Mapping[str, str], topics: Sequence[str]) -> np.ndarray:
    """The (fine labels, topics) 0/1 matrix :func:`aggregate_to_topics` multiplies by (build it
    once where the same labels are aggregated on every call)."""
    col = {t: i for i, t in enumerate(topics)}
    m = np.zeros((len(fine_labels), len(topics)))
    for i, f in enumerate(fine_labels):
        m[i, col[fine_to_coarse.get(f, f)]] = 1.0
    return m


@dataclass
class Policy:
    """Everything besides the classifier that turns probabilities into a decision."""

    family: str
    label_level: str
    topics: list[str]
    fine_to_coarse: dict[str, str] | None
    calibrator: dict[str, Any]
    thresholds: dict[str, Any]
    ood: dict[str, Any] | None
    languages: list[str]
    cold_start_topics: list[str] = field(default_factory=list)
    #: the data set's language (``data.language``, else the commonest training language): the
    #: prior of language detection for tickets that arrive without a language
    language_prior: str | None = None
    model_version: str = "dev"
    taxonomy_version: str = ""
    cleaning_version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""  # data.name of the tickets it was trained on

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Policy":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class Neighbours:
    """A small index of labelled training tickets: explanations, few-shot examples, OOD."""

    def __init__(self, emb: np.ndarray, texts: list[str], labels: list[str]):
        self.emb = emb.astype(np.float32)
        self._emb_t = np.ascontiguousarray(self.emb.T)  # (dim, n): a contiguous GEMM operand, ~2x faster
        self.texts = texts
        self.labels = labels

    def similarities(self, q: np.ndarray) -> np.ndarray:
        """(n, n_index) cosine similarities of (normalised) query embeddings to the index."""
        return q.astype(np.float32) @ self._emb_t

    def query(self, q: np.ndarray, k: int = 3, sims: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        sims = self.similarities(q) if sims is None else sims
        k = min(k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out = []
        for row, cand in zip(sims, idx):
            order = cand[np.argsort(-row[cand])]
            out.append([(int(j), float(row[j])) for j in order])
        return out

    def save(self, path: Path) -> None:
        np.savez_compressed(path / "neighbours.npz", emb=self.emb)
        with (path / "neighbours.jsonl").open("w", encoding="utf-8") as f:
            for t, lab in zip(self.texts, self.labels):
                f.write(json.dumps({"text": t, "topic": lab}, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Neighbours | None":
        if not (path / "neighbours.npz").is_file():
            return None
        emb = np.load(path / "neighbours.npz", allow_pickle=False)["emb"]
        rows = [json.loads(line) for line in (path / "neighbours.jsonl").read_text(encoding="utf-8").splitlines() if line]
        return cls(emb, [r["text"] for r in rows], [r["topic"] for r in rows])


class Triage:
    """Turns raw tickets into :class:`~ticket_triage.schema.Decision` objects (batch-friendly)."""

    def __init__(self, classifier: Any, policy: Policy, taxonomy: Taxonomy, rules: Any,
                 neighbours: Neighbours | None = None, llm: Any = None, urgency_model: Any = None,
                 secondary_tagger: Any = None, clean_cfg: Mapping[str, Any] | None = None,
                 cascade: Any = None):
        from ticket_triage.decision.calibration import Calibrator
        from ticket_triage.decision.ood import OODScorer
        from ticket_triage.decision.thresholds import Thresholds

        self.classifier = classifier
        self.policy = policy
        self.taxonomy = taxonomy
        self.rules = rules
        self.neighbours = neighbours
        self.llm = llm
        self.urgency_model = urgency_model
        self.secondary_tagger = secondary_tagger
        from ticket_triage.text.clean import CleanConfig

        self.clean_config = CleanConfig.from_dict(clean_cfg)  # the bundle's clean.json
        self.calibrator = Calibrator.from_dict(policy.calibrator)
        self.thresholds = Thresholds.from_dict(policy.thresholds)
        if cascade is not None and llm is not None and "auto_route" in getattr(llm, "bands", ()):
            # the LLM fallback reviews the auto-route band, so no ticket may exit at the first
            # stage; the full stage's residual thresholds are certified only together with the
            # exits, so every ticket takes the thresholds tuned on all tickets (cascade off)
            log.info("cascade off: the LLM fallback covers the auto_route band")
            cascade = None
        self.cascade = cascade  # decision.cascade.CheapStage or None
        if cascade is not None:
            self.thresholds = cascade.full_thresholds  # tuned on what reaches the full stage
        self.ood = None
        if policy.ood and neighbours is not None:
            self.ood = OODScorer.from_dict(policy.ood, embeddings=neighbours.emb)
        self.topics = list(policy.topics)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, bundle_dir: str | Path, llm: Any = None, cascade: bool = True) -> "Triage":
        """Load a bundle. ``cascade=False`` ignores its ``cascade/`` first stage (every ticket
        through the full model, with the thresholds tuned on all tickets)."""
        from ticket_triage.models import load_classifier
        from ticket_triage.decision.rules import RuleSet

        bundle = Path(bundle_dir)
        if not (bundle / POLICY_FILE).is_file():
            raise FileNotFoundError(
                f"{bundle} is not a model bundle (no {POLICY_FILE}); run `dvc repro train` or pass the "
                "directory written by the train stage (artifacts/train/winner)")
        policy = Policy.from_dict(json.loads((bundle / POLICY_FILE).read_text()))
        taxonomy = parse_taxonomy(yaml.safe_load((bundle / "taxonomy.yaml").read_text()), bundle / "taxonomy.yaml")
        rules_cfg = yaml.safe_load((bundle / "rules.yaml").read_text()) if (bundle / "rules.yaml").is_file() else None
        rules = RuleSet.from_config(rules_cfg or {"rules": []}, taxonomy=taxonomy)
        clf = load_classifier(bundle / "classifier")
        clean_cfg = json.loads((bundle / "clean.json").read_text()) if (bundle / "clean.json").is_file() else None
        if clean_cfg is not None:
            # options added after a bundle was built are off in it: it was trained without them
            clean_cfg.setdefault("strip_greetings", False)
        urgency_model = secondary = None
        if (bundle / "urgency").is_dir():
            from ticket_triage.decision.urgency import UrgencyModel

            urgency_model = UrgencyModel.load(bundle / "urgency")
        if (bundle / "secondary").is_dir():
            from ticket_triage.decision.secondary import SecondaryTagger

            secondary = SecondaryTagger.load(bundle / "secondary")
        stage = None
        if cascade:
            from ticket_triage.decision.cascade import CheapStage

            stage = CheapStage.load(bundle)
        return cls(clf, policy, taxonomy, rules, Neighbours.load(bundle), llm=llm, urgency_model=urgency_model,
                   secondary_tagger=secondary, clean_cfg=clean_cfg, cascade=stage)

    @property
    def model_version(self) -> str:
        return self.policy.model_version

    def describe(self) -> dict[str, Any]:
        return {
            "model_version": self.policy.model_version,
            "family": self.policy.family,
            "label_level": self.policy.label_level,
            "taxonomy": f"{self.taxonomy.name} v{self.taxonomy.version}",
            "topics": self.topics,
            "languages": self.policy.languages,
            "cold_start_topics": self.policy.cold_start_topics,
            "llm_fallback": "on" if self.llm is not None else "off",
            "rules": len(self.rules),
            "cascade": "on" if self.cascade is not None else "off",
        }

    # -- model part ------------------------------------------------------------------------
    def topic_proba(self, texts: Sequence[str], *, calibrated: bool = True) -> np.ndarray:
        """(n, len(topics)) topic probabilities, calibrated by default."""
        raw = _raw_topic_proba(self.classifier, self.policy, texts)
        return self.calibrator.transform(raw) if calibrated else raw

    def warm(self) -> "Triage":
        """Load now what the first decision would otherwise load lazily: the encoder (and its
        ONNX session) through one scored text, and the cascade's single-ticket centroid copy.
        Decides nothing (no LLM call, nothing recorded); the service calls it at start-up so the
        first request does not pay for it. Returns self."""
        self.topic_proba(["warm up"])
        if self.cascade is not None:
            self.cascade.score(["warm up"])  # one row: builds the dense centroid copy
        return self

    # -- the decision ----------------------------------------------------------------------
    def clean(self, ticket: Ticket) -> str:
        """The ticket's text cleaned with the options it was trained with (``clean.json``)."""
        return self.clean_config.apply(ticket.subject, ticket.body)

    def decide(self, tickets: Sequence[Ticket | Mapping[str, Any]], *,
               language_prior: str | None = None) -> list[Decision]:
        """Decisions for raw tickets (``subject``/``body``, cleaned here with the training-time
        cleaning). A ticket that already carries ``text`` is taken as cleaned by the clean
        stage (evaluation on split files); callers holding untrusted input (the service) pass
        subject and body only. A ticket without a language is detected with ``language_prior``
        (default: the bundle's ``Policy.language_prior``) as the prior."""
        tks = [t if isinstance(t, Ticket) else Ticket.from_dict({"id": t.get("id") or "", **t}) for t in tickets]
        if not tks:
            return []
        texts = [t.text or self.clean(t) for t in tks]
        prior = language_prior or self.policy.language_prior
        if self.cascade is None:
            return self._decide_full(tks, texts, prior)
        from ticket_triage.decision.cascade import cheap_decisions

        seen: dict[int, tuple] = {}
        early = cheap_decisions(self, tks, texts, prior, seen)
        rest = [i for i in range(len(tks)) if i not in early]
        full = self._decide_full([tks[i] for i in rest], [texts[i] for i in rest], prior,
                                 [seen.get(i) for i in rest]) if rest else []
        for i, d in zip(rest, full):
            d.explanation["stage"] = "full"
            early[i] = d
        return [early[i] for i in range(len(tks))]

    def _decide_full(self, tks: list[Ticket], texts: list[str], prior: str | None,
                     seen: Sequence[tuple | None] | None = None) -> list[Decision]:
        """Steps 1-6 of the module docstring on cleaned texts (the full stage). ``seen``: per
        ticket, the (rule outcome, language or None) the cascade's first stage already found."""
        from ticket_triage.text.language import detect_language
        from ticket_triage.decision.urgency import resolve_urgency

        if not tks:
            return []
        nonempty = [i for i, x in enumerate(texts) if x.strip()]
        k = len(self.topics)
        probs = np.zeros((len(tks), k))
        emb = None
        if nonempty:
            sub = [texts[i] for i in nonempty]
            probs[nonempty] = self.topic_proba(sub)
            if self.ood is not None or self.neighbours is not None:
                e = self.classifier.embed(sub)
                if e is not None:
                    emb = np.zeros((len(tks), e.shape[1]), dtype=np.float32)
                    emb[nonempty] = e
        ood_scores = np.zeros(len(tks))
        # one similarity matrix serves both the out-of-scope score and the explanations
        # (the scorer's training sample is the neighbour index, see Triage.__init__)
        sims = self.neighbours.similarities(emb) if (self.neighbours is not None and emb is not None) else None
        if self.ood is not None and nonempty:
            ood_scores[nonempty] = self.ood.score(emb[nonempty] if emb is not None else None, probs[nonempty],
                                                  sims=sims[nonempty] if sims is not None else None)
        neigh = self.neighbours.query(emb, k=3, sims=sims) if sims is not None else None
        model_urgencies: list[str | None] = [None] * len(tks)
        model_tags: list[list[str]] = [[] for _ in tks]
        if nonempty and self.urgency_model is not None:
            for i, u in zip(nonempty, self.urgency_model.predict([texts[i] for i in nonempty])):
                model_urgencies[i] = u
        if nonempty and self.secondary_tagger is not None:
            for i, tags in zip(nonempty, self.secondary_tagger.predict([texts[i] for i in nonempty])):
                model_tags[i] = tags

        decisions: list[Decision] = []
        llm_jobs: list[tuple] = []
        for i, t in enumerate(tks):
            text = texts[i]
            known_outcome, known_lang = (seen[i] if seen is not None and seen[i] is not None else (None, None))
            lang = known_lang or t.language or detect_language(text, prior)
            order = np.argsort(-probs[i])
            alternatives = [{"topic": self.topics[j], "p": round(float(probs[i, j]), 4)} for j in order[:3]]
            explanation: dict[str, Any] = {}
            if neigh is not None and text.strip():
                explanation["nearest"] = [
                    {"text": self.neighbours.texts[j][:200], "topic": self.neighbours.labels[j], "similarity": round(s, 3)}
                    for j, s in neigh[i]]
            if not text.strip():
                decisions.append(Decision(
                    topic=None, confidence=0.0, band="review", urgency=self.taxonomy.default_urgency,
                    reason="empty_text", source="model", ticket_id=t.id or None, language=lang,
                    explanation={"message": "no text left after cleaning"},
                    model_version=self.model_version, taxonomy_version=self.policy.taxonomy_version))
                continue

            outcome = known_outcome if known_outcome is not None else self.rules.apply(text)
            model_topic = self.topics[int(order[0])]
            conf = float(probs[i, order[0]])
            topic, source = model_topic, "model"
            band, reason = self.thresholds.band(model_topic, conf)
            if outcome.topic and outcome.topic != model_topic:
                topic, source = outcome.topic, "rules"
                conf = float(probs[i, self.topics.index(topic)]) if topic in self.topics else 0.0
                band, reason = "draft", f"rule_topic:{outcome.topic_rule}"
            elif outcome.topic:
                source = "rules"
                reason = f"rule_topic:{outcome.topic_rule}+{reason}"
            if outcome.pinned_band and _min_band(band, outcome.pinned_band) != band:
                band, reason = outcome.pinned_band, f"rule_pinned:{outcome.pin_rule}"
            if self.policy.languages and lang not in self.policy.languages and lang != "und":
                band, reason = "review", "unsupported_language"
            oos = bool(self.ood is not None and ood_scores[i] > self.ood.cutoff and source != "rules")
            if oos:
                band, reason = "review", "out_of_scope"
            if topic in self.policy.cold_start_topics and band == "auto_route":
                band, reason = "draft", "cold_start_topic"

            if (self.llm is not None and band in self.llm.bands and not outcome.pinned_band):
                # consulted below, all of the batch at once under one deadline
                llm_jobs.append((len(decisions), text, band, topic, source, reason,
                                 neigh[i] if neigh is not None else [],
                                 (outcome.urgency, model_urgencies[i] or t.urgency)))

            urgency = resolve_urgency(outcome.urgency, model_urgencies[i] or t.urgency, self.taxonomy.urgency_for(topic))
            if outcome.hits:
                explanation["rules"] = [f"{h.rule_id}: '{h.text}'" for h in outcome.hits]
            decisions.append(Decision(
                topic=topic, confidence=round(conf, 4), band=band, urgency=urgency, reason=reason,
                source=source, ticket_id=t.id or None, alternatives=alternatives,
                secondary_tags=list(dict.fromkeys([*outcome.secondary_tags, *model_tags[i]])),
                rule_hits=[{"rule": h.rule_id, "kind": h.kind, "match": h.text} for h in outcome.hits],
                out_of_scope_score=round(float(ood_scores[i]), 4), language=lang, explanation=explanation,
                model_version=self.model_version, taxonomy_version=self.policy.taxonomy_version))
        if llm_jobs:
            self._consult_llm_batch(llm_jobs, decisions)
        return decisions

    def nearest(self, tickets: Sequence[Ticket | Mapping[str, Any]], k: int = 3) -> list[list[dict[str, Any]]]:
        """On demand, the ``k`` nearest training tickets of each ticket (the explanation the
        cascade's first stage does not compute for the tickets it auto-routes); [] per ticket
        when the bundle has no neighbour index or the text is empty."""
        tks = [t if isinstance(t, Ticket) else Ticket.from_dict({"id": t.get("id") or "", **t}) for t in tickets]
        texts = [t.text or self.clean(t) for t in tks]
        out: list[list[dict[str, Any]]] = [[] for _ in tks]
        idx = [i for i, x in enumerate(texts) if x.strip()]
        if self.neighbours is None or not idx:
            return out
        emb = self.classifier.embed([texts[i] for i in idx])
        if emb is None:
            return out
        for i, row in zip(idx, self.neighbours.query(emb, k=k)):
            out[i] = [{"text": self.neighbours.texts[j][:200], "topic": self.neighbours.labels[j],
                       "similarity": round(s, 3)} for j, s in row]
        return out

    def decide_one(self, ticket: Ticket | Mapping[str, Any]) -> Decision:
        return self.decide([ticket])[0]

    def _consult_llm_batch(self, jobs: list[tuple], decisions: list[Decision]) -> None:
        """Consult the LLM for every job of a batch concurrently (``llm.max_concurrency``
        threads) under ONE deadline (``llm.batch_deadline_s``, below the server's request
        timeout). A ticket whose answer is not back in time keeps the model's decision with
        reason ``llm_deadline``: a batch never loses its decisions to a slow or hung endpoint."""
        from concurrent.futures import ThreadPoolExecutor, wait

        from ticket_triage.decision.urgency import resolve_urgency

        cfg = self.llm.cfg
        deadline_s = float(getattr(cfg, "batch_deadline_s", 40.0))
        pool = ThreadPoolExecutor(max_workers=max(1, min(int(getattr(cfg, "max_concurrency", 8)), len(jobs))),
                                  thread_name_prefix="triage-llm")
        t0 = time.perf_counter()
        futures = {pool.submit(self._consult_llm, text, band, topic, source, reason, neigh): k
                   for k, (_, text, band, topic, source, reason, neigh, _) in enumerate(jobs)}
        try:
            wait(futures, timeout=deadline_s)
        finally:
            # calls still queued are dropped; running ones end within llm.timeout_s on their own
            pool.shutdown(wait=False, cancel_futures=True)
        late = 0
        for fut, k in futures.items():
            di, _, band, topic, source, reason, _, (rule_urgency, model_urgency) = jobs[k]
            d = decisions[di]
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                band, topic, source, reason, info = fut.result()
            else:
                if fut.done() and not fut.cancelled():
                    log.warning("LLM consult failed: %r", fut.exception())
                late += 1
                reason = "llm_deadline"
                info = {"label": None, "error": "deadline", "deadline_s": deadline_s,
                        "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}
            d.band, d.topic, d.source, d.reason, d.llm = band, topic, source, reason, info
            d.urgency = resolve_urgency(rule_urgency, model_urgency, self.taxonomy.urgency_for(topic))
        if late:
            log.warning("LLM deadline (%.1fs) passed: %d of %d tickets keep the model's decision",
                        deadline_s, late, len(jobs))

    def _consult_llm(self, text: str, band: str, topic: str, source: str, reason: str,
                     neigh: list[tuple[int, float]]):
        from ticket_triage.decision.llm import combine

        few_shot = [(self.neighbours.texts[j], self.neighbours.labels[j]) for j, _ in neigh] if self.neighbours else []
        t0 = time.perf_counter()
        result = self.llm.classify(text, topic, few_shot, candidates=self.topics + list(self.policy.cold_start_topics))
        new_band, new_topic, new_source, new_reason = combine(
            band, topic, result, self.llm.cfg, cold_start_topics=self.policy.cold_start_topics)
        info = {"label": result.label, "raw_label": result.raw_label, "cost_usd": result.cost_usd,
                "cached": result.cached, "error": result.error,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}
        if new_source == "model" and source == "rules":
            new_source = "rules"
        return new_band, new_topic, new_source, (new_reason or reason), info


def _raw_topic_proba(classifier: Any, policy: Policy, texts: Sequence[str]) -> np.ndarray:
    """Uncalibrated (n, len(policy.topics)) topic probabilities: fine labels summed into topics
    where the classifier is fine-grained. Shared by Triage, build_bundle and cross-fitting."""
    raw = classifier.predict_proba(list(texts))
    if policy.fine_to_coarse:
        return aggregate_to_topics(raw, classifier.labels, policy.fine_to_coarse, policy.topics)
    return raw[:, [classifier.labels.index(t) for t in policy.topics]]
