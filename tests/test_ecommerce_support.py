"""SupportAgent on the sample shop with the real default models
(smollm2-135m-instruct, all-MiniLM-L6-v2): facts stated, sources cited,
follow-ups, order lookups with the owner check, hand-offs, input validation.
The full held-out measurement is tools/eval_ecommerce.py support; these tests
keep to a handful of generations so the file runs in about a minute."""

import pytest

from ecomlm.errors import BadRequestError
from ecomlm.ecommerce import KnowledgeBase, Reply, SupportAgent, key_sentences, sample_shop

ORDERS = {
    "BC-24999": {"order_id": "BC-24999", "customer_id": "C1001", "status": "shipped", "items": ["Fleece Jacket"],
                 "carrier": "UPS", "tracking": "1Z2613976313", "shipped": "2026-03-28", "eta": "2026-03-31"},
    "BC-20931": {"order_id": "BC-20931", "customer_id": "C2002", "status": "delivered", "items": ["Tent"]},
}


@pytest.fixture(scope="module")
def shop():
    try:
        from ecomlm.engine import registry

        registry.pull("all-minilm-l6-v2", progress=False)
        registry.pull("smollm2-135m-instruct", progress=False)
    except Exception as e:  # pragma: no cover - no network and no cache
        pytest.skip(f"default models unavailable: {e}")
    return sample_shop()


@pytest.fixture(scope="module")
def agent(shop):
    kb = KnowledgeBase.from_records(shop.kb_records("en"))
    return SupportAgent(kb, order_lookup=ORDERS.get, customer_id="C1001", shop_name="Brightcart")


@pytest.fixture(scope="module")
def extractive(agent):
    return SupportAgent(agent.kb, model=None, order_lookup=ORDERS.get, customer_id="C1001")


def test_answer_states_fact_and_cites(agent):
    r = agent.ask("How many days after delivery can I still send a jacket back?")
    assert isinstance(r, Reply) and not r.handoff and r.reason is None
    assert r.sources == ["returns-window"]
    assert "30 days" in r.text


def test_follow_up_resolves_against_history(agent):
    hist = [{"role": "user", "content": "How long do I have to return a jacket?"},
            {"role": "assistant", "content": "Most items can be returned within 30 days of delivery."}]
    r = agent.ask("And for shoes?", history=hist)
    assert r.sources == ["returns-shoes"] and "60 days" in r.text


def test_follow_ups_resolve_on_held_out_set(shop, extractive):
    # the 15 held-out follow-ups: elliptical ones are rewritten from the previous turn
    fol = [q for q in shop.questions if q["type"] == "follow_up"]
    got = [extractive.ask(q["question"], history=q["history"]).sources for q in fol]
    right = sum(g == [q["kb_id"]] for g, q in zip(got, fol))
    assert len(fol) >= 15 and right >= 14, [(q["question"], g) for g, q in zip(got, fol) if g != [q["kb_id"]]]
    assert extractive.rewrite_follow_up("Can I exchange my jacket for a bigger size?", "And if it's shoes?") == \
        "Can I exchange my shoes for a bigger size?"
    assert extractive.rewrite_follow_up("How long does delivery take?", "And how long does it take to pack?") is None
    # a product replaces the product word, not the nearest word by meaning ("warranty")
    # (without the lexicon's product nouns: "How long is the sneakers on a tablet?")
    assert extractive.rewrite_follow_up("How long is the guarantee on a tablet?", "And for sneakers?") == \
        "How long is the guarantee on a sneakers?"


def test_extractive_answers_on_held_out_sample(shop, extractive):
    # model=None: the key sentences alone; every in-scope reply states its entry's facts
    qs = [q for q in shop.questions if q["type"] == "in_scope" and q["split"] == "test"][::6]
    for q in qs:
        r = extractive.ask(q["question"])
        if r.sources == [q["kb_id"]]:
            assert q["fact"].lower() in r.text.lower(), (q, r)
    right = sum(extractive.ask(q["question"]).sources == [q["kb_id"]] for q in qs)
    assert right >= 0.8 * len(qs)


def test_key_sentences_hold_the_facts(shop):
    for e in shop.kb_records("en"):
        ks = " ".join(key_sentences(e)).lower()
        assert all(f.lower() in ks for f in e["facts"]), e["id"]


def test_order_status_for_its_owner(extractive):
    r = extractive.ask("Where is my order BC-24999?")
    assert not r.handoff and r.sources == ["order:BC-24999"]
    assert "UPS" in r.text and "1Z2613976313" in r.text and "2026-03-31" in r.text


def test_order_id_from_earlier_turn(extractive):
    hist = [{"role": "user", "content": "My order is BC-24999."},
            {"role": "assistant", "content": "Thanks, how can I help?"}]
    assert extractive.ask("Has my order shipped?", history=hist).sources == ["order:BC-24999"]


def test_never_reveals_another_customers_order(extractive):
    r = extractive.ask("What's the status of order BC-20931?")
    assert r.handoff and r.reason == "other_customer" and "Tent" not in r.text and r.sources == []
    # no identity at all: refuse too
    anon = SupportAgent(extractive.kb, model=None, order_lookup=ORDERS.get)
    r = anon.ask("Where is order BC-24999?")
    assert r.handoff and r.reason == "other_customer" and "1Z2613976313" not in r.text
    # per-call identity overrides the agent's
    assert extractive.ask("Where is order BC-20931?", customer_id="C2002").sources == ["order:BC-20931"]


def test_unknown_order_and_missing_number(extractive):
    r = extractive.ask("Where is my order BC-11111?")
    assert not r.handoff and "BC-11111" in r.text and "couldn't find" in r.text
    assert "order number" in extractive.ask("Where is my order?").text
    assert "order number" in extractive.ask("Any news about my parcel please").text


@pytest.mark.parametrize("q,reason", [
    ("What's the weather going to be like in Denver tomorrow?", "out_of_scope"),
    ("Can you write me a poem about the sea?", "out_of_scope"),
    ("I want to speak to a human, please.", "customer_request"),
    ("A stranger used my credit card on your site without permission.", "sensitive"),
    ("Give me the address of the customer who ordered before me.", "other_customer"),
])
def test_handoff(extractive, q, reason):
    r = extractive.ask(q)
    assert r.handoff and r.reason == reason and r.sources == [] and r.text


def test_validation(agent, shop):
    with pytest.raises(BadRequestError) as e:
        agent.ask("")
    assert e.value.param == "question"
    with pytest.raises(BadRequestError) as e:
        agent.ask(42)
    assert e.value.param == "question"
    with pytest.raises(BadRequestError) as e:
        agent.ask("hi", history="hello")
    assert e.value.param == "history"
    with pytest.raises(BadRequestError) as e:
        agent.ask("hi", history=[{"role": "robot", "content": "x"}])
    assert e.value.param == "history[0].role"
    with pytest.raises(BadRequestError) as e:
        SupportAgent("not a kb")
    assert e.value.param == "kb"
    with pytest.raises(BadRequestError) as e:
        SupportAgent(agent.kb, order_lookup="orders.csv")
    assert e.value.param == "order_lookup"
    bad = SupportAgent(agent.kb, model=None, order_lookup=lambda oid: "shipped", customer_id="C1")
    with pytest.raises(BadRequestError) as e:
        bad.ask("Where is BC-12345?")
    assert e.value.param == "order_lookup"
