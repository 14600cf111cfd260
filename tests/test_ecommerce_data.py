"""The sample shop shipped in ecomlm/data: reproducible, big enough, consistent."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from ecomlm.data import DATA_DIR, FILES, load_sample_shop, path
from ecomlm.ecommerce import sample_shop
from ecomlm.errors import NotFoundError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def shop():
    return load_sample_shop()


def test_generator_reproduces_files_byte_for_byte():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_sample_shop.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "identical" in r.stdout, r.stdout + r.stderr


def test_files_are_small_and_present():
    total = sum(os.path.getsize(path(f)) for f in FILES)
    assert total < 3 * 2 ** 20
    with pytest.raises(NotFoundError):
        path("nope.csv")


def test_products(shop):
    p = shop.products
    assert len(p) >= 200 and p["product_id"].is_unique
    assert p["category"].nunique() >= 6
    for col in ("product_id", "name", "brand", "category", "color", "material", "sizes", "price", "weight_g", "features"):
        assert col in p.columns and p[col].notna().all(), col
    assert p["name"].is_unique
    assert (p["price"] > 0).all() and p["price"].nunique() > 100


def test_events_follow_latent_tastes(shop):
    e = shop.events
    assert len(e) >= 2000 and set(e["event"]) == {"view", "cart", "purchase"}
    assert pd.api.types.is_datetime64_any_dtype(e["timestamp"])
    assert set(e["product_id"]) <= set(shop.products["product_id"])
    # tastes are concentrated: a user's top category holds most of their events
    top_share = e.merge(shop.products, on="product_id").groupby("user_id")["category"].agg(
        lambda c: c.value_counts(normalize=True).iloc[0])
    assert top_share.mean() > 0.5


def test_reviews(shop):
    r = shop.reviews
    assert len(r) >= 500 and r["text"].nunique() > 500
    assert set(r["sentiment"]) == {"positive", "neutral", "negative"}
    assert set(r["lang"]) == {"en", "zh"}
    aspects = {a["aspect"] for asp in r["aspects"] for a in asp}
    assert aspects == {"size", "quality", "shipping", "price"}
    for text, asp in zip(r["text"], r["aspects"]):
        for a in asp:
            assert a["span"].lower() in text.lower()
            assert a["polarity"] in ("positive", "negative")


def test_knowledge_base_and_questions(shop):
    kb = {r["id"]: r for r in shop.knowledge_base}
    assert len(kb) == len(shop.knowledge_base) >= 30
    assert any(r["lang"] == "zh" for r in kb.values())
    qs = shop.questions
    inscope = [q for q in qs if q["type"] == "in_scope"]
    assert len(inscope) >= 100
    # a dev split (2 per entry) for tuning and a test split of >= 100 to report
    assert {q["split"] for q in inscope} == {"dev", "test"} and sum(q["split"] == "test" for q in inscope) >= 100
    assert len({q["question"].lower() for q in inscope}) == len(inscope)
    asked = {q.lower() for r in kb.values() for q in r.get("questions", [])}
    for q in inscope + [q for q in qs if q["type"] == "follow_up"]:
        assert q["kb_id"] in kb and q["fact"].lower() in kb[q["kb_id"]]["text"].lower(), q
        assert q["question"].lower() not in asked          # held out from the index and the dialogues
    assert sum(q["type"] == "handoff" for q in qs) >= 10
    assert all(q["history"] for q in qs if q["type"] == "follow_up")


def test_dialogues_are_openai_chat_format_and_grounded(shop):
    d = shop.dialogues
    assert len(d) >= 300
    multi = 0
    for x in d:
        assert list(x) == ["messages"]
        roles = [m["role"] for m in x["messages"]]
        assert roles[0] == "system" and roles[1] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles[1:], roles[2:]))
        multi += roles.count("user") > 1
    assert multi >= 100
    text = json.dumps(d)
    for fact in ("30 days", "60 days", "$4.95", "$50", "3-5 business days", "2-year", "PayPal"):
        assert fact in text
    held = [q["question"] for q in shop.questions]
    assert not any(q in text for q in held if q is not None and len(q) > 25)


def test_sample_shop_alias():
    s = sample_shop()
    assert len(s.kb_records("en")) + len(s.kb_records("zh")) == len(s.knowledge_base)
    assert "Brightcart" in repr(s) and os.path.isdir(DATA_DIR)
