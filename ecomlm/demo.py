"""`python -m ecomlm demo`: the engine on the default models, end to end.

It grows with the package: today it embeds a small catalogue with
all-MiniLM-L6-v2 and answers shoppers' queries by semantic search.
"""

from __future__ import annotations

import time

import numpy as np

CATALOG = [
    ("SKU-101", "Trail running shoes, breathable mesh, grippy rubber outsole, red"),
    ("SKU-102", "Waterproof hiking boots with ankle support, leather, brown"),
    ("SKU-103", "Merino wool crew socks, 3-pack, cushioned heel"),
    ("SKU-104", "Insulated stainless steel water bottle, 750 ml, keeps drinks cold 24 h"),
    ("SKU-105", "Packable rain jacket with taped seams and adjustable hood"),
    ("SKU-106", "Wireless noise-cancelling headphones, 30-hour battery"),
    ("SKU-107", "Organic cotton t-shirt, forest green, relaxed fit"),
    ("SKU-108", "Yoga mat, 6 mm, non-slip, with carrying strap"),
]

QUERIES = ["something to keep my drinks cold on a hike", "shoes for running on trails",
           "a jacket for rainy weather", "headphones for a long flight"]


def run(n_threads=None) -> int:
    import ecomlm
    from ecomlm._core import simd_level

    print(f"ecomlm {ecomlm.__version__} — engine path: {simd_level()}\n")
    t0 = time.perf_counter()
    model = ecomlm.load("all-minilm-l6-v2", n_threads=n_threads)
    print(f"loaded {model!r} in {time.perf_counter() - t0:.2f} s")
    texts = [t for _, t in CATALOG]
    embed = model.embed
    t0 = time.perf_counter()
    items = embed(texts)
    print(f"embedded {len(texts)} products -> {items.shape} in {1000 * (time.perf_counter() - t0):.1f} ms\n")
    q = embed(QUERIES)
    scores = q @ items.T
    for query, row in zip(QUERIES, scores):
        best = np.argsort(-row)[:2]
        hits = ", ".join(f"{CATALOG[i][0]} ({row[i]:.2f})" for i in best)
        print(f"  {query!r}\n      -> {hits}: {CATALOG[best[0]][1]}")
    return 0
