"""Query expansion in KnowledgeBase search (ecomlm/ecommerce/_expand.py):
a customer's words for a thing gain the knowledge base's own words for it."""

import json

import numpy as np
import pandas as pd
import pytest

from ecomlm.ecommerce import KnowledgeBase
from ecomlm.ecommerce._expand import QueryExpander, default_lexicon
from ecomlm.errors import BadRequestError, NotFoundError
from test_ecommerce_logic import bag_embedder as bag_of_words

RECORDS = [
    {"id": "returns", "title": "Returns", "text": "Return items within 30 days for a refund."},
    {"id": "returns-electronics", "title": "Electronics", "text": "Electronics can be returned within 14 days."},
    {"id": "pay-later", "title": "Pay later", "text": "Pay in 4 instalments with Klarna, interest free."},
    {"id": "shipping", "title": "Shipping", "text": "Standard shipping costs $4.95, free over $50."},
]
LEXICON = {
    "groups": [["return", "send back", "bring back"],
               ["instalment", "installment", "spread the cost", "pay over time"],
               ["parcel", "package", "shipment"]],               # no member in the KB: adds nothing
    "product_types": {"electronics": ["keyboard", "smartwatch"], "garden": ["rake"]},
}


def bag_embedder(texts):
    return bag_of_words(texts, dim=512)                # fewer hash collisions than the default 256


def kb(**kw):
    return KnowledgeBase(RECORDS, embedder=bag_embedder, **kw)


def test_expansion_adds_only_the_knowledge_bases_own_terms():
    base = kb(lexicon=LEXICON)
    assert base.expand("Can I send it back?") == "Can I send it back?"          # "send it back" is no member
    assert base.expand("Can I send back my order?") == "Can I send back my order? (return)"
    # most specific first: "electronics" is in 1 of the 4 entries, "return" in 2
    assert base.expand("Sending back a keyboard") == "Sending back a keyboard (electronics, return)"
    assert base.expand("I brought back two keyboards") == "I brought back two keyboards (electronics)"
    assert base.expand("Can I spread the cost?") == "Can I spread the cost? (instalment)"
    assert base.expand("Where is my parcel?") == "Where is my parcel?"          # no group member in the KB
    assert base.expand("Can I return a rake?") == "Can I return a rake?"        # category not in the KB
    assert base.expand("Return a keyboard") == "Return a keyboard (electronics)"  # no term the query has
    assert kb(lexicon=False).expand("Sending back a keyboard") == "Sending back a keyboard"


def test_catalog_maps_product_types_to_categories():
    catalog = pd.DataFrame({"category": ["electronics", "shoes"], "subcategory": ["e-reader", "trail runner"]})
    base = kb(lexicon=False, catalog=catalog)
    assert base.expand("Can I return my e-readers?") == "Can I return my e-readers? (electronics)"
    assert base.expand("My runner broke") == "My runner broke"                  # "shoes" is not in the KB
    both = kb(lexicon=LEXICON, catalog=[{"category": "electronics", "subcategory": "tablet"}])
    assert both.expander.added("send back a tablet and a smartwatch") == ["electronics", "return"]


def test_longest_mention_wins_and_named_concepts_add_nothing():
    lex = {"groups": [["gift card", "gift voucher"], ["promo code", "voucher"], ["return", "send back"]]}
    base = KnowledgeBase([{"id": "g", "text": "Gift cards never expire."}, {"id": "p", "text": "One promo code per order."},
                          {"id": "r", "text": "Return within 30 days."}], embedder=bag_embedder, lexicon=lex)
    assert base.expand("Do gift vouchers expire?") == "Do gift vouchers expire? (gift card)"
    assert base.expand("Can I use two vouchers?") == "Can I use two vouchers? (promo code)"
    # the query already says "return": the group's other words add nothing
    assert base.expand("Can I return it or send back part of it?") == "Can I return it or send back part of it?"


def test_expansion_changes_the_ranking():
    q = "Can I bring back a smartwatch within 30 days?"
    assert kb(lexicon=False).search(q, k=1)[0].id != "returns-electronics"
    assert kb(lexicon=LEXICON).search(q, k=1)[0].id == "returns-electronics"
    q2 = "Can I spread the cost over a few months?"
    i = [r["id"] for r in RECORDS].index("pay-later")
    assert kb(lexicon=LEXICON).scores(q2)[0][i] > kb(lexicon=False).scores(q2)[0][i] + 0.1
    # half weight: the query vector is the normalised mean of the plain and expanded vectors
    half = kb(lexicon=LEXICON, expansion_weight=0.5)
    v = bag_embedder([q])[0] + bag_embedder([half.expand(q)])[0]
    np.testing.assert_allclose(half.query_vectors([q])[0], v / np.linalg.norm(v), rtol=1e-6)
    np.testing.assert_allclose(kb(lexicon=LEXICON, expansion_weight=0.0).query_vectors([q]), bag_embedder([q]))


def test_search_many_equals_search_with_expansion():
    base = kb(lexicon=LEXICON)
    qs = ["bring back a keyboard", "spread the cost", "shipping price"]
    many = base.search_many(qs, k=2)
    for q, hits in zip(qs, many):
        assert [(h.id, round(h.score, 6)) for h in hits] == [(h.id, round(h.score, 6)) for h in base.search(q, k=2)]


def test_default_lexicon_is_well_formed():
    lex = default_lexicon()
    assert len(lex["groups"]) >= 60 and len(lex["product_types"]) >= 8
    QueryExpander(["return refund shipping electronics"], lex)            # compiles every pattern


@pytest.mark.parametrize("kwargs, param", [
    (dict(lexicon={"groups": "return"}), "lexicon.groups"),
    (dict(lexicon={"groups": [["a", 1]]}), "lexicon.groups"),
    (dict(lexicon={"product_types": {"x": "y"}}), "lexicon.product_types"),
    (dict(lexicon=["return"]), "lexicon"),
    (dict(catalog=pd.DataFrame({"name": ["x"]})), "catalog"),
    (dict(catalog=[{"subcategory": "x"}]), "catalog[0].category"),
    (dict(catalog="products.csv"), "catalog"),
    (dict(expansion_weight=1.5), "expansion_weight"),
    (dict(expansion_weight=True), "expansion_weight"),
])
def test_bad_expansion_arguments(kwargs, param):
    with pytest.raises(BadRequestError) as e:
        kb(**kwargs)
    assert e.value.param == param


def test_lexicon_from_a_file(tmp_path):
    p = tmp_path / "lex.json"
    p.write_text(json.dumps(LEXICON))
    assert kb(lexicon=str(p)).expand("bring back") == "bring back (return)"
    with pytest.raises(NotFoundError):
        kb(lexicon=str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadRequestError, match="not a JSON lexicon"):
        kb(lexicon=str(tmp_path / "bad.json"))


def test_category_term_prefers_entries_about_the_mentioned_category():
    lex = {"groups": [], "product_types": {"electronics": ["smartwatch"], "shoes": ["sneaker"]},
           "category_names": {"apparel": ["clothing"]}}
    recs = [{"id": "r", "title": "Returns", "text": "Return within 30 days."},
            {"id": "re", "title": "Returning electronics", "text": "Within 14 days."},
            {"id": "rs", "title": "Returning shoes", "text": "Within 60 days."},
            {"id": "sz", "title": "Clothing size guide", "text": "Measure your chest."}]
    base = KnowledgeBase(recs, embedder=bag_embedder, lexicon=lex, category_weight=0.1)
    assert base.entry_categories == [set(), {"electronics"}, {"shoes"}, {"apparel"}]
    assert base.expander.mentions("my smartwatch and sneakers") == {"electronics", "shoes"}
    np.testing.assert_allclose(base._category_term("return a smartwatch"), [-0.05, 0.0, -0.1, -0.1])
    np.testing.assert_allclose(base._category_term("return clothing"), [-0.05, -0.1, -0.1, 0.0])
    assert base._category_term("return it") is None
    # the term is added to the score; without it the scores are the plain ones
    off = KnowledgeBase(recs, embedder=bag_embedder, lexicon=lex, category_weight=0.0)
    np.testing.assert_allclose(base.scores("return a smartwatch")[0],
                               off.scores("return a smartwatch")[0] + [-0.05, 0.0, -0.1, -0.1], atol=1e-6)
    with pytest.raises(BadRequestError) as e:
        KnowledgeBase(recs, embedder=bag_embedder, category_weight=-1)
    assert e.value.param == "category_weight"
    with pytest.raises(BadRequestError) as e:
        KnowledgeBase(recs, embedder=bag_embedder, lexicon={"category_names": {"x": "y"}})
    assert e.value.param == "lexicon.category_names"
