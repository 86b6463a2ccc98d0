import copy

import pytest
import yaml

from ticket_triage.taxonomy import TaxonomyError, load_taxonomy, parse_taxonomy

from helpers import ROOT

DEMO = ROOT / "conf" / "taxonomy" / "banking77.yaml"


def raw():
    return yaml.safe_load(DEMO.read_text())


def test_demo_taxonomy_loads():
    tax = load_taxonomy(DEMO)
    assert len(tax.topics) == 10
    assert tax.tag_to_topic["lost_or_stolen_card"] == "fraud_and_security"
    assert tax.map_tags(["nonsense", "card_arrival"]) == "card_management"
    assert [u.id for u in tax.urgency] == ["P0", "P1", "P2", "P3"]
    assert "10 topics" in tax.summary()


def test_duplicate_id_is_named():
    r = raw()
    r["topics"].append(copy.deepcopy(r["topics"][0]))
    r["topics"][-1]["maps_from"] = []
    with pytest.raises(TaxonomyError) as e:
        parse_taxonomy(r)
    assert any("card_management" in p and "duplicate id" in p for p in e.value.problems)


def test_tag_mapped_twice_is_named():
    r = raw()
    r["topics"][1]["maps_from"].append("card_arrival")
    with pytest.raises(TaxonomyError) as e:
        parse_taxonomy(r)
    assert any("'card_payments'" in p and "card_arrival" in p and "card_management" in p for p in e.value.problems)


@pytest.mark.parametrize("field, value, needle", [
    ("examples", ["only one"], "field 'examples'"),
    ("description", "", "field 'description'"),
])
def test_missing_examples_or_description(field, value, needle):
    r = raw()
    r["topics"][2][field] = value
    with pytest.raises(TaxonomyError) as e:
        parse_taxonomy(r)
    assert any("'transfers'" in p and needle in p for p in e.value.problems)


def test_topic_count_outside_range_warns_not_fails():
    r = raw()
    r["topics"] = r["topics"][:3]
    tax = parse_taxonomy(r)
    assert tax.warnings and "3 topics" in tax.warnings[0]


def test_new_category_is_reported_not_an_error():
    tax = load_taxonomy(DEMO)
    counts = {t: 10 for t in tax.topic_ids if t != "refunds"}
    assert tax.missing_history(counts) == ["refunds"]


def test_cli_check(capsys, tmp_path):
    from ticket_triage.cli import main

    assert main(["taxonomy", "check", str(DEMO)]) == 0
    assert "banking-support" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("topics: [{id: a}]\n")
    assert main(["taxonomy", "check", str(bad)]) == 1
    assert "topic 'a': field 'description'" in capsys.readouterr().err
