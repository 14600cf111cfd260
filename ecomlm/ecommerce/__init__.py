"""Shop-facing tools built on ecomlm's public API: a searchable knowledge base,
a customer-support agent, a description writer, a recommender and a review
analyzer, plus the sample shop Brightcart to try them on.

    from ecomlm.ecommerce import KnowledgeBase, SupportAgent, DescriptionWriter, Recommender, ReviewAnalyzer, sample_shop
    shop = sample_shop()
    kb = KnowledgeBase.from_records(shop.kb_records())
    kb.search("can I send it back?", k=3)
"""

from ..data import SampleShop, load_sample_shop
from .knowledge import BM25, Hit, KnowledgeBase
from .support import HANDOFF_REASONS, Reply, SupportAgent, key_sentences, order_text
from .recommend import Recommender, compare_methods, time_split
from .describe import Description, DescriptionWriter, check_description, find_invented_numbers, find_missing
from .reviews import ReviewAnalysis, ReviewAnalyzer, ReviewSummary

__all__ = ["KnowledgeBase", "Hit", "BM25", "Recommender", "compare_methods", "time_split", "ReviewAnalyzer", "ReviewAnalysis",
           "ReviewSummary", "Reply", "SupportAgent", "HANDOFF_REASONS", "key_sentences", "order_text", "Description",
           "DescriptionWriter", "check_description", "find_missing",
           "find_invented_numbers", "sample_shop", "SampleShop"]


def sample_shop() -> SampleShop:
    """The sample shop's products, events, reviews, KB, dialogues and held-out questions."""
    return load_sample_shop()
