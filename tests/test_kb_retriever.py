"""KnowledgeBase.fine_tune_retriever: a classifier over the KB's entry ids
trained in the C engine, fused into the ranking. A random tiny bert (with
all-MiniLM-L6-v2's real tokenizer) keeps the training to seconds; the bag
embedder of test_ecommerce_logic stands in for MiniLM."""

import os
import shutil

import numpy as np
import pytest

from ecomlm.ecommerce import KnowledgeBase
from ecomlm.errors import BadRequestError, NotFoundError

from test_ecommerce_logic import RECORDS, bag_embedder
from test_train_bert import tiny_cls

QRECORDS = [dict(r, questions=q) for r, q in zip(RECORDS, (["Can I send it back?"], ["How much is delivery?"],
                                                           ["What if it breaks?"]))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from ecomlm.engine import registry

    src = registry.resolve("all-minilm-l6-v2", pull_if_missing=False)
    m = tiny_cls(2, vocab_size=30522, max_position_embeddings=128, type_vocab_size=2, seed=3)
    path = tmp_path_factory.mktemp("tinyret")
    m.save_pretrained(path, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.isfile(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(path, f))
    return str(path)


def test_retriever_examples_label_dialogue_turns():
    kb = KnowledgeBase(QRECORDS, embedder=bag_embedder)
    dialogues = [{"messages": [{"role": "system", "content": "x"},
                               {"role": "user", "content": "Hi! can I send it back? Thanks."},
                               {"role": "assistant", "content": "Yes, within 30 days."},
                               {"role": "user", "content": "Where is my order BC-1?"},
                               {"role": "assistant", "content": "It shipped."}]}]
    texts, labels = kb.retriever_examples([("Is there a fee to ship?", "shipping")], dialogues)
    got = dict(zip(texts, labels))
    assert got["Hi! can I send it back? Thanks."] == "returns" and got["Yes, within 30 days."] == "returns"
    assert got["Is there a fee to ship?"] == "shipping" and got["What if it breaks?"] == "warranty"
    assert "Where is my order BC-1?" not in got and "It shipped." not in got
    with pytest.raises(BadRequestError, match="names no entry") as e:
        kb.retriever_examples([("q", "nope")])
    assert e.value.param == "questions[0]"
    with pytest.raises(BadRequestError) as e:
        kb.retriever_examples(dialogues=["not a dialogue"])
    assert e.value.param == "dialogues[0]"


def test_fine_tune_retriever_reranks_without_raising_the_best_score(tiny, tmp_path):
    kb = KnowledgeBase(QRECORDS, embedder=bag_embedder)
    before = kb.scores("my parcel")[0]
    assert before.argmax() != 1                       # the bag embedder alone does not pick shipping
    extra = [(t, "shipping") for t in ("my parcel", "parcel parcel", "where is my parcel")]
    hist = kb.fine_tune_retriever(extra, model=tiny, epochs=15, lr=3e-3, batch_size=4, save=tmp_path / "ret",
                                  progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    p = kb.retriever.predict_proba(["my parcel"])[0]
    after = kb.scores("my parcel")[0]
    np.testing.assert_allclose(after, before + kb.retriever_weight * (p - p.max()), rtol=1e-6, atol=1e-7)
    assert after.max() <= before.max() + 1e-7 and after.argmax() == 1
    # the saved retriever loads back through the constructor and gives the same scores
    kb2 = KnowledgeBase(QRECORDS, embedder=bag_embedder, retriever=str(tmp_path / "ret"))
    np.testing.assert_allclose(kb2.scores("my parcel")[0], after, atol=1e-5)
    assert KnowledgeBase(QRECORDS, embedder=bag_embedder, retriever_weight=0.0,
                         retriever=kb.retriever).scores("my parcel")[0].tolist() == before.tolist()
    # a retriever for other ids is refused
    other = [dict(r, id=r["id"] + "-x") for r in QRECORDS]
    with pytest.raises(BadRequestError, match="entry ids") as e:
        KnowledgeBase(other, embedder=bag_embedder, retriever=kb.retriever)
    assert e.value.param == "retriever"
    with pytest.raises(NotFoundError):
        KnowledgeBase(QRECORDS, embedder=bag_embedder, retriever=str(tmp_path / "missing"))
    with pytest.raises(BadRequestError) as e:
        KnowledgeBase(QRECORDS, embedder=bag_embedder, retriever_weight=-1)
    assert e.value.param == "retriever_weight"
