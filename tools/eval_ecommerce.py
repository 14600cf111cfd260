"""Measure the e-commerce bars on the sample shop with the default embedding model.

    python tools/eval_ecommerce.py            # all three
    python tools/eval_ecommerce.py kb recommender reviews

kb:          top-1 / top-3 retrieval accuracy on the held-out paraphrased questions
recommender: recall@10, NDCG@10, coverage on a time-based split (last 20 % of events)
reviews:     sentiment accuracy and aspect F1 on a seeded 80/20 split of the reviews
"""

import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from ecomlm.ecommerce import KnowledgeBase, ReviewAnalyzer, compare_methods, sample_shop, time_split


def kb(shop):
    qs = [q for q in shop.questions if q["type"] == "in_scope"]
    for label, kw in (("entry text only", dict(question_weight=0.0)), ("text + FAQ questions (default)", {}),
                      ("default + BM25 0.2", dict(lexical_weight=0.2))):
        base = KnowledgeBase.from_records(shop.kb_records("en"), **kw)
        hits = base.search_many([q["question"] for q in qs], k=3)
        top1 = np.mean([h[0].id == q["kb_id"] for h, q in zip(hits, qs)])
        top3 = np.mean([q["kb_id"] in [x.id for x in h] for h, q in zip(hits, qs)])
        print(f"  {label:32s} top-1 {top1:.3f}  top-3 {top3:.3f}  (n={len(qs)})")


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


def main(argv):
    shop = sample_shop()
    for name in argv or ["kb", "recommender", "reviews"]:
        t = time.time()
        print(f"{name}:")
        globals()[name](shop)
        print(f"  ({time.time() - t:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
