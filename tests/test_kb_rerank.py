"""Question-likelihood re-ranking (ecomlm/ecommerce/_rerank.py): the score is
the mean log-probability of the question's tokens after the entry, checked
against transformers on a random-initialised llama with SmolLM2's tokenizer;
the adjustment never raises the best score and leaves no entry to climb past
a re-ranked one."""

import numpy as np
import pytest
import torch

import ecomlm
from ecomlm.ecommerce import KnowledgeBase, SupportAgent
from ecomlm.ecommerce._rerank import QuestionLikelihood
from ecomlm.errors import BadRequestError
from helpers import save_with_smollm2_tokenizer, tiny_llama
from test_kb_expand import RECORDS, bag_embedder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    ref = tiny_llama(vocab_size=49152, num_hidden_layers=2, seed=3)
    path = tmp_path_factory.mktemp("rerank") / "llama"
    save_with_smollm2_tokenizer(ref, path)
    return ref, ecomlm.load(str(path))


def test_score_is_the_questions_mean_log_probability(llama):
    ref, m = llama
    ql = QuestionLikelihood(m)
    title, text, question = "Returns", "Return items within 30 days for a refund.", "Can I send my boots back?"
    got = ql.score(title, text, question)
    ctx = m.apply_chat_template([{"role": "system", "content": "You are a shop's help center."},
                                 {"role": "user", "content": f"Policy: Returns. {text}\n\n"
                                                             "Write a customer question that this policy answers."}])
    q = m.tokenize(question, add_special_tokens=False)
    ids = torch.tensor([list(ctx) + q])
    with torch.no_grad():
        lp = torch.log_softmax(ref(ids).logits[0].double(), -1)
    want = float(np.mean([lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(q)]))
    assert abs(got - want) < 1e-4, (got, want)
    assert ql.score(title, text, question) == got                # cached
    assert ql.score(title, "Shipping is free over $50.", question) != got


def test_adjust_never_raises_the_best_and_keeps_the_rest_below(llama):
    _, m = llama
    ql = QuestionLikelihood(m)
    h = np.array([0.5, 0.4, 0.3, 0.2])
    adj = ql.adjust(RECORDS, h, "Can I return a smartwatch?", k=2, weight=0.3)
    s = [ql.score(r["title"], r["text"], "Can I return a smartwatch?") for r in RECORDS[:2]]
    want_top = 0.3 * (np.array(s) - max(s))
    np.testing.assert_allclose(adj[:2], want_top)
    np.testing.assert_allclose(adj[2:], want_top.min())
    assert (h + adj).max() <= h.max() + 1e-12
    assert ql.adjust(RECORDS, np.array([0.5, -np.inf, -np.inf, -np.inf]), "q?", 4, 0.3) is None
    assert ql.adjust(RECORDS, h, "q?", 4, 0.0) is None


def test_reranker_in_knowledge_base_and_agent(llama):
    _, m = llama
    kb = KnowledgeBase(RECORDS, embedder=bag_embedder, lexicon=False)
    ranked = KnowledgeBase(RECORDS, embedder=bag_embedder, lexicon=False, reranker=m, rerank_k=3, rerank_weight=0.5)
    q = "Can I return it within 30 days?"
    adj = ranked.reranker.adjust(ranked.records, kb.scores(q)[0], q, 3, 0.5)
    np.testing.assert_allclose(ranked.scores(q)[0], kb.scores(q)[0] + adj, atol=1e-9)
    with pytest.raises(BadRequestError) as e:
        KnowledgeBase(RECORDS, embedder=bag_embedder, reranker=object())
    assert e.value.param == "reranker"
    for kw, param in ((dict(rerank_k=0), "rerank_k"), (dict(rerank_weight=-1), "rerank_weight")):
        with pytest.raises(BadRequestError) as e:
            KnowledgeBase(RECORDS, embedder=bag_embedder, **kw)
        assert e.value.param == param
    for kw, param in ((dict(rerank=-1), "rerank"), (dict(rerank=1.5), "rerank"), (dict(rerank_weight="x"), "rerank_weight")):
        with pytest.raises(BadRequestError) as e:
            SupportAgent(kb, model=m, **kw)
        assert e.value.param == param
    assert SupportAgent(kb, model=None).rerank == 0                   # extractive agent: no model to re-rank with
