import json

import numpy as np
import pytest

from ticket_triage.decision.triage import Triage, aggregate_to_topics


def test_aggregate_fine_to_topics():
    p = np.array([[0.2, 0.3, 0.5]])
    out = aggregate_to_topics(p, ["i1", "i2", "i3"], {"i1": "A", "i2": "A", "i3": "B"}, ["A", "B"])
    assert np.allclose(out, [[0.5, 0.5]])


def test_bundle_decides_and_explains(tiny_bundle):
    tri = Triage.load(tiny_bundle)
    ds = tri.decide([
        {"id": "a", "subject": "", "body": "My card was stolen yesterday and someone used it"},
        {"id": "b", "subject": "Transfer", "body": "My transfer to a friend is still pending since Monday"},
        {"id": "c", "subject": "", "body": "   "},
        {"id": "d", "subject": "", "body": "\x00\xff" * 10},
    ])
    assert [d.ticket_id for d in ds] == ["a", "b", "c", "d"]
    assert ds[0].topic == "fraud_and_security" and ds[0].urgency == "P1" and ds[0].rule_hits
    assert ds[0].band != "auto_route" or ds[0].source == "rules"
    assert ds[1].topic == "transfers" and ds[1].source == "model"
    assert ds[2].band == "review" and ds[2].reason == "empty_text"
    for d in ds:
        assert d.band in ("auto_route", "draft", "review")
        json.dumps(d.to_dict())
    assert tri.describe()["llm_fallback"] == "off"


def test_huge_text_is_handled(tiny_bundle):
    tri = Triage.load(tiny_bundle)
    d = tri.decide_one({"subject": "x", "body": "transfer pending " * 70000})
    assert d.topic is not None


def test_urgency_and_secondary_tag_models_ship_with_the_bundle(tmp_path, base_params, small_rows):
    """Where the history carries urgency and several tags per ticket, the bundle learns both."""
    import copy

    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    rows = copy.deepcopy(small_rows) * 3  # 144 rows: enough for the side models
    for i, r in enumerate(rows):
        r["id"] = f"{r['id']}-{i}"
        lost = r["label_fine"] == "lost_or_stolen_card"
        r["urgency"] = "P1" if lost else "P3"
        r["tags"] = [r["label_fine"], "card_issue" if "card" in r["label_fine"] else "money_movement"]
    params = copy.deepcopy(base_params)
    params["thresholds"]["tune"] = False
    params["rules"] = {"rules": []}  # the urgency must come from the model here, not the rules
    clf = build_classifier("tfidf_logreg", **{k: v for k, v in params["model"].items() if k != "family"})
    clf.fit([r["text"] for r in rows], [r["topic"] for r in rows], progress=False)
    bundle = build_bundle(clf, rows, rows, params, tmp_path / "b")
    assert (bundle / "urgency").is_dir() and (bundle / "secondary").is_dir()
    tri = Triage.load(bundle)
    lost = next(r for r in rows if r["label_fine"] == "lost_or_stolen_card")
    other = next(r for r in rows if r["label_fine"] == "pending_transfer")
    d1, d2 = tri.decide([{"text": lost["text"]}, {"text": other["text"]}])
    assert d1.urgency == "P1" and d2.urgency == "P3"
    assert "card_issue" in d1.secondary_tags and "money_movement" in d2.secondary_tags


def test_review_capacity_is_shared_with_out_of_scope_and_pinned_tickets(base_params):
    """reserved_review_share: auto leaves the confidence cut only what the out-of-scope cut-off
    and the review-pinning rules do not already send to review on validation."""
    import pytest

    from ticket_triage.decision.bundle import _reserved_review_share
    from ticket_triage.taxonomy import parse_taxonomy

    tax = parse_taxonomy(base_params["taxonomy"])
    texts = ["I want to file a GDPR request to delete all my personal data",  # legal_privacy: review
             "My card payment is still pending", "How do I top up by bank transfer?",
             "Which currencies can I exchange?", ""]
    share, info = _reserved_review_share({"reserved_review_share": "auto"}, 0.03, texts, base_params, tax)
    assert info["mode"] == "auto" and info["rule_pinned"] == pytest.approx(0.25)  # 1 of 4 non-empty
    assert share == pytest.approx(0.28)
    share, info = _reserved_review_share({"reserved_review_share": 0.01}, 0.03, texts, base_params, tax)
    assert share == 0.01 and info["mode"] == "fixed"
    with pytest.raises(ValueError, match="number or 'auto'"):
        _reserved_review_share({"reserved_review_share": "lots"}, 0.0, texts, base_params, tax)


def test_tuned_bundle_review_band_fits_the_capacity(tmp_path, base_params, small_rows):
    """With a capacity of 2 tickets in 48 a day and one validation ticket pinned to review by a
    rule, the confidence cut may send at most one more validation ticket to review."""
    import copy

    from ticket_triage.decision.bundle import build_bundle
    from ticket_triage.models import build_classifier

    params = copy.deepcopy(base_params)
    params["thresholds"].update(tune=True, cross_fit_folds=0, tickets_per_day=48, review_capacity=2,
                                reserved_review_share="auto")
    rows = copy.deepcopy(small_rows)
    rows[0]["text"] = "Please delete my personal data under GDPR. " + rows[0]["text"]
    clf = build_classifier("tfidf_logreg", **{k: v for k, v in params["model"].items() if k != "family"})
    clf.fit([r["text"] for r in rows], [r["topic"] for r in rows], progress=False)
    bundle = build_bundle(clf, rows, rows, params, tmp_path / "b")
    info = json.loads((bundle / "policy.json").read_text())["thresholds"]["info"]
    reserved = info["reserved_review"]
    assert reserved["mode"] == "auto" and reserved["rule_pinned"] >= 1 / len(rows)
    assert info["review_budget_share"] == max(0.0, 2 / 48 - reserved["share"])
    tri = Triage.load(bundle)
    ds = tri.decide([{"text": r["text"]} for r in rows])
    assert sum(d.band == "review" for d in ds) <= 2


def test_serving_cleans_with_the_bundles_cleaning_options(tiny_bundle, tmp_path, base_params):
    """Train/serve parity: Triage.clean applies the bundle's clean.json (all of it: quotes,
    signatures, redaction, length), exactly as the clean stage did with the same options."""
    import json
    import shutil

    from ticket_triage.data import clean_tickets
    from ticket_triage.decision.triage import Triage
    from ticket_triage.schema import Ticket
    from ticket_triage.taxonomy import parse_taxonomy

    ticket = Ticket(id="q1", subject="Card blocked",
                    body="My card is blocked since Monday, please help.\n\nBest regards,\nAnna Smith\n\n"
                         "On Mon, 3 Jun 2024 at 10:00, Support <help@bank.example> wrote:\n"
                         "> Call me at +44 20 7946 0958 about your card",
                    topic="card_payments")
    options = {"redact_pii": False, "strip_quotes": False, "strip_signatures": False,
               "dedupe": True, "max_chars": 90}
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "clean.json").write_text(json.dumps(options))
    served = Triage.load(bundle).clean(ticket)
    kept, _, _, _ = clean_tickets([ticket], parse_taxonomy(base_params["taxonomy"]), options)
    trained = kept[0]["text"]
    assert served == trained
    assert "Anna Smith" in served and len(served) <= 90  # kept: the bundle said so
    assert Triage.load(tiny_bundle).clean(ticket) != served  # the defaults do clean more


def test_language_prior_is_the_data_sets_language(tiny_bundle):
    """The bundle keeps the data config's language (banking77: en) as the prior: English with
    code and logs is not sent to review as unsupported_language; clear German still is."""
    tri = Triage.load(tiny_bundle)
    assert tri.policy.language_prior == "en" and tri.policy.languages == ["en"]
    code = ("transfer failed\n```\nTypeError: Cannot read properties of undefined (reading 'iban')\n"
            "    at submit (/srv/app/pay_form.js:12:7)\n```\nle code erreur est: E_TRANSFERT_REFUSE")
    german = "Sehr geehrte Damen und Herren, meine Überweisung ist seit Montag nicht angekommen, bitte helfen Sie mir."
    d_code, d_de = tri.decide([{"id": "x", "subject": "", "body": code}, {"id": "y", "subject": "", "body": german}])
    assert d_code.language == "en" and d_code.reason != "unsupported_language"
    assert d_de.language == "de" and d_de.band == "review" and d_de.reason == "unsupported_language"
    # an explicit prior (triage classify --mapping <data config>) wins over the bundle's
    assert tri.decide([{"id": "z", "subject": "", "body": "12345 #999"}], language_prior="de")[0].language == "de"
