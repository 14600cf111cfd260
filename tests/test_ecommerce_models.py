"""The measured bars of ecomlm.ecommerce on the sample shop, with the real
all-MiniLM-L6-v2 (pulled by the registry; skipped when it cannot be had).
Embeddings are cached per process, so each text is embedded once per run."""

import numpy as np
import pytest

from ecomlm.ecommerce import KnowledgeBase, Recommender, ReviewAnalyzer, sample_shop, time_split


@pytest.fixture(scope="module")
def shop():
    try:
        from ecomlm.engine import registry

        registry.pull("all-minilm-l6-v2", progress=False)
    except Exception as e:  # pragma: no cover - no network and no cache
        pytest.skip(f"all-minilm-l6-v2 unavailable: {e}")
    return sample_shop()


@pytest.fixture(scope="module")
def kb(shop):
    return KnowledgeBase.from_records(shop.kb_records("en"))


def test_kb_retrieval_on_held_out_questions(shop, kb):
    qs = [q for q in shop.questions if q["type"] == "in_scope" and q["split"] == "test"]
    hits = kb.search_many([q["question"] for q in qs], k=3)
    top1 = np.mean([h[0].id == q["kb_id"] for h, q in zip(hits, qs)])
    top3 = np.mean([q["kb_id"] in [x.id for x in h] for h, q in zip(hits, qs)])
    # measured on the test split (117): 0.872 / 0.966 (issue 7 asks 0.90 top-1: not met; see the README)
    assert len(qs) >= 100 and top1 >= 0.85 and top3 >= 0.95, (top1, top3)


def test_kb_out_of_scope_scores_lower(shop, kb):
    inscope = [h[0].score for h in kb.search_many([q["question"] for q in shop.questions if q["type"] == "in_scope"])]
    oos = [h[0].score for h in kb.search_many([q["question"] for q in shop.questions if q.get("reason") == "out_of_scope"])]
    assert np.median(oos) < np.quantile(inscope, 0.1)


def test_kb_chinese_entries(shop):
    kb = KnowledgeBase.from_records(shop.knowledge_base)
    assert kb.search("退款需要几天？", k=3, lang="zh")[0].id == "refund-timing-zh"


@pytest.fixture(scope="module")
def split(shop):
    return time_split(shop.events, 0.2)


def test_recommender_beats_popularity(shop, split):
    train, test = split
    rec = Recommender().fit(shop.products, train)
    m = rec.evaluate(test, k=10)
    pop = Recommender("popularity").fit(shop.products, train).evaluate(test, k=10)
    # measured: gbdt recall 0.353 ndcg 0.273 coverage 0.97; popularity 0.117 / 0.092 / 0.07
    assert m["recall"] > 2 * pop["recall"] and m["ndcg"] > 2 * pop["ndcg"], (m, pop)
    assert m["coverage"] > 0.5
    user = train["user_id"].value_counts().index[0]
    pid, _ = rec.recommend(user, k=1)[0]
    assert "because" in rec.explain(user, pid)
    names = shop.products.set_index("product_id")["subcategory"]
    top = [names[p] for p, _ in rec.recommend(query="waterproof boots for hiking", k=3)]
    assert top.count("hiking boot") >= 2, top


def test_review_analyzer_held_out(shop):
    r = shop.reviews
    perm = np.random.default_rng(0).permutation(len(r))
    train, test = r.iloc[perm[:300]], r.iloc[perm[-120:]]
    ra = ReviewAnalyzer().fit(train)
    m = ra.evaluate(test)
    assert m["sentiment_accuracy"] >= 0.85 and m["aspect_f1"] >= 0.85, m
    out = ra.analyze(["Too small, but fast shipping"])[0]
    assert out.aspects == {"size": "negative", "shipping": "positive"}, out
