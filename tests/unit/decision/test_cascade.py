"""The cascade (ticket_triage.decision.cascade): a certified cheap exit, the full stage on the rest."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from ticket_triage.decision.bundle import build_bundle
from ticket_triage.decision.cascade import CASCADE_DIR, CheapStage
from ticket_triage.decision.thresholds import cp_lower
from ticket_triage.decision.triage import Triage
from ticket_triage.models import build_classifier


def _params(base_params, enabled=True):
    p = copy.deepcopy(base_params)
    th = p["thresholds"]
    th.update({"tune": True, "target_precision": 0.75, "confidence": 0.8, "min_support": 5,
               "cross_fit_folds": 3, "strategy": "pooled", "cold_start_min_examples": 1})
    th["cascade"] = {**dict(th.get("cascade") or {}), "enabled": enabled, "ood_max_in_scope_flagged": 0.1}
    p["rules"] = {"rules": [{"id": "refund_word", "kind": "refund", "patterns": ["zebrafund"],
                             "raise_urgency": "P1"}]}
    return p


def _build(params, rows, out):
    hp = {k: v for k, v in params["model"].items() if k != "family"}
    clf = build_classifier("tfidf_logreg", **hp)
    clf.fit([r["text"] for r in rows], [r["topic"] for r in rows], progress=False)
    return build_bundle(clf, rows, rows, params, out, model_version="cascade-test")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, base_params, small_rows):
    d = tmp_path_factory.mktemp("cascade")
    on = _build(_params(base_params, True), small_rows, d / "on")
    off = _build(_params(base_params, False), small_rows, d / "off")
    return on, off


def _tickets(rows):
    return [{"id": r["id"], "subject": "", "body": "", "text": r["text"]} for r in rows]


def test_exit_thresholds_are_certified(bundles, small_rows):
    on, _ = bundles
    stage = CheapStage.load(on)
    assert stage is not None and stage.info["n_exit_tuning"] > len(small_rows)  # validation + out of fold
    info = stage.exit_thresholds.info
    assert info["pooled_precision_lower"] is not None and info["pooled_precision_lower"] >= 0.75
    # on validation, the tickets the first stage decides meet the target (point estimate and the
    # certificate recomputed here)
    tri = Triage.load(on)
    ds = tri.decide(_tickets(small_rows))
    cheap = [(d, r) for d, r in zip(ds, small_rows) if d.explanation.get("stage") == "cheap"]
    assert cheap, "the first stage decided nothing on its own training tickets"
    assert all(d.band == "auto_route" for d, _ in cheap)
    correct = sum(d.topic == r["topic"] for d, r in cheap)
    assert correct / len(cheap) >= 0.75
    # every ticket says which stage decided it
    assert {d.explanation["stage"] for d in ds} <= {"cheap", "full"}
    assert float(cp_lower(correct, len(cheap), 0.8)) > 0.5


def test_full_stage_is_certified_with_the_exits(bundles, small_rows):
    # the full stage's pooled bound is the union's: the first stage's exits on the tuning
    # tickets (validation + out of fold) plus the residual tickets the full stage routes
    on, _ = bundles
    stage = CheapStage.load(on)
    info = stage.full_thresholds.info
    search = info["joint_exit_search"]
    chosen = next(r for r in search["candidates"]
                  if (r["candidate"], r["exit_shift"]) == (search["chosen"]["candidate"], search["chosen"]["exit_shift"]))
    base = next(r for r in search["candidates"] if r["candidate"] == "residual")
    assert 0 < base["exits_correct"] <= base["exits"]
    # the exits are a subset of the first stage's own tuning tickets (validation + out of fold)
    assert base["exits"] <= stage.info["n_exit_tuning"]
    # whatever won is certified on the union of its exits and what the full stage routes, and
    # routes at least as many tuning tickets as every other certified candidate
    assert chosen["certified"] or chosen is base
    assert all(chosen["auto_routed"] >= r["auto_routed"] for r in search["candidates"] if r["certified"])
    if chosen is base:
        assert info["routed_before"] == {"n": base["exits"], "correct": base["exits_correct"]}
        assert "certified with the first stage's exits" in info["tuned_on"]
        if info["pooled_precision_lower"] is not None:
            assert info["pooled_precision_lower"] >= 0.75
    else:
        assert chosen["union_precision_lower"] >= 0.75
        assert stage.full_thresholds.auto_route == json.loads((on / "policy.json").read_text())["thresholds"]["auto_route"]
        assert stage.exit_thresholds.info["exit_shift"] == chosen["exit_shift"]


def test_full_stage_decides_as_the_plain_model_with_residual_thresholds(bundles, small_rows):
    on, _ = bundles
    tri = Triage.load(on)
    plain = Triage.load(on, cascade=False)
    plain.thresholds = tri.cascade.full_thresholds
    ds = tri.decide(_tickets(small_rows))
    ref = plain.decide(_tickets(small_rows))
    full = [i for i, d in enumerate(ds) if d.explanation["stage"] == "full"]
    assert full
    for i in full:
        assert (ds[i].band, ds[i].topic, ds[i].reason) == (ref[i].band, ref[i].topic, ref[i].reason)
        # the rule outcome and language the first stage found are reused, not found again: same result
        assert (ds[i].language, ds[i].rule_hits, ds[i].urgency, ds[i].secondary_tags) == \
            (ref[i].language, ref[i].rule_hits, ref[i].urgency, ref[i].secondary_tags)
        assert "nearest" not in ds[i].explanation or ds[i].explanation["nearest"] == ref[i].explanation["nearest"]


def test_empty_text_and_foreign_language_never_exit(bundles, small_rows):
    tri = Triage.load(bundles[0])
    ds = tri.decide(_tickets(small_rows))
    i = next(i for i, d in enumerate(ds) if d.explanation["stage"] == "cheap")
    empty, foreign = tri.decide([
        {"id": "e", "subject": "", "body": "   "},
        {"id": "f", "text": small_rows[i]["text"], "subject": "", "body": "", "language": "xx"}])
    assert empty.explanation["stage"] == "full" and empty.reason == "empty_text"
    assert foreign.explanation["stage"] == "full" and foreign.reason == "unsupported_language"


def _surest_exit(tri, small_rows):
    ds = tri.decide(_tickets(small_rows))
    i, d = max(((i, d) for i, d in enumerate(ds) if d.explanation["stage"] == "cheap"), key=lambda x: x[1].confidence)
    return small_rows[i]["text"], d


def _with_rules(tri, rules):
    from ticket_triage.decision.rules import RuleSet

    tri.rules = RuleSet.from_config({"rules": rules}, taxonomy=tri.taxonomy)
    return tri


def test_rule_hits_exit_only_where_the_full_stage_would_agree(bundles, small_rows):
    """A rule that only raises urgency or tags, or sets the topic the first stage predicts, may
    exit, and the decision carries the rule exactly as the full stage records it; a rule that
    pins the band or sets another topic always goes to the full stage."""
    tri = Triage.load(bundles[0])
    text, base = _surest_exit(tri, small_rows)
    other = next(t for t in tri.topics if t != base.topic)
    _with_rules(tri, [
        {"id": "urgent_word", "kind": "refund", "patterns": ["zebrafund"], "raise_urgency": "P1",
         "secondary_tag": "zebra"},
        {"id": "same_topic", "kind": "refund", "patterns": ["zebrasame"], "set_topic": base.topic},
        {"id": "other_topic", "kind": "refund", "patterns": ["zebraother"], "set_topic": other},
        {"id": "pinned", "kind": "security_incident", "patterns": ["zebrapin"], "pin_band": "review"},
    ])
    tickets = [{"id": k, "text": f"{text} {word}", "subject": "", "body": ""}
               for k, word in (("u", "zebrafund"), ("s", "zebrasame"), ("o", "zebraother"), ("p", "zebrapin"))]
    urgent, same, diff, pinned = tri.decide(tickets)
    full = tri._decide_full([__import__("ticket_triage.schema", fromlist=["Ticket"]).Ticket.from_dict(t)
                             for t in tickets], [t["text"] for t in tickets], None)
    for d, f in ((urgent, full[0]), (same, full[1])):
        assert d.explanation["stage"] == "cheap" and d.band == "auto_route"
        assert (d.topic, d.source, d.urgency, d.rule_hits, d.secondary_tags) == \
            (f.topic, f.source, f.urgency, f.rule_hits, f.secondary_tags)
        assert d.explanation["rules"] == f.explanation["rules"]
    assert urgent.urgency == "P1" and urgent.secondary_tags == ["zebra"] and urgent.source == "model"
    assert same.source == "rules" and same.reason == "rule_topic:same_topic+above_auto_threshold"
    assert diff.explanation["stage"] == "full" and diff.topic == other and diff.reason == "rule_topic:other_topic"
    assert pinned.explanation["stage"] == "full" and pinned.band == "review"


def test_a_bundle_built_before_rule_hits_could_exit_sends_them_all_to_the_full_stage(bundles, small_rows, tmp_path):
    """Its exit thresholds were certified without rule-hit tickets."""
    old = tmp_path / "old"
    shutil.copytree(bundles[0], old)
    state_file = old / CASCADE_DIR / "cascade.json"
    state = json.loads(state_file.read_text())
    assert state.pop("rule_hits_exit") is True
    state_file.write_text(json.dumps(state))
    tri = Triage.load(old)
    assert tri.cascade.rule_hits_exit is False
    text, _ = _surest_exit(tri, small_rows)
    hit, plain = tri.decide([{"id": "r", "text": text + " zebrafund", "subject": "", "body": ""},
                             {"id": "n", "text": text, "subject": "", "body": ""}])
    assert hit.explanation["stage"] == "full" and hit.rule_hits and hit.urgency == "P1"
    assert plain.explanation["stage"] == "cheap"


def test_rule_gate():
    from types import SimpleNamespace as NS

    from ticket_triage.decision.cascade import rule_allows, rule_gate

    topics = ["a", "b"]
    hit = [object()]
    assert rule_gate(NS(hits=[], pinned_band=None, topic=None), topics) == -1
    assert rule_gate(NS(hits=hit, pinned_band=None, topic=None), topics) == -1
    assert rule_gate(NS(hits=hit, pinned_band=None, topic="b"), topics) == 1
    assert rule_gate(NS(hits=hit, pinned_band=None, topic="zzz"), topics) == -2
    assert rule_gate(NS(hits=hit, pinned_band="review", topic="a"), topics) == -2
    assert rule_gate(NS(hits=hit, pinned_band=None, topic=None), topics, rule_hits_exit=False) == -2
    assert rule_allows(np.array([-1, -2, 1, 1]), np.array([0, 0, 1, 0])).tolist() == [True, False, True, False]


def test_off_switch_and_bundle_without_cascade(bundles, small_rows):
    on, off = bundles
    assert not (off / CASCADE_DIR).exists() and CheapStage.load(off) is None
    assert Triage.load(off).cascade is None
    # with the cascade off, a cascade bundle decides exactly as a bundle built without one
    # (policy.json keeps the thresholds tuned on all tickets)
    a = [d.to_dict() for d in Triage.load(on, cascade=False).decide(_tickets(small_rows))]
    b = [d.to_dict() for d in Triage.load(off).decide(_tickets(small_rows))]
    for x, y in zip(a, b):
        x.pop("model_version"), y.pop("model_version")
    assert a == b
    assert all("stage" not in d["explanation"] for d in a)
    # rebuilding the "on" directory with the cascade off removes the stale first stage
    tmp = on.parent / "rebuilt"
    shutil.copytree(on, tmp)
    params = _params(__import__("ticket_triage.config", fromlist=["compose"]).compose(
        ["model=tfidf_logreg", "sweep=single"]), False)
    _build(params, small_rows, tmp)
    assert not (tmp / CASCADE_DIR).exists()


def test_save_load_round_trip(bundles, small_rows, tmp_path):
    on, _ = bundles
    stage = CheapStage.load(on)
    stage.save(tmp_path)
    again = CheapStage.load(tmp_path)
    texts = [r["text"] for r in small_rows]
    p1, o1 = stage.score(texts)
    p2, o2 = again.score(texts)
    np.testing.assert_allclose(p1, p2)
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    assert again.exit_thresholds.to_dict() == stage.exit_thresholds.to_dict()
    assert again.full_thresholds.to_dict() == stage.full_thresholds.to_dict()
    state = json.loads((on / CASCADE_DIR / "cascade.json").read_text())
    assert state["full_thresholds"]["info"]["tuned_on"].startswith(("cascade residual", "all tuning tickets"))


def test_out_of_scope_text_does_not_exit(bundles):
    tri = Triage.load(bundles[0])
    d = tri.decide([{"id": "x", "subject": "", "body": "zxqv plmok wuhtr yyzzy qqq"}])[0]
    assert d.explanation["stage"] == "full"


def test_nearest_on_demand(tiny_bundle, small_rows):
    tri = Triage.load(tiny_bundle)
    near = tri.nearest(_tickets(small_rows[:2]))
    assert len(near) == 2  # TF-IDF bundles have no neighbour index: [] per ticket
    assert all(n == [] for n in near)


def test_llm_on_the_auto_route_band_turns_the_cascade_off(bundles):
    # no ticket may exit when the LLM reviews the auto-route band, and the full stage's
    # residual thresholds hold only together with the exits: every ticket then takes the
    # thresholds tuned on all tickets, as with the cascade off
    on, _ = bundles

    class AutoRouteLLM:  # only what Triage reads at construction: the bands the fallback covers
        bands = ("auto_route", "draft")

    class DraftLLM:
        bands = ("draft",)

    off = Triage.load(on, cascade=False)
    tri = Triage.load(on, llm=AutoRouteLLM())
    assert tri.cascade is None and tri.thresholds.to_dict() == off.thresholds.to_dict()
    kept = Triage.load(on, llm=DraftLLM())
    assert kept.cascade is not None
    assert kept.thresholds.to_dict() == kept.cascade.full_thresholds.to_dict() != off.thresholds.to_dict()


def test_row_normalise_matches_sklearn_and_keeps_empty_rows_zero():
    from scipy import sparse
    from sklearn.preprocessing import normalize

    from ticket_triage.decision.cascade import _row_normalise

    x = sparse.random(40, 200, density=0.05, format="lil", random_state=0)
    x[5] = 0
    x[0] = 0
    x = x.tocsr()
    before = x.toarray().copy()
    got = _row_normalise(x)
    np.testing.assert_allclose(got.toarray(), normalize(x).toarray(), rtol=1e-12, atol=1e-15)
    assert got.getrow(5).nnz == 0
    np.testing.assert_array_equal(x.toarray(), before)  # a copy: the caller's matrix is untouched
    y = x.astype(np.float32)
    assert _row_normalise(y).dtype == np.float32


def _thresholds(auto, labels=("a", "b")):
    from ticket_triage.decision.thresholds import Thresholds

    return Thresholds(list(labels), {lab: auto for lab in labels}, {lab: 0.1 for lab in labels}, {}, {"id": auto})


def _synthetic_fit(n=3000, wrong_band=(0.9, 0.94), seed=0, wrong_true_label=None):
    """A first stage whose exits (certified at 0.9) are wrong when its confidence is in
    ``wrong_band`` (when ``wrong_true_label`` is given, only on half of that label's tickets
    there, predicted as the other label: the first label's exits are right then); the full
    model is right on every ticket."""
    from ticket_triage.decision.cascade import CascadeFit, CheapStage

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    conf = rng.uniform(0.5, 1.0, n)
    wrong = (conf >= wrong_band[0]) & (conf < wrong_band[1])
    if wrong_true_label is not None:
        wrong &= (y == wrong_true_label) & (rng.uniform(0, 1, n) < 0.5)
    pred = np.where(wrong, 1 - y, y)
    probs = np.zeros((n, 2))
    probs[np.arange(n), pred] = conf
    probs[np.arange(n), 1 - pred] = 1 - conf
    exit_th = _thresholds(0.9)
    stage = CheapStage(None, ["a", "b"], None, None, exit_th, exit_th, None, 1.0)
    eligible = np.ones(n, bool)
    exits = stage.exits(probs, np.zeros(n), eligible)
    fit = CascadeFit(stage, exits, np.zeros(0, bool), None, int((exits & (pred == y)).sum()),
                     {"val": (probs, np.zeros(n), eligible, y)})
    full_conf = rng.uniform(0.65, 1.0, n)
    return fit, full_conf, y.copy(), y


def test_joint_search_raises_the_exits_until_the_union_is_certified():
    from ticket_triage.decision.cascade import EXIT_SHIFTS, joint_exit_search

    fit, full_conf, full_pred, y = _synthetic_fit()
    residual_tuned, plain = _thresholds(0.99), _thresholds(0.6)
    cfg = {"target_precision": 0.99, "confidence": 0.9, "min_support": 30}
    exit_th, full, report = joint_exit_search(fit, residual_tuned, plain, full_conf, full_pred, y, ["a", "b"],
                                              lambda ev, eo, et: ~ev, cfg)
    rows = {(r["candidate"], r["exit_shift"]): r for r in report["candidates"] if r["candidate"] != "per_label"}
    assert len(rows) == 1 + len(EXIT_SHIFTS)
    assert not rows[("all_tickets", 0.0)]["certified"]   # the wrong exits sink the union's bound
    # both labels are wrong in the same band: per label, both are raised alike
    per = [r for r in report["candidates"] if r["candidate"] == "per_label"]
    assert per and all(r["label_shifts"]["a"] == r["label_shifts"]["b"] for r in per)
    chosen = report["chosen"]
    assert chosen["candidate"] == "all_tickets"
    # the smallest shift that lifts the exits above the wrong band (0.9 + 0.04)
    assert chosen["exit_shift"] == 0.04
    assert all(not rows[("all_tickets", d)]["certified"] for d in EXIT_SHIFTS if d < 0.04)
    assert rows[("all_tickets", 0.04)]["auto_routed"] >= rows[("residual", 0.0)]["auto_routed"]
    assert exit_th.auto_route == {"a": 0.94, "b": 0.94} or np.allclose(list(exit_th.auto_route.values()), 0.94)
    assert full.auto_route == plain.auto_route and full is not plain
    assert "joint_exit_search" not in plain.info  # the policy's own thresholds are not touched
    assert fit.stage.exit_thresholds.auto_route == {"a": 0.9, "b": 0.9}  # nor the certified exits


def test_per_label_search_raises_only_the_label_whose_exits_are_wrong():
    from ticket_triage.decision.cascade import joint_exit_search, per_label_shifts

    # every wrong exit is predicted "b" (true "a"): "a"'s exits are all right, also in the band
    fit, full_conf, full_pred, y = _synthetic_fit(n=6000, wrong_true_label=0)
    shifts = per_label_shifts(fit, 0.99)
    assert shifts["a"] == 0.0 and 0.0 < shifts["b"] <= 0.04
    assert per_label_shifts(fit, 0.5) == {"a": 0.0, "b": 0.0}
    cfg = {"target_precision": 0.99, "confidence": 0.9, "min_support": 30}
    exit_th, full, report = joint_exit_search(fit, _thresholds(0.99), _thresholds(0.6), full_conf, full_pred, y,
                                              ["a", "b"], lambda ev, eo, et: ~ev, cfg)
    per = next(r for r in report["candidates"] if r["candidate"] == "per_label" and r["label_precision"] == 0.99)
    assert per["label_shifts"] == shifts and per["certified"]
    # it keeps "a"'s exits that the same shift for every label gives up
    same = next(r for r in report["candidates"] if r["candidate"] == "all_tickets" and r["exit_shift"] == shifts["b"])
    assert per["exits"] > same["exits"] and per["auto_routed"] >= same["auto_routed"]
    # the winner: the most cheap exits among the certified candidates that route the most
    ok = [r for r in report["candidates"] if r["certified"]]
    top = max(r["auto_routed"] for r in ok)
    chosen = report["chosen_row"]
    assert chosen["auto_routed"] == top and chosen["exits"] == max(r["exits"] for r in ok if r["auto_routed"] == top)
    assert fit.stage.exit_thresholds.auto_route == {"a": 0.9, "b": 0.9}  # the certified exits are not touched
    # on a coarser grid the per-label exits win, and they are what the first stage gets
    exit_th, full, report = joint_exit_search(fit, _thresholds(0.99), _thresholds(0.6), full_conf, full_pred, y,
                                              ["a", "b"], lambda ev, eo, et: ~ev, cfg, shifts=(0.0, 0.04, 0.1),
                                              label_precisions=(0.99,))
    assert report["chosen"]["candidate"] == "per_label"
    assert exit_th.auto_route == {"a": 0.9, "b": 0.9 + report["chosen_row"]["label_shifts"]["b"]}
    assert full.auto_route == _thresholds(0.6).auto_route


def test_joint_search_keeps_the_certified_exits_when_nothing_else_is_certified():
    from ticket_triage.decision.cascade import joint_exit_search

    fit, full_conf, full_pred, y = _synthetic_fit(wrong_band=(0.0, 0.0))  # exits all right
    wrong_full = 1 - y  # the full model is wrong everywhere: no candidate that uses it certifies
    residual_tuned, plain = _thresholds(1.01), _thresholds(0.6)  # the residual-tuned routes nothing
    exit_th, full, report = joint_exit_search(fit, residual_tuned, plain, full_conf, wrong_full, y, ["a", "b"],
                                              lambda ev, eo, et: ~ev,
                                              {"target_precision": 0.97, "confidence": 0.9, "min_support": 30})
    assert report["chosen"] == {"candidate": "residual", "exit_shift": 0.0}
    assert exit_th is fit.stage.exit_thresholds and full is residual_tuned
    assert "certified with the first stage's exits" in full.info["tuned_on"]


def test_one_ticket_scores_as_in_a_batch(bundles, small_rows):
    """A single ticket (the service's case) takes the dense centroid path; a batch the sparse
    product: the same probabilities and out-of-scope scores, empty and unknown texts included."""
    from ticket_triage.decision.cascade import _row_normalise

    stage = CheapStage.load(bundles[0])
    texts = [r["text"] for r in small_rows[:40]] + ["", "zxqv plmok wuhtr", "!!!"]
    p_batch, o_batch = stage.score(texts)
    single = [stage.score([t]) for t in texts]
    np.testing.assert_allclose(np.vstack([p for p, _ in single]), p_batch, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.concatenate([o for _, o in single]), o_batch, rtol=0, atol=1e-12)
    assert stage._centroids_dense() is not None  # the small fixture's centroids fit the dense copy
    lean = stage.classifier.lean()
    for t in texts:
        x = lean.transform([t])
        np.testing.assert_allclose(stage._centroid_similarities(x),
                                   (_row_normalise(x) @ stage._centroids_by_column()).toarray(), rtol=0, atol=1e-12)
    assert o_batch[-3] == 1.0  # an empty text has nothing in common with any centroid
    # centroids too large for the dense copy: single tickets take the sparse product
    stage.__dict__["_dense_centroids"] = None
    np.testing.assert_allclose(np.concatenate([stage.score([t])[1] for t in texts]), o_batch, rtol=0, atol=1e-12)


def test_warm_loads_the_lazy_parts_and_decides_nothing(bundles, small_rows):
    """``Triage.warm`` (the service's start-up) builds the single-ticket centroid copy and
    scores through the classifier without deciding: no LLM call; decisions are unchanged."""
    on, _ = bundles

    class CountingLLM:
        calls = 0

        def __getattr__(self, name):
            CountingLLM.calls += 1
            raise AssertionError(f"warm() touched the LLM fallback ({name})")

    tri = Triage.load(on)
    before = [d.to_dict() for d in tri.decide(_tickets(small_rows[:8]))]
    cold = Triage.load(on)
    cold.llm = CountingLLM()
    assert "_dense_centroids" not in cold.cascade.__dict__
    assert cold.warm() is cold
    assert "_dense_centroids" in cold.cascade.__dict__ and CountingLLM.calls == 0
    cold.llm = None
    assert [d.to_dict() for d in cold.decide(_tickets(small_rows[:8]))] == before


def test_trade_offs_give_the_max_coverage_loss_that_chooses_each_point():
    from ticket_triage.decision.cascade import choose, joint_exit_search, trade_offs

    def cand(name, exits, routed, certified=True):
        return {"candidate": name, "exit_shift": 0.0, "exits": exits, "exits_correct": exits, "full_routed": 0,
                "full_correct": 0, "auto_routed": routed, "union_precision_lower": 0.99, "certified": certified}

    n = 10_002  # the BANKING77 build's tuning tickets; the shape of its candidates
    rows = [cand("residual", 8897, 9177), cand("a", 8897, 9529, certified=False), cand("b", 7573, 9454),
            cand("c", 7573, 9450), cand("d", 3308, 9449), cand("e", 5883, 9453), cand("f", 825, 9449),
            cand("g", 8000, 9300)]
    report = {"n_tuning": n, "candidates": rows}
    offs = trade_offs(report)
    # the frontier, most exits first: dominated (c, d, f) and uncertified (a) candidates are left out
    assert [o["candidate"] for o in offs] == ["residual", "g", "b"]
    assert [o["max_coverage_loss"] for o in offs] == [0.0277, 0.0154, 0.0]
    assert offs[0]["exit_share"] == 8897 / n and offs[0]["auto_share"] == 9177 / n
    for o in offs:  # the loss it states is the one that makes the search choose it
        assert choose(rows, o["max_coverage_loss"], n)["candidate"] == o["candidate"]
    assert choose(rows, 0.0153, n)["candidate"] == "b"  # just under g's: the next point up
    assert trade_offs({"candidates": rows}) == []  # a report from before n_tuning was recorded
    assert trade_offs({"n_tuning": n, "candidates": [cand("x", 1, 2, certified=False)]}) == []

    # a real search records n_tuning, and its own choice is on its frontier
    fit, full_conf, full_pred, y = _synthetic_fit(n=6000, wrong_true_label=0)
    report = joint_exit_search(fit, _thresholds(0.99), _thresholds(0.6), full_conf, full_pred, y, ["a", "b"],
                               lambda ev, eo, et: ~ev, {"target_precision": 0.99, "confidence": 0.9,
                                                        "min_support": 30})[2]
    assert report["n_tuning"] == len(y)
    chosen = report["chosen_row"]
    assert (chosen["exits"], chosen["auto_routed"]) in {(o["exits"], o["auto_routed"]) for o in trade_offs(report)}


def test_cascade_tradeoff_plot(bundles, tmp_path):
    from matplotlib.image import imread

    from ticket_triage.decision.cascade import search_report
    from ticket_triage.evaluation import write_cascade_plot

    on, off = bundles
    out = write_cascade_plot(on, tmp_path)
    assert out == tmp_path / "cascade_tradeoff.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(out).shape[0] > 100
    csv = out.with_suffix(".csv").read_text().splitlines()
    assert csv[0] == "candidate,exit_shift,exit_share,auto_share,union_precision_lower,certified,chosen"
    report = json.loads((on / CASCADE_DIR / "cascade.json").read_text())["full_thresholds"]["info"]["joint_exit_search"]
    assert search_report(on) == report and search_report(off) is None
    assert len(csv) == 1 + len(report["candidates"])
    assert sum(line.endswith(",True") for line in csv[1:]) == 1  # the chosen candidate is marked
    assert write_cascade_plot(off, tmp_path / "off") is None and not (tmp_path / "off").exists()
