"""ecomlm.ecommerce without the embedding model: a hashed bag-of-words embedder
stands in for MiniLM, so these tests check logic, loaders and validation fast."""

import json
import zlib

import numpy as np
import pandas as pd
import pytest

from ecomlm.ecommerce import (BM25, KnowledgeBase, Recommender, ReviewAnalyzer, check_description,
                              find_invented_numbers, find_missing, sample_shop, time_split)
from ecomlm.ecommerce._learn import GradientBoostedTrees, LogisticRegression, SoftmaxRegression
from ecomlm.ecommerce.knowledge import tokenize
from ecomlm.ecommerce.reviews import split_clauses
from ecomlm.errors import BadRequestError, NotFoundError


def bag_embedder(texts, dim=256):
    X = np.zeros((len(texts), dim), np.float32)
    for r, t in enumerate(texts):
        for w in tokenize(t):
            X[r, zlib.crc32(w.encode()) % dim] += 1
    X[:, 0] += 1e-3
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def shop():
    return sample_shop()


RECORDS = [{"id": "returns", "title": "Returns", "text": "Return items within 30 days for a refund."},
           {"id": "shipping", "title": "Shipping", "text": "Standard shipping costs $4.95, free over $50."},
           {"id": "warranty", "title": "Warranty", "text": "Electronics carry a 2-year warranty."}]


# ---------------------------------------------------------------- knowledge base
def test_tokenize_and_bm25():
    assert tokenize("Returning the shoes, please!") == ["return", "shoe"]
    assert "退货" in tokenize("退货")
    bm = BM25([tokenize(r["text"]) for r in RECORDS])
    s = bm.scores(tokenize("shipping cost"))
    assert s.argmax() == 1 and s[0] == 0


def test_kb_search_order_and_fields():
    kb = KnowledgeBase.from_records(RECORDS, embedder=bag_embedder, lexical_weight=0.5)
    hits = kb.search("how much is shipping", k=2)
    assert [h.id for h in hits][0] == "shipping" and len(hits) == 2
    assert hits[0].score >= hits[1].score and hits[0].title == "Shipping" and "$4.95" in hits[0].text
    assert len(kb.search("refund", k=10)) == 3
    assert kb.get("returns")["title"] == "Returns" and "warranty" in kb and len(kb) == 3


def test_kb_questions_field_is_used():
    recs = [dict(RECORDS[0], questions=["can I send it back"]), RECORDS[1]]
    kb = KnowledgeBase(recs, embedder=bag_embedder, question_weight=1.0)
    assert kb.search("send it back")[0].id == "returns"


def test_kb_loaders(tmp_path):
    csv_path = tmp_path / "faq.csv"
    pd.DataFrame(RECORDS).assign(topic="x").to_csv(csv_path, index=False)
    kb = KnowledgeBase.from_csv(csv_path, embedder=bag_embedder)
    assert kb.ids == ["returns", "shipping", "warranty"] and kb.get("returns")["topic"] == "x"
    (tmp_path / "kb.json").write_text(json.dumps(RECORDS))
    (tmp_path / "kb.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS))
    (tmp_path / "kb2.json").write_text(json.dumps({"entries": RECORDS}))
    for name in ("kb.json", "kb.jsonl", "kb2.json"):
        assert len(KnowledgeBase.from_json(tmp_path / name, embedder=bag_embedder)) == 3
    md = "# Help\nintro\n\n## Returns {#returns}\nReturn within 30 days.\n\n## Free Shipping\nOver $50.\n### Note\nstill here\n"
    kb = KnowledgeBase.from_markdown(md, embedder=bag_embedder)
    assert kb.ids == ["returns", "free-shipping"] and "still here" in kb.get("free-shipping")["text"]
    (tmp_path / "kb.md").write_text(md)
    assert len(KnowledgeBase.from_markdown(tmp_path / "kb.md", embedder=bag_embedder)) == 2


def test_kb_loads_shipped_files(shop):
    from ecomlm.data import path

    assert len(KnowledgeBase.from_csv(path("faq.csv"), embedder=bag_embedder)) == len(shop.kb_records("en"))
    assert len(KnowledgeBase.from_markdown(path("knowledge_base.md"), embedder=bag_embedder)) == len(shop.kb_records("en"))
    kb = KnowledgeBase.from_json(path("knowledge_base.jsonl"), embedder=bag_embedder)
    assert all(h.metadata["lang"] == "zh" for h in kb.search("退货", k=3, lang="zh"))


@pytest.mark.parametrize("records, param", [
    ([], "records"), ("text", "records"), ([{"title": "x", "text": "y"}], "records[0].id"),
    ([{"id": "a", "text": ""}], "records[0].text"), ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "records[1].id"),
    ([1], "records[0]")])
def test_kb_validation(records, param):
    with pytest.raises(BadRequestError) as e:
        KnowledgeBase.from_records(records, embedder=bag_embedder)
    assert e.value.param == param


def test_kb_bad_calls(tmp_path):
    kb = KnowledgeBase.from_records(RECORDS, embedder=bag_embedder)
    for kw, param in (({"query": ""}, "query"), ({"query": 3}, "query"), ({"query": "x", "k": 0}, "k")):
        with pytest.raises(BadRequestError) as e:
            kb.search(**kw)
        assert e.value.param == param
    with pytest.raises(NotFoundError):
        KnowledgeBase.from_csv(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("key,body\n1,2\n")
    with pytest.raises(BadRequestError, match="column 'id'"):
        KnowledgeBase.from_csv(tmp_path / "bad.csv", embedder=bag_embedder)
    with pytest.raises(NotFoundError):
        kb.get("nope")


# ---------------------------------------------------------------------- learners
def _data(n, rng):
    X = rng.normal(size=(n, 4))
    z = 2 * X[:, 0] - X[:, 1] + 3 * (np.abs(X[:, 2]) > 1)
    return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)


def _auc(y, s):
    r = np.argsort(np.argsort(s)) + 1
    return (r[y == 1].sum() - y.sum() * (y.sum() + 1) / 2) / (y.sum() * (len(y) - y.sum()))


def test_learners():
    rng = np.random.default_rng(0)
    X, y = _data(4000, rng)
    Xt, yt = _data(2000, rng)
    lr = _auc(yt, LogisticRegression().fit(X, y).predict_proba(Xt))
    gb = _auc(yt, GradientBoostedTrees(n_trees=60).fit(X, y).predict_proba(Xt))
    assert lr > 0.75 and gb > lr + 0.03            # trees catch the |x2| > 1 step a line cannot
    y3 = np.digitize(X[:, 0] + X[:, 1], [-1, 1])
    assert (SoftmaxRegression().fit(X, y3).predict(X) == y3).mean() > 0.9


# ---------------------------------------------------------------------- recommender
@pytest.fixture(scope="module")
def split(shop):
    return time_split(shop.events, 0.2)


def test_time_split(split, shop):
    train, test = split
    assert len(train) + len(test) == len(shop.events) and train["timestamp"].max() <= test["timestamp"].min()


def test_recommender_logic(shop, split):
    train, test = split
    rec = Recommender(embedder=bag_embedder, ranker="logistic").fit(shop.products, train)
    user = train["user_id"].iloc[0]
    recs = rec.recommend(user, k=5)
    assert len(recs) == 5 and all(a[1] >= b[1] for a, b in zip(recs, recs[1:]))
    seen = set(train[train["user_id"] == user]["product_id"])
    assert not seen & {p for p, _ in recs}
    assert len(rec.recommend("someone-new", k=3)) == 3
    assert rec.recommend(query="hiking boot", k=1)[0][0] in set(shop.products[shop.products["subcategory"] == "hiking boot"]["product_id"])
    assert rec.explain(user, recs[0][0]).startswith("We recommend the ")
    m = rec.evaluate(test, k=10)
    pop = Recommender("popularity").fit(shop.products, train).evaluate(test, k=10)
    rnd = Recommender("random").fit(shop.products, train).evaluate(test, k=10)
    assert m["recall"] > pop["recall"] > rnd["recall"] and 0 <= m["coverage"] <= 1
    new = pd.DataFrame([{"product_id": "PNEW", "name": "Glacier waterproof hiking boot", "category": "shoes", "price": 150}])
    rec.add_products(new)
    assert rec.recommend(query="Glacier waterproof hiking boot", k=1)[0][0] == "PNEW"


def test_recommender_validation(shop, split):
    train, _ = split
    with pytest.raises(BadRequestError) as e:
        Recommender(embedder=bag_embedder).fit(shop.products.iloc[:0], train)
    assert e.value.param == "products"
    with pytest.raises(BadRequestError) as e:
        Recommender(embedder=bag_embedder).fit(shop.products, train.drop(columns="event"))
    assert e.value.param == "events.event"
    with pytest.raises(BadRequestError) as e:
        Recommender(embedder=bag_embedder).fit(shop.products, train.assign(event="click"))
    assert e.value.param == "events.event"
    with pytest.raises(BadRequestError) as e:
        Recommender(embedder=bag_embedder).fit(shop.products.iloc[:10], train)
    assert e.value.param == "events.product_id"
    with pytest.raises(BadRequestError) as e:
        Recommender(embedder=bag_embedder).fit("products.csv", train)
    assert e.value.param == "products"
    with pytest.raises(BadRequestError):
        Recommender(method="magic")
    rec = Recommender("popularity")
    with pytest.raises(BadRequestError, match="fit"):
        rec.recommend("U1")
    rec.fit(shop.products, train)
    with pytest.raises(BadRequestError) as e:
        rec.recommend("U1", k=0)
    assert e.value.param == "k"
    with pytest.raises(NotFoundError):
        rec.explain("U1", "P0")


# ---------------------------------------------------------------------- reviews
def test_split_clauses():
    assert split_clauses("Too small, but fast shipping") == ["Too small", "fast shipping"]
    assert split_clauses("尺码偏小，物流很快。") == ["尺码偏小", "物流很快"]


def test_review_analyzer_logic(shop):
    r = shop.reviews[shop.reviews["lang"] == "en"].iloc[:200]
    ra = ReviewAnalyzer(embedder=bag_embedder).fit(r)
    out = ra.analyze(["Runs small, but fast shipping."])[0]
    assert out.sentiment in ("negative", "neutral", "positive") and -1 <= out.score <= 1
    assert out.aspects.get("shipping") == "positive"
    s = ra.summarize(r["product_id"].iloc[0])
    assert s.n_reviews >= 1 and s.text.startswith(f"{s.n_reviews} review")
    assert ra.summarize(["Great quality.", "Shipping took forever."]).aspects["shipping"]["negative"] == 1
    ra2 = ReviewAnalyzer(embedder=bag_embedder).fit(pd.DataFrame({"text": ["good", "bad", "ok"], "rating": [5, 1, 3]}))
    assert ra2.analyze("good")[0].aspects == {}


def test_review_validation(shop):
    with pytest.raises(BadRequestError) as e:
        ReviewAnalyzer(embedder=bag_embedder).fit(pd.DataFrame({"text": ["x"]}))
    assert e.value.param == "reviews.sentiment"
    with pytest.raises(BadRequestError) as e:
        ReviewAnalyzer(embedder=bag_embedder).fit(pd.DataFrame({"body": ["x"], "rating": [1]}))
    assert e.value.param == "reviews.text"
    with pytest.raises(BadRequestError) as e:
        ReviewAnalyzer(embedder=bag_embedder).fit(pd.DataFrame({"text": ["x"], "sentiment": ["great"]}))
    assert e.value.param == "reviews.sentiment"
    with pytest.raises(BadRequestError):
        ReviewAnalyzer(embedder=bag_embedder).analyze(["x"])
    ra = ReviewAnalyzer(embedder=bag_embedder).fit(shop.reviews.iloc[:60])
    for bad in ([], [""], [3], None):
        with pytest.raises(BadRequestError):
            ra.analyze(bad)
    with pytest.raises(NotFoundError):
        ra.summarize("P0000")


# --------------------------------------------------------------------- descriptions
def test_faithfulness_checks():
    attrs = {"product_id": "P1", "name": "Strideline Aero Running Shoe", "color": "red", "price": 59.0,
             "features": "8 mm drop; rubber outsole", "weight_g": 560}
    good = "The Strideline Aero running shoes come in red for $59.00, weigh 560 g, with an 8 mm drop and a rubber outsole."
    d = check_description(good, attrs)
    assert d.missing == [] and d.invented == [] and d.faithful
    bad = "A red running shoe with a 2-year warranty, now 1,299 dollars."
    assert find_invented_numbers(bad, attrs) == ["2-year", "1,299"]
    # a number the attributes hold, but with another unit, is invented too; so is a spelled-out one
    knife = {"name": "Canyon Chef's Knife", "sizes": "20 cm", "price": 87.99, "weight_g": 230,
             "features": "58 HRC hardness; full tang; two rivets"}
    assert find_invented_numbers("A 20-cm blade, only $87.99, 230 g, 58 HRC and two rivets.", knife) == []
    assert find_invented_numbers("A 20-cm, 87.99-g knife with 230 HRC hardness for $230.", knife) == \
        ["87.99-g", "230 HRC", "$230"]
    assert find_invented_numbers("Three colours and twelve styles, one size.", knife) == ["Three", "twelve"]
    # values match as whole words: size "S" is not stated by "shoes", nor "M" by "made"
    tee = {"name": "Crew T-Shirt", "sizes": "XS;S;M;L;XL", "brand": "Nook & Co."}
    assert find_missing("Nook & Co. crew t-shirts, made in sizes XS and XL.", tee) == ["sizes=S", "sizes=M", "sizes=L"]
    assert find_missing("The Nook & Co. company's Crew T-Shirt, made in the U.S., XS, M, L and XL.", tee) == ["sizes=S"]
    assert find_missing("The Nook & Co. Crew T-Shirt in XS, S, M, L and XL.", tee) == []
    assert find_invented_numbers("SPF 50 in a 50 ml tube, a 30L bag", {"name": "Sunscreen SPF 50", "sizes": "50 ml",
                                                                       "bag": "30L backpack"}) == []
    assert "name=Strideline Aero Running Shoe" in find_missing(bad, attrs) and "color=red" not in find_missing(bad, attrs)
    assert find_invented_numbers("2-year warranty", attrs, allowed=[2]) == []
    with pytest.raises(BadRequestError):
        find_missing("x", {})
    with pytest.raises(BadRequestError):
        find_missing(None, attrs)
    with pytest.raises(BadRequestError):
        find_missing("x", attrs, keys=["nope"])


def test_kb_search_many_matches_search():
    kb = KnowledgeBase.from_records(RECORDS, embedder=bag_embedder)
    qs = ["shipping cost", "refund window"]
    assert [[h.id for h in hs] for hs in kb.search_many(qs, k=2)] == [[h.id for h in kb.search(q, k=2)] for q in qs]
    with pytest.raises(BadRequestError):
        kb.search_many([])
    with pytest.raises(BadRequestError):
        kb.search_many(["ok", ""])


# ------------------------------------------------------------- bad input everywhere
def test_public_functions_name_the_bad_field(shop, split, tmp_path):
    """Wrong types and shapes reach every public entry point as BadRequestError
    naming the field, never as a TypeError/KeyError from deep inside."""
    from ecomlm.ecommerce import DescriptionWriter, SupportAgent, key_sentences, order_text

    train, test = split
    kb = KnowledgeBase.from_records(RECORDS, embedder=bag_embedder)
    agent = SupportAgent(kb, model=None)
    ra = ReviewAnalyzer(embedder=bag_embedder).fit(shop.reviews.iloc[:100])
    writer = DescriptionWriter(model="not-loaded")          # never loaded: every case fails before generation
    cases = [
        (lambda: kb.search("x", min_score="high"), "min_score"),
        (lambda: kb.search("x", k="3"), "k"),
        (lambda: kb.search_many([]), "queries"),
        (lambda: KnowledgeBase([{"id": "a", "text": "x", "questions": 3}], embedder=bag_embedder), "records[0].questions"),
        (lambda: KnowledgeBase(RECORDS, embedder=bag_embedder, lexical_weight="a"), "lexical_weight"),
        (lambda: KnowledgeBase.from_json(3), "path"),
        (lambda: agent.ask("Where is BC-12345?", customer_id=["C1"]), "customer_id"),
        (lambda: agent.ask("x", history=[{"role": "user", "content": None}]), "history[0].content"),
        (lambda: SupportAgent(kb, model=None, customer_field=3), "customer_field"),
        (lambda: SupportAgent(kb, model=None, min_score="x"), "min_score"),
        (lambda: SupportAgent(kb, model=None, order_id_pattern="("), "order_id_pattern"),
        (lambda: SupportAgent([], model=None), "records"),
        (lambda: key_sentences("text"), "entry"),
        (lambda: order_text("BC-1", "shipped"), "rec"),
        (lambda: order_text(3, {"status": "shipped"}), "order_id"),
        (lambda: Recommender(event_weights=[1, 2]), "event_weights"),
        (lambda: Recommender(event_weights={"click": 1}), "event_weights.click"),
        (lambda: Recommender(event_weights={"view": "a"}), "event_weights.view"),
        (lambda: Recommender(seed="a"), "seed"),
        (lambda: Recommender(embedder=bag_embedder).fit(None, train), "products"),
        (lambda: Recommender(embedder=bag_embedder).fit(shop.products, train.iloc[:0]), "events"),
        (lambda: Recommender(embedder=bag_embedder).fit(shop.products, train.drop(columns="timestamp")),
         "events.timestamp"),
        (lambda: Recommender(embedder=bag_embedder).fit(shop.products.assign(price="cheap"), train), "products.price"),
        (lambda: time_split(shop.events, 2), "test_frac"),
        (lambda: time_split(shop.events.iloc[:0]), "events"),
        (lambda: ReviewAnalyzer(embedder=bag_embedder).fit(None), "reviews"),
        (lambda: ReviewAnalyzer(embedder=bag_embedder).fit(shop.reviews.iloc[:0]), "reviews"),
        (lambda: ra.summarize(["good"], max_quotes=-1), "max_quotes"),
        (lambda: ra.evaluate(None), "reviews"),
        (lambda: find_invented_numbers("x 3", {"a": 1}, allowed=3), "allowed"),
        (lambda: find_missing("x", {"a": "b"}, keys=["z"]), "attributes.z"),
        (lambda: check_description(None, {"a": 1}), "text"),
        (lambda: writer.write_many([1]), "attributes"),
        (lambda: writer.write({"product_id": "P1"}), "attributes"),
        (lambda: writer.write_catalog(shop.products.iloc[:1], output=3, progress=False), "output"),
        (lambda: writer.write_catalog(shop.products.iloc[:2], batch_size=0, progress=False), "batch_size"),
        (lambda: writer.write_catalog(pd.concat([shop.products.iloc[:1]] * 2), progress=False), "products.product_id"),
        (lambda: DescriptionWriter(keys="name"), "keys"),
        (lambda: DescriptionWriter(seed="a"), "seed"),
    ]
    for fn, param in cases:
        with pytest.raises(BadRequestError) as e:
            fn()
        assert e.value.param == param, (param, str(e.value))
    rec = Recommender("popularity").fit(shop.products, train)
    for fn, param in ((lambda: rec.recommend(["U1"]), "user_id"), (lambda: rec.evaluate(test, users="some"), "users"),
                      (lambda: rec.evaluate(test.drop(columns="product_id")), "test_events.product_id"),
                      (lambda: rec.similar_items(3), "product_id")):
        with pytest.raises(BadRequestError) as e:
            fn()
        assert e.value.param == param, (param, str(e.value))
