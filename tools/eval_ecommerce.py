"""Measure the e-commerce bars on the sample shop with the default embedding model.

    python tools/eval_ecommerce.py            # all of them
    python tools/eval_ecommerce.py kb recommender reviews support descriptions
    ECOMLM_EVAL_N=20 python tools/eval_ecommerce.py support    # a quick subset

kb:          top-1 / top-3 retrieval accuracy on the held-out paraphrased questions: the "test"
             split is the figure to report, "dev" (2 questions of 5 per entry) is for tuning
recommender: recall@10, NDCG@10, coverage on a time-based split (last 20 % of events)
reviews:     sentiment accuracy and aspect F1 on a seeded 80/20 split of the reviews
support:     SupportAgent with smollm2-135m-instruct on the held-out questions: source top-1,
             fact stated, model wording kept, hand-off rate (and reason) on the hand-off
             cases, follow-ups resolved, false hand-offs on in-scope questions; plus the
             hand-off threshold's calibration on the training dialogues (never the held-out set)
descriptions: DescriptionWriter on held-out products (the last 60 of the catalog by id):
             attribute values stated, invented numbers surviving, model text kept vs repaired
"""

import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ecomlm.ecommerce import KnowledgeBase, ReviewAnalyzer, compare_methods, sample_shop, time_split


TUNE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kb_tune_questions.jsonl")


def kb(shop):
    qs = [q for q in shop.questions if q["type"] == "in_scope"]
    # a second tuning set: 195 questions written for this eval from the KB entries alone, blind to the
    # held-out questions, with the entries' distinctive words avoided; used to choose the lexicon
    # phrasings and weights, never reported as the held-out figure
    import json
    with open(TUNE, encoding="utf-8") as f:
        qs += [dict(json.loads(line), type="in_scope", split="tune") for line in f if line.strip()]
    rows = [("entry text only", dict(question_weight=0.0, lexicon=False, category_weight=0.0)),
            ("text + FAQ questions", dict(lexicon=False, category_weight=0.0)),
            ("+ lexicon expansion (default)", {}),
            ("default + category ranking 0.05", dict(category_weight=0.05)),
            ("default + BM25 0.2", dict(lexical_weight=0.2))]
    if os.environ.get("ECOMLM_EVAL_RERANK"):   # minutes: one SmolLM2 pass per re-ranked entry
        rows.append(("default + SmolLM2 re-ranking", dict(reranker="smollm2-135m-instruct")))
    for label, kw in rows:
        base = KnowledgeBase.from_records(shop.kb_records("en"), **kw)
        hits = base.search_many([q["question"] for q in qs], k=3)
        ok1 = np.array([h[0].id == q["kb_id"] for h, q in zip(hits, qs)])
        ok3 = np.array([q["kb_id"] in [x.id for x in h] for h, q in zip(hits, qs)])
        parts = "  ".join(f"{name} {ok1[m].mean():.3f}/{ok3[m].mean():.3f} (n={m.sum()})" for name, m in _splits(qs))
        print(f"  {label:32s} top-1/top-3: {parts}")


def retriever(shop):
    """KnowledgeBase.fine_tune_retriever (not in the default run: minutes of training on 2 cores).
    Trained on the KB's texts and example questions and the dialogues' labelled turns, never on the
    held-out questions; the fusion weight is picked on dev, test is reported for it.
    ECOMLM_RETRIEVER="lr epochs lora_rank", default "3e-4 3 0" (also tried: "1e-4 3 0", "3e-3 4 8")."""
    lr, epochs, rank = os.environ.get("ECOMLM_RETRIEVER", "3e-4 3 0").split()
    qs = [q for q in shop.questions if q["type"] == "in_scope"]
    base = KnowledgeBase.from_records(shop.kb_records("en"))
    base.fine_tune_retriever(dialogues=shop.dialogues, lr=float(lr), epochs=int(epochs), lora_rank=int(rank),
                             progress=False)
    texts = [q["question"] for q in qs]
    p = base.retriever.predict_proba(texts)
    gold = np.array([base.ids.index(q["kb_id"]) for q in qs])
    base.retriever_weight = 0.0
    dense = np.stack([h for h, _, _ in (base.scores(t) for t in texts)])
    masks = dict((n, m) for n, m in _splits(qs))
    rows = {w: (dense + w * (p - p.max(1, keepdims=True))).argmax(1) == gold
            for w in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 100.0)}
    for w, ok in rows.items():
        print(f"  lr {lr} epochs {epochs} lora {rank}  weight {w:<5} top-1 dev {ok[masks['dev']].mean():.3f}")
    best = max(rows, key=lambda w: (rows[w][masks["dev"]].mean(), -w))
    print(f"  weight picked on dev: {best}; test top-1 {rows[best][masks['test']].mean():.3f} "
          f"(without the retriever {rows[0.0][masks['test']].mean():.3f})")


def _splits(qs):
    """(name, mask) of the in-scope questions: the test split (report), the dev split (tuning), all."""
    split = np.array([q.get("split", "test") for q in qs])
    out = [("test", split == "test"), ("dev", split == "dev")]
    if (split == "tune").any():
        out.append(("tune", split == "tune"))
    return tuple(out + [("all", split != "tune")])


def recommender(shop):
    train, test = time_split(shop.events, 0.2)
    print(f"  train {len(train)} events, test {len(test)} events (from {test['timestamp'].min()})")
    with pd.option_context("display.width", 120, "display.precision", 4):
        print(compare_methods(shop.products, train, test, k=10).to_string())


def reviews(shop):
    r = shop.reviews
    perm = np.random.default_rng(0).permutation(len(r))
    cut = int(0.8 * len(r))
    train, test = r.iloc[perm[:cut]], r.iloc[perm[cut:]]
    ra = ReviewAnalyzer().fit(train)
    for lang, part in (("all", test), ("en", test[test["lang"] == "en"]), ("zh", test[test["lang"] == "zh"])):
        m = ra.evaluate(part)
        print(f"  {lang:3s} n={m['n']:3d} sentiment acc {m['sentiment_accuracy']:.3f}  aspect F1 {m['aspect_f1']:.3f}  "
              f"polarity acc {m['aspect_polarity_accuracy']:.3f}  exact aspects {m['aspect_exact_match']:.3f}")


SUPPORT_CUSTOMER = "C1001"
SUPPORT_ORDERS = {  # a tiny order store for the order-status and privacy cases
    "BC-24999": {"order_id": "BC-24999", "customer_id": "C1001", "status": "shipped", "items": ["Loomwell Mesa Fleece Jacket"],
                 "carrier": "UPS", "tracking": "1Z2613976313", "shipped": "2026-03-28", "eta": "2026-03-31"},
    "BC-20931": {"order_id": "BC-20931", "customer_id": "C2002", "status": "delivered", "items": ["Ridgeway Tent"],
                 "carrier": "FedEx", "eta": "2026-04-02"},
}


def support(shop):
    from ecomlm.ecommerce import SupportAgent

    n = int(os.environ.get("ECOMLM_EVAL_N", "0")) or None
    kbase = KnowledgeBase.from_records(shop.kb_records("en"))
    # calibration: off-topic requests of the training dialogues vs the KB's own example questions
    oos = sorted({d["messages"][1]["content"] for d in shop.dialogues
                  if d["messages"][2]["content"].startswith(("I'm sorry, I can only", "That's outside"))})
    agent = SupportAgent(kbase, order_lookup=SUPPORT_ORDERS.get, customer_id=SUPPORT_CUSTOMER, shop_name="Brightcart")
    print(f"  calibration: best KB score of the dialogues' {len(oos)} off-topic requests: "
          f"max {max(float(kbase.scores(q)[0].max()) for q in oos):.3f}; min_score = {agent.min_score}")
    rows = []
    qs = shop.questions
    if n:  # a quick run: the first n in-scope questions, every follow-up and hand-off case
        qs = [q for q in qs if q["type"] == "in_scope"][:n] + [q for q in qs if q["type"] != "in_scope"]
    for q in qs:
        t = time.time()
        r = agent.ask(q["question"], history=q.get("history"))
        rows.append(dict(type=q["type"], qid=q["qid"], want=q["kb_id"], got=r.sources[0] if r.sources else None,
                         fact=q["fact"], stated=bool(q["fact"]) and q["fact"].lower() in r.text.lower(),
                         handoff=r.handoff, want_reason=q.get("reason"), reason=r.reason, generated=r.generated,
                         secs=time.time() - t, text=r.text))
    df = pd.DataFrame(rows)
    ins, fol, hand = df[df.type == "in_scope"], df[df.type == "follow_up"], df[df.type == "handoff"]
    for name, mask in _splits([q for q in qs if q["type"] == "in_scope"]):
        part = ins[mask]
        if len(part):
            print(f"  in-scope {name:4s} n={len(part):3d}  source top-1 {np.mean(part.got == part.want):.3f}  "
                  f"fact stated {part.stated.mean():.3f} (when the source is right: "
                  f"{part[part.got == part.want].stated.mean():.3f})  model wording kept {part.generated.mean():.3f}  "
                  f"false hand-offs {part.handoff.mean():.3f}")
    if len(fol):
        print(f"  follow-up n={len(fol):3d}  resolved (right source) {np.mean(fol.got == fol.want):.3f}  "
              f"fact stated {fol.stated.mean():.3f}")
    if len(hand):
        print(f"  hand-off  n={len(hand):3d}  fired {hand.handoff.mean():.3f}  right reason "
              f"{np.mean(hand.reason == hand.want_reason):.3f}")
        for reason, g in hand.groupby("want_reason"):
            print(f"      {reason:17s} n={len(g):2d} fired {g.handoff.mean():.2f}  reasons given {sorted(set(map(str, g.reason)))}")
    print(f"  {df.secs.mean():.2f} s per question")
    bad = ins[(ins.got != ins.want) | ~ins.stated]
    if len(bad) and os.environ.get("ECOMLM_EVAL_VERBOSE"):
        print(bad[["qid", "want", "got", "stated"]].to_string())


def descriptions(shop):
    from ecomlm.ecommerce import DescriptionWriter

    n = int(os.environ.get("ECOMLM_EVAL_N", "0")) or 60
    products = shop.products.sort_values("product_id").tail(n)
    writer = DescriptionWriter()
    rows = []
    t = time.time()
    recs = products.to_dict("records")
    ds = [d for b in range(0, len(recs), 8) for d in writer.write_many(recs[b:b + 8])]   # one decode batch per 8
    for d, rec in zip(ds, recs):
        rows.append(dict(n_values=d.n_values, n_missing=len(d.missing), invented=len(d.invented), tries=d.tries,
                         repaired=d.repaired, model_missing=len(d.model_missing), model_invented=len(d.model_invented),
                         strict_missing=len(_strict_missing(d.text, rec)), strict_invented=_strict_invented(d.text, rec),
                         strict_list=_strict_missing(d.text, rec)))
    df = pd.DataFrame(rows)
    cov = 1 - df.n_missing.sum() / df.n_values.sum()
    print(f"  n={len(df)} products  attribute values stated {cov:.3f} ({df.n_values.sum() - df.n_missing.sum()}/"
          f"{df.n_values.sum()})  invented numbers surviving {int(df.invented.sum())}  "
          f"model text kept without repair {1 - df.repaired.mean():.3f}  mean tries {df.tries.mean():.2f}  "
          f"({(time.time() - t) / len(df):.1f} s per product)")
    print(f"  independent strict recount of the final texts: values missing {int(df.strict_missing.sum())}, "
          f"numbers not in the attributes {int(df.strict_invented.sum())}")
    lenient = [m for ms in df.strict_list for m in ms]
    if lenient:
        print(f"    (stated only in a form the checker accepts: {'; '.join(lenient[:10])})")
    print(f"  the model's best try before repair: values stated {1 - df.model_missing.sum() / df.n_values.sum():.3f}, "
          f"invented numbers caught {int(df.model_invented.sum())} in {int((df.model_invented > 0).sum())} products "
          f"(their sentences dropped, then the values still missing appended)")


def _strict_missing(text, rec):
    """Attribute values not in the text, counted without the package's checker: strings as exact
    whole words (case-insensitive, no plural or hyphen leniency), numbers in any usual format."""
    import re

    from ecomlm.ecommerce.describe import attribute_values

    low, out = text.lower(), []
    for k, v in attribute_values(rec):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            forms = {f"{v:.2f}", f"{v:,.2f}"} | ({str(int(v)), f"{int(v):,}"} if float(v).is_integer() else {f"{v:g}"})
            ok = any(re.search(rf"(?<![\d.,]){re.escape(f)}(?!\d)", low) for f in forms)
        else:
            ok = re.search(rf"(?<![\w'\u2019.]){re.escape(str(v).lower())}(?![\w'\u2019])", low) is not None
        if not ok:
            out.append(f"{k}={v}")
    return out


def _strict_invented(text, rec):
    """Numbers in the text that appear in no attribute value (digits only, units ignored)."""
    import re

    num = re.compile(r"\d+(?:[.,]\d+)*")
    known = {x.replace(",", "") for v in rec.values() for x in num.findall(str(v))}
    known |= {f"{float(x):.2f}" for x in list(known)} | {str(int(float(x))) for x in list(known) if float(x).is_integer()}
    return sum(x.replace(",", "") not in known for x in num.findall(text))


def main(argv):
    shop = sample_shop()
    for name in argv or ["kb", "recommender", "reviews", "support", "descriptions"]:
        t = time.time()
        print(f"{name}:")
        globals()[name](shop)
        print(f"  ({time.time() - t:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
