"""The sample shop Brightcart shipped with ecomlm (see README.md beside this file).

    from ecomlm.data import load_sample_shop
    shop = load_sample_shop()
    shop.products.head(); shop.events; shop.reviews; shop.knowledge_base; shop.dialogues
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

__all__ = ["DATA_DIR", "SampleShop", "load_sample_shop", "path"]

DATA_DIR = os.path.dirname(os.path.abspath(__file__))
FILES = ("products.csv", "events.csv", "reviews.jsonl", "knowledge_base.jsonl", "knowledge_base.md", "faq.csv",
         "support_dialogues.jsonl", "support_questions.jsonl")


def path(name: str) -> str:
    """Path of a shipped data file, e.g. path("faq.csv")."""
    from ..errors import NotFoundError

    if name not in FILES:
        raise NotFoundError(f"no sample data file {name!r}; the files are {', '.join(FILES)}", param="name")
    return os.path.join(DATA_DIR, name)


def _jsonl(name):
    with open(path(name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class SampleShop:
    products: "object"          # pandas DataFrame, one row a product
    events: "object"            # DataFrame: user_id, product_id, event, timestamp (datetime64)
    reviews: "object"           # DataFrame: review_id, product_id, rating, lang, text, sentiment, aspects, date
    knowledge_base: list        # records: id, title, text, topic, lang, facts[, translation_of]
    dialogues: list             # {"messages": [...]} in OpenAI's fine-tuning chat format
    questions: list             # held-out support questions (see README.md)

    def kb_records(self, lang: str = "en") -> list:
        return [r for r in self.knowledge_base if r.get("lang") == lang]

    def __repr__(self) -> str:
        return (f"<SampleShop Brightcart: {len(self.products)} products, {len(self.events)} events, "
                f"{len(self.reviews)} reviews, {len(self.knowledge_base)} KB entries, {len(self.dialogues)} dialogues, "
                f"{len(self.questions)} held-out questions>")


def load_sample_shop() -> SampleShop:
    import pandas as pd

    products = pd.read_csv(path("products.csv"), dtype={"product_id": str})
    events = pd.read_csv(path("events.csv"), dtype={"user_id": str, "product_id": str})
    events["timestamp"] = pd.to_datetime(events["timestamp"])
    reviews = pd.DataFrame(_jsonl("reviews.jsonl"))
    return SampleShop(products, events, reviews, _jsonl("knowledge_base.jsonl"), _jsonl("support_dialogues.jsonl"),
                      _jsonl("support_questions.jsonl"))
