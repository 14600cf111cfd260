"""`python -m ecomlm demo` (also `ecomlm demo`): the four e-commerce jobs on the
sample shop Brightcart with the default models (smollm2-135m-instruct for
text, all-MiniLM-L6-v2 for embeddings), end to end:

  1. customer support: answers with their sources, a follow-up, an order
     lookup, a refused look at another customer's order and a hand-off;
  2. a generated product description with its faithfulness report;
  3. recommendations for one shopper with explanations, and the offline
     evaluation against popularity;
  4. review analysis of a few reviews and one product's summary.
"""

from __future__ import annotations

import time
import textwrap

ORDERS = {
    "BC-24999": {"order_id": "BC-24999", "customer_id": "C1001", "status": "shipped",
                 "items": ["Loomwell Mesa Fleece Jacket"], "carrier": "UPS", "tracking": "1Z2613976313",
                 "shipped": "2026-03-28", "eta": "2026-03-31"},
    "BC-20931": {"order_id": "BC-20931", "customer_id": "C2002", "status": "delivered", "items": ["Ridgeway Tent"]},
}


def _wrap(text: str, indent: str = "      ") -> str:
    return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent)


def _head(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 90 - len(title)))


def run(n_threads=None) -> int:
    import ecomlm
    from ecomlm.ecommerce import (DescriptionWriter, KnowledgeBase, Recommender, ReviewAnalyzer, SupportAgent,
                                  compare_methods, sample_shop, time_split)

    t_all = time.perf_counter()
    print(f"ecomlm {ecomlm.__version__}: the sample shop Brightcart on the default models")
    shop = sample_shop()
    print(f"{shop!r}")
    t0 = time.perf_counter()
    chat = ecomlm.load("smollm2-135m-instruct", n_threads=n_threads)
    print(f"loaded smollm2-135m-instruct in {time.perf_counter() - t0:.1f} s")

    # ---------------------------------------------------------------- support
    _head("1. Customer support (answers cite knowledge-base entries)")
    kb = KnowledgeBase.from_records(shop.kb_records("en"))
    agent = SupportAgent(kb, model=chat, order_lookup=ORDERS.get, customer_id="C1001", shop_name="Brightcart")
    history = []
    for q in ["How many days do I have to send a jacket back?", "And for shoes?", "Where is my order BC-24999?",
              "Can you tell me what's in order BC-20931?", "What's the weather in Denver tomorrow?",
              "I'd like to talk to a human, please."]:
        t0 = time.perf_counter()
        r = agent.ask(q, history=history)
        print(f"  customer: {q}")
        print(_wrap(f"agent: {r.text}"))
        tag = f"hand-off ({r.reason})" if r.handoff else f"sources {r.sources}"
        who = "model wording, fact-checked" if r.generated else "extractive/template"
        print(f"      [{tag}; {who}; {time.perf_counter() - t0:.1f} s]")
        history += [{"role": "user", "content": q}, {"role": "assistant", "content": r.text}]

    # ------------------------------------------------------------ description
    _head("2. Product description with its faithfulness check")
    writer = DescriptionWriter(model=chat)
    row = shop.products.iloc[1]
    t0 = time.perf_counter()
    d = writer.write(row, tone="friendly", length="short")
    attrs = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in ("name", "brand", "color", "material", "price", "sizes", "features")}
    print(f"  attributes: {attrs}")
    print(_wrap(d.text, "  "))
    print(f"  model tries {d.tries}; the model's best try left out {len(d.model_missing)} of {d.n_values} values"
          f"{' (appended as a Details sentence)' if d.repaired else ''}; now missing {d.missing}, "
          f"invented numbers {d.invented}  [{time.perf_counter() - t0:.1f} s]")
    v = writer.variants(row)
    print(f"  title: {v['title']}\n  bullets: {'; '.join(v['bullets'])}\n  ad: {v['ad']}")

    # --------------------------------------------------------- recommendation
    _head("3. Recommendations")
    t0 = time.perf_counter()
    train, test = time_split(shop.events, 0.2)
    rec = Recommender().fit(shop.products, train)
    user = train["user_id"].value_counts().index[3]
    names = shop.products.set_index("product_id")["name"]
    print(f"  for shopper {user} (history: {', '.join(names[p] for p in train[train.user_id == user].product_id.unique()[:4])}, ...)")
    for i, (pid, score) in enumerate(rec.recommend(user, k=3)):
        line = rec.explain(user, pid, generate=(i == 0), model=chat)
        print(f"  {pid} {names[pid]:40s} {score:.3f}")
        print(_wrap(line, "      "))
    table = compare_methods(shop.products, train, test, k=10, methods=(("popularity", None), ("ranker", "gbdt")))
    print("  offline evaluation on the last 20 % of events (k=10):")
    print(textwrap.indent(table.to_string(float_format=lambda x: f"{x:.4f}"), "    "))
    print(f"  [{time.perf_counter() - t0:.1f} s]")

    # ---------------------------------------------------------------- reviews
    _head("4. Review analysis")
    t0 = time.perf_counter()
    ra = ReviewAnalyzer().fit(shop.reviews)
    for a in ra.analyze(["Runs a size small, but shipping was super fast.", "Great quality for the price!",
                         "Arrived two weeks late and the seams are already coming apart."]):
        print(f"  {a.text!r}\n      -> {a.sentiment} ({a.confidence:.2f}); aspects {a.aspects}")
    pid = shop.reviews["product_id"].value_counts().index[0]
    print(_wrap(f"summary of {names[pid]}: {ra.summarize(pid).text}", "  "))
    print(f"  [{time.perf_counter() - t0:.1f} s]")
    print(f"\ndemo finished in {time.perf_counter() - t_all:.0f} s")
    return 0
