"""The engine-layer Tokenizer: loaders, errors, streaming, chat templates, threads."""

import json
import threading

import numpy as np
import pytest

import tok_refs
from ecomlm.engine.chat import CHATML_TEMPLATE, render_chat_template
from ecomlm.engine.tokenizer import Tokenizer
from ecomlm.errors import BadRequestError, ModelFormatError, NotFoundError


@pytest.fixture(scope="module")
def smollm2():
    if tok_refs.smollm2_meta() is None:
        pytest.skip("SmolLM2 files unavailable")
    return tok_refs.smollm2()


@pytest.fixture(scope="module")
def minilm():
    import model_files
    if model_files.minilm_dir() is None:
        pytest.skip("MiniLM files unavailable")
    return tok_refs.minilm()


def tiny_bpe(**kw):
    vocab = ["<|end|>", "a", "b", "ab", "Ġ", "Ġa", "c"]
    return Tokenizer(model="bpe", vocab=vocab, merges=[("a", "b"), ("Ġ", "a")],
                     added_tokens=[(0, True)], eos_id=0, **kw)


# ------------------------------------------------------------------ basics

def test_vocab_lookups(smollm2, minilm):
    assert smollm2.vocab_size == 49152 and minilm.vocab_size == 30522
    assert smollm2.token_to_id("<|im_start|>") == 1
    assert smollm2.id_to_token(1) == "<|im_start|>"
    assert smollm2.token_to_id("no such token \u2603") is None
    assert smollm2.id_to_token(10 ** 9) is None and smollm2.id_to_token(-1) is None
    assert minilm.token_to_id("[CLS]") == 101 and minilm.id_to_token(102) == "[SEP]"
    assert smollm2.is_special(2) and not smollm2.is_special(100)


def test_special_tokens_never_split(smollm2, minilm):
    ids = smollm2.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert minilm.encode("a [MASK] b")[2] == 103
    assert 103 not in minilm.encode("a [mask] b")  # added tokens match verbatim


def test_add_special_tokens(minilm, smollm2):
    assert minilm.encode("hello")[0] == 101 and minilm.encode("hello")[-1] == 102
    assert minilm.encode("hello", add_special_tokens=False) == [7592]
    assert smollm2.encode("hello") == smollm2.encode("hello", add_special_tokens=False)
    t = tiny_bpe(add_eos=True)
    assert t.encode("ab") == [3, 0]


def test_tiny_bpe_merges_by_rank():
    t = tiny_bpe()
    assert t.encode("ab ab") == [3, 4, 3]  # (a b) ranks before (Ġ a): " ab" -> Ġ, ab
    assert t.encode(" a") == [5]
    assert t.decode([3, 4, 3]) == "ab ab"
    assert t.encode("abc") == [3, 6]


def test_decode_skip_special(smollm2):
    ids = smollm2.encode("<|im_start|>assistant\nOK<|im_end|>")
    assert smollm2.decode(ids) == "<|im_start|>assistant\nOK<|im_end|>"
    assert smollm2.decode(ids, skip_special_tokens=True) == "assistant\nOK"
    assert smollm2.decode(np.array(ids)) == smollm2.decode(ids)


def test_decode_half_character_shows_replacement(smollm2):
    ids = smollm2.encode("你")
    if len(ids) > 1:
        assert smollm2.decode(ids[:1]) == "\ufffd" * len(smollm2.decode(ids[:1]))


# ---------------------------------------------------------------- streaming

def test_stream_never_emits_half_a_character(smollm2, minilm):
    text = "价格：¥199.00 这款无线耳机 👨‍👩‍👧‍👦 naïve café <|im_end|> ok"
    ids = smollm2.encode(text)
    st = smollm2.stream()
    pieces = [st.add(i) for i in ids] + [st.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # a Chinese character spans several byte-level tokens: some adds emit ""
    assert any(p == "" for p in pieces)
    st = smollm2.stream(skip_special_tokens=True)
    assert "".join([st.add(i) for i in ids] + [st.flush()]) == smollm2.decode(ids, True)
    mids = minilm.encode("Hello, world! It's unaffable.")
    st = minilm.stream(skip_special_tokens=True)
    assert "".join(st.add(i) for i in mids) == minilm.decode(mids, skip_special_tokens=True)


def test_stream_flush_of_cut_character(smollm2):
    ids = smollm2.encode("😀", add_special_tokens=False)
    st = smollm2.stream()
    assert "".join(st.add(i) for i in ids[:-1]) == ""
    assert st.flush() == "\ufffd"


# ------------------------------------------------------------------ errors

def test_bad_arguments_raise_bad_request(smollm2):
    with pytest.raises(BadRequestError, match="text"):
        smollm2.encode(123)
    with pytest.raises(BadRequestError, match="texts"):
        smollm2.encode_batch("not a list")
    with pytest.raises(BadRequestError, match=r"texts\[1\]"):
        smollm2.encode_batch(["ok", None])
    with pytest.raises(BadRequestError, match=r"ids\[1\]"):
        smollm2.decode([1, 10 ** 7])
    with pytest.raises(BadRequestError, match=r"ids\[0\]"):
        smollm2.decode([-1])
    with pytest.raises(BadRequestError, match=r"ids\[0\]"):
        smollm2.decode(["x"])
    with pytest.raises(BadRequestError, match="max_length"):
        smollm2.encode("x", max_length=0)
    with pytest.raises(BadRequestError, match="padding"):
        smollm2.encode_batch(["x"], padding="sideways")
    with pytest.raises(BadRequestError, match="pairs"):
        smollm2.encode_batch(["x", "y"], ["z"])


def test_max_length_below_special_tokens(minilm):
    with pytest.raises(BadRequestError, match="max_length"):
        minilm.encode("a", "b", max_length=2)


def test_malformed_tokenizer_json_raises_model_format_error(tmp_path):
    cases = [
        "not json",
        {"model": {"type": "Unigram", "vocab": {}}},
        {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a a"]},
         "pre_tokenizer": {"type": "ByteLevel"}},
        {"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}},
        {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]},
         "pre_tokenizer": {"type": "ByteLevel"}},
        {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
         "pre_tokenizer": {"type": "Metaspace"}},
        {"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"},
         "pre_tokenizer": {"type": "BertPreTokenizer"}},
        {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": -1}]},
        {"model": []},
    ]
    for case in cases:
        with pytest.raises(ModelFormatError):
            Tokenizer.from_tokenizer_json(case if isinstance(case, str) else json.dumps(case))
    with pytest.raises(NotFoundError):
        Tokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(NotFoundError):
        Tokenizer.from_file(tmp_path)


def test_bad_gguf_metadata_raises(smollm2):
    meta = dict(tok_refs.smollm2_meta())
    for key, value in [("tokenizer.ggml.model", "llama"), ("tokenizer.ggml.pre", "mystery"),
                       ("tokenizer.ggml.tokens", []), ("tokenizer.ggml.bos_token_id", 10 ** 6),
                       ("tokenizer.ggml.merges", ["Ġ"]), ("tokenizer.ggml.merges", ["zqzq qzqz"]),
                       ("tokenizer.ggml.token_type", [1])]:
        bad = dict(meta)
        bad[key] = value
        with pytest.raises(ModelFormatError):
            Tokenizer.from_gguf_metadata(bad)
    with pytest.raises(BadRequestError):
        Tokenizer.from_gguf_metadata("meta")


def test_gguf_metadata_accepts_bytes(smollm2):
    meta = dict(tok_refs.smollm2_meta())
    meta["tokenizer.ggml.tokens"] = [t.encode() for t in meta["tokenizer.ggml.tokens"]]
    meta["tokenizer.ggml.merges"] = [m.encode() for m in meta["tokenizer.ggml.merges"]]
    t = Tokenizer.from_gguf_metadata(meta)
    assert t.encode("Hello there 42") == smollm2.encode("Hello there 42")


# ------------------------------------------------------------------ loaders

def test_minilm_from_vocab_txt_equals_tokenizer_json(minilm):
    import os

    import model_files
    d = model_files.minilm_dir()
    t = Tokenizer.from_file(os.path.join(d, "vocab.txt"))
    for s in ["Hello, World!", "naïve café 你好 [MASK]", "unaffable 1,234.5"]:
        assert t.encode(s) == minilm.encode(s)


def test_from_tokenizer_json_roundtrip_of_hf_smollm2(tmp_path, smollm2):
    """A tokenizer.json saved by HF (SmolLM2's configuration) loads identically."""
    ref = tok_refs.smollm2_hf()
    path = tmp_path / "tokenizer.json"
    ref.save(str(path))
    cfg = {"chat_template": tok_refs.smollm2_meta()["tokenizer.chat_template"],
           "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    t = Tokenizer.from_file(tmp_path)
    for s in ["Hello 123 world", "<|im_start|>x", "  x\n\n y"]:
        assert t.encode(s) == smollm2.encode(s)
    assert t.chat_template == smollm2.chat_template


def test_gpt2_style_vocab_and_merges(tmp_path):
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers
    vocab = {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4, "<|endoftext|>": 5, "'": 6, "s": 7}
    merges = [("a", "b"), ("Ġ", "ab")]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    t = Tokenizer.from_file(tmp_path)
    ref = HF(models.BPE(vocab=vocab, merges=merges))
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ref.decoder = decoders.ByteLevel()
    for s in ["ab ab", "ab's", "ba  ab"]:
        assert t.encode(s) == ref.encode(s).ids


# ------------------------------------------------------------------ threads

def test_threads_share_one_tokenizer(smollm2):
    import corpus
    texts = corpus.lines()[:800]
    want = [smollm2.encode(s) for s in texts]
    errors = []

    def work():
        try:
            for _ in range(2):
                assert [smollm2.encode(s) for s in texts] == want
                assert smollm2.encode_batch(texts, n_threads=2).ids == want
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_inputs_unmodified_and_no_leak(smollm2):
    import tracemalloc
    ids = smollm2.encode("hello world")
    before = list(ids)
    smollm2.decode(ids)
    assert ids == before
    tracemalloc.start()
    for _ in range(2000):
        smollm2.decode(smollm2.encode("hello wörld 你好"))
    snap1 = tracemalloc.take_snapshot()
    for _ in range(2000):
        smollm2.decode(smollm2.encode("hello wörld 你好"))
    snap2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in snap2.compare_to(snap1, "filename"))
    assert growth < 200_000


# --------------------------------------------------------------------- chat

MESSAGES = [{"role": "system", "content": "You sell shoes."},
            {"role": "user", "content": "Do you have size 42?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "价格？"}]


def test_smollm2_chat_template_matches_transformers(smollm2):
    from transformers.utils.chat_template_utils import render_jinja_template
    template = smollm2.chat_template
    assert "<|im_start|>" in template
    for msgs in (MESSAGES, MESSAGES[1:]):
        for gen in (True, False):
            want = render_jinja_template(conversations=[msgs], chat_template=template,
                                         add_generation_prompt=gen)[0][0]
            assert smollm2.apply_chat_template(msgs, add_generation_prompt=gen) == want
    ids = smollm2.apply_chat_template(MESSAGES, tokenize=True)
    assert ids[0] == 1 and ids.count(2) == 4


def test_chatml_fallback(minilm):
    text = minilm.apply_chat_template(MESSAGES[:2])
    assert text == ("<|im_start|>system\nYou sell shoes.<|im_end|>\n"
                    "<|im_start|>user\nDo you have size 42?<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat_template(None, MESSAGES[:1], add_generation_prompt=False) == \
        render_chat_template(CHATML_TEMPLATE, MESSAGES[:1], add_generation_prompt=False)


def test_chat_message_validation(smollm2):
    with pytest.raises(BadRequestError, match=r"messages\[0\]\.role"):
        smollm2.apply_chat_template([{"role": "wizard", "content": "x"}])
    with pytest.raises(BadRequestError, match=r"messages\[1\]"):
        smollm2.apply_chat_template([{"role": "user", "content": "x"}, "hi"])
    with pytest.raises(BadRequestError, match="messages"):
        smollm2.apply_chat_template("hello")
    parts = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert "ab<|im_end|>" in smollm2.apply_chat_template(parts)
    with pytest.raises(BadRequestError, match="chat template"):
        render_chat_template("{{ raise_exception('no system role') }}", MESSAGES)
    with pytest.raises(ModelFormatError):
        render_chat_template("{% for %}", MESSAGES)
