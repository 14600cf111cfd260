"""ecomlm's tokenizers against Hugging Face `tokenizers` on the nasty corpus.

The bar: identical ids for SmolLM2 (byte-level BPE) and all-MiniLM-L6-v2
(WordPiece) on every line of tests/corpus.py, for single texts, batches,
sentence pairs with truncation, and invalid UTF-8.
"""

import numpy as np
import pytest

import corpus
import tok_refs

pytest.importorskip("tokenizers")

LINES = corpus.lines()


def _need(x):
    if x is None:
        pytest.skip("model files unavailable (no network and no cache)")
    return x


@pytest.fixture(scope="module")
def smollm2():
    _need(tok_refs.smollm2_meta())
    return tok_refs.smollm2(), tok_refs.smollm2_hf()


@pytest.fixture(scope="module")
def minilm():
    import model_files
    _need(model_files.minilm_dir())
    return tok_refs.minilm(), tok_refs.minilm_hf()


def _mismatches(ours, ref, texts, **kw):
    bad = []
    for s in texts:
        a = ours.encode(s, **kw)
        b = ref.encode(s, add_special_tokens=kw.get("add_special_tokens", True)).ids
        if a != b:
            bad.append((s[:60], a[:12], b[:12]))
    return bad


def test_corpus_is_big_and_nasty():
    assert len(LINES) >= 5000
    joined = "".join(LINES)
    for needle in ["\u200d", "\U0001F3FD", "\u0301", "\t", "\n\n", "\x00", "https://", "@", "漢",
                   "한", "カ", "1,234,567.89", "$19.99", "<|im_start|>", "[CLS]"]:
        assert needle in joined, needle
    assert "" in LINES and max(len(s) for s in LINES) >= 5000


def test_smollm2_ids_match_hf(smollm2):
    ours, ref = smollm2
    bad = _mismatches(ours, ref, LINES)
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"


def test_minilm_ids_match_hf(minilm):
    ours, ref = minilm
    bad = _mismatches(ours, ref, LINES)
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"
    bad = _mismatches(ours, ref, LINES[:1500], add_special_tokens=False)
    assert not bad


@pytest.mark.parametrize("which", ["smollm2", "minilm"])
def test_batch_equals_single(which, request):
    ours, ref = request.getfixturevalue(which)
    texts = LINES[:3000]
    for nt in (1, 2):
        batch = ours.encode_batch(texts, n_threads=nt)
        assert batch.ids == [e.ids for e in ref.encode_batch(texts)]
    mask = batch.attention_mask
    assert mask.shape == batch.input_ids.shape
    assert (mask.sum(1) == batch.lengths).all()


def test_invalid_utf8_is_replaced_like_python(smollm2, minilm):
    for ours, ref in (smollm2, minilm):
        for b in corpus.invalid_utf8():
            text = b.decode("utf-8", "replace")
            assert ours.encode(b) == ref.encode(text).ids, b
            assert ours.encode(b) == ours.encode(text)


def test_lone_surrogates_become_replacement_char(smollm2, minilm):
    for ours, _ in (smollm2, minilm):
        assert ours.encode("a\ud800b\udfff") == ours.encode("a\ufffdb\ufffd")


def test_smollm2_roundtrip_is_lossless(smollm2):
    ours, ref = smollm2
    # bytes without a symbol in SmolLM2's vocabulary are dropped (as HF does),
    # so those texts cannot round-trip; everything else must
    missing = {b for b in range(256) if ours.encode(bytes([b]), add_special_tokens=False) == []}
    assert missing, "SmolLM2 lacks a few control bytes; the test below relies on knowing them"
    checked = 0
    for s in LINES:
        if set(s.encode("utf-8")) & missing:
            continue
        ids = ours.encode(s)
        assert ours.decode(ids) == s
        checked += 1
    assert checked > 4500


def test_decode_matches_hf(smollm2, minilm):
    for ours, ref in (smollm2, minilm):
        for s in LINES[:2500]:
            ids = ours.encode(s)
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(
                    ids, skip_special_tokens=skip), s


def test_minilm_pairs_truncation_padding_match_hf(minilm):
    import os

    import model_files
    from tokenizers import Tokenizer

    ours, _ = minilm
    ref = Tokenizer.from_file(os.path.join(model_files.minilm_dir(), "tokenizer.json"))
    a_texts, b_texts = LINES[100:700], LINES[700:1300]
    for max_length in (8, 16, 128):
        ref.enable_truncation(max_length)
        ref.enable_padding(pad_id=0, pad_token="[PAD]")
        encs = ref.encode_batch(list(zip(a_texts, b_texts)))
        batch = ours.encode_batch(a_texts, b_texts, max_length=max_length)
        assert batch.input_ids.tolist() == [e.ids for e in encs]
        assert batch.token_type_ids.tolist() == [e.type_ids for e in encs]
        assert batch.attention_mask.tolist() == [e.attention_mask for e in encs]
        for a, b, e in zip(a_texts[:50], b_texts[:50], encs):
            ids, types = ours.encode_with_types(a, b, max_length=max_length)
            n = sum(e.attention_mask)
            assert (ids, types) == (e.ids[:n], e.type_ids[:n])
    fixed = ours.encode_batch(a_texts[:10], max_length=128, padding="max_length")
    assert fixed.input_ids.shape == (10, 128)


PATTERNS = {"gpt2": "GPT2_PATTERN", "llama3": "LLAMA3_PATTERN", "qwen2": "QWEN2_PATTERN"}


@pytest.mark.parametrize("family", sorted(PATTERNS))
@pytest.mark.parametrize("digits", [False, True])
def test_pre_tokenizer_regexes_match_hf(family, digits):
    """Each family's hand-written scanner splits exactly like HF's regex
    (Oniguruma), on the whole corpus."""
    from tokenizers import Regex, pre_tokenizers

    from ecomlm.engine import tokenizer as T

    pattern = getattr(T, PATTERNS[family])
    steps = [pre_tokenizers.Split(Regex(pattern), behavior="isolated")]
    if digits:
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    ref = pre_tokenizers.Sequence(steps)
    ours = T.Tokenizer(model="bpe", vocab=["a"], pre=family, split_digits=digits)
    bad = []
    for s in LINES:
        want = [p for p, _ in ref.pre_tokenize_str(s)]
        got = ours.pretokenize(s)
        if got != want:
            bad.append((s[:50], got[:8], want[:8]))
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"


def test_bert_pre_tokenizer_matches_hf(minilm):
    ours, ref = minilm
    for s in LINES:
        normalized = ref.normalizer.normalize_str(s)
        want = [p for p, _ in ref.pre_tokenizer.pre_tokenize_str(normalized)]
        assert ours.pretokenize(s) == want, s


def test_cased_bert_without_lowercase():
    """A cased BERT (no lower-casing, no accent stripping) built from a vocab."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from ecomlm.engine.tokenizer import Tokenizer as Ours

    words = sorted({w for s in LINES[:400] for w in s.split() if len(w) < 12})[:3000]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words + ["##" + w[1:] for w in words if len(w) > 1]
    vocab = list(dict.fromkeys(vocab))
    ref = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    ref.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    ref.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    ours = Ours(model="wordpiece", vocab=vocab, pre="bert", unk_id=1, lowercase=False,
                strip_accents=False)
    for s in LINES:
        assert ours.encode(s) == ref.encode(s).ids, s
    # and with accents stripped but case kept
    ref.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=True)
    ours = Ours(model="wordpiece", vocab=vocab, pre="bert", unk_id=1, lowercase=False,
                strip_accents=True)
    for s in LINES:
        assert ours.encode(s) == ref.encode(s).ids, s


def test_batch_arrays_are_consistent(smollm2):
    ours, _ = smollm2
    batch = ours.encode_batch(["", "a", "hello world"], padding=True)
    assert batch.lengths.tolist() == [0, 1, 2]
    assert batch.input_ids.dtype == np.int64 and batch.input_ids.shape == (3, 2)
    assert batch[2] == ours.encode("hello world")


@pytest.mark.parametrize("family", ["gpt2", "llama3", "qwen2"])
def test_other_bpe_families_from_tokenizer_json(family, smollm2, tmp_path):
    """GPT-2 / Llama-3 / Qwen-2 style tokenizer.json files (SmolLM2's vocabulary
    under each family's pre-tokeniser and template), saved by HF and loaded by
    ecomlm, give HF's ids on the corpus."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers, processors

    from ecomlm.engine import tokenizer as T

    ref = Tokenizer.from_str(tok_refs.smollm2_hf().to_str())
    if family == "gpt2":
        ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pattern = T.LLAMA3_PATTERN if family == "llama3" else T.QWEN2_PATTERN
        ref.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        ref.post_processor = processors.TemplateProcessing(
            single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|>:1 $B:1",
            special_tokens=[("<|endoftext|>", 0)])
    ref.decoder = decoders.ByteLevel()
    path = tmp_path / "tokenizer.json"
    ref.save(str(path))
    ours = T.Tokenizer.from_file(path)
    assert ours.config["pre"] == family
    bad = [s[:50] for s in LINES if ours.encode(s) != ref.encode(s).ids]
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"
    for a, b in zip(LINES[:300], LINES[300:600]):
        e = ref.encode(a, b)
        assert ours.encode_with_types(a, b) == (e.ids, e.type_ids)


def test_minilm_from_gguf_style_metadata(minilm):
    """llama.cpp's BERT GGUF spelling (word starts with U+2581, continuations
    bare) loads back into the same WordPiece tokenizer."""
    from ecomlm.engine.tokenizer import Tokenizer

    ours, _ = minilm
    tokens, types = [], []
    for i in range(ours.vocab_size):
        t = ours.id_to_token(i)
        if ours.is_special(i):
            tokens.append(t)
            types.append(3)
        elif t.startswith("##"):
            tokens.append(t[2:])
            types.append(1)
        else:
            tokens.append("\u2581" + t)
            types.append(1)
    meta = {"tokenizer.ggml.model": "bert", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": 101,
            "tokenizer.ggml.eos_token_id": 102, "tokenizer.ggml.unknown_token_id": 100,
            "tokenizer.ggml.padding_token_id": 0}
    g = Tokenizer.from_gguf_metadata(meta)
    for s in LINES[:2000]:
        assert g.encode(s) == ours.encode(s), s
