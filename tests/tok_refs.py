"""The reference tokenizers the tests compare against, built with Hugging Face
`tokenizers`, and the ecomlm tokenizers for the same models.

SmolLM2's reference is built from the GGUF metadata the way its tokenizer.json
(HuggingFaceTB/SmolLM2-135M-Instruct) is configured: BPE over the vocab and
merges, no normaliser, pre-tokeniser Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], ByteLevel decoder, the
control tokens (GGUF token type 3) as special added tokens. (transformers' own
GGUF converter leaves out the Digits step, so it is not a faithful reference.)
"""

from __future__ import annotations

import functools
import json
import os

import model_files


@functools.lru_cache(maxsize=None)
def smollm2_meta() -> dict | None:
    cache = os.path.join(model_files.cache_dir(), "smollm2-tokenizer-meta.json")
    path = model_files.smollm2_gguf()
    if path is None and not os.path.isfile(cache):
        return None
    if os.path.isfile(cache) and (path is None or os.path.getmtime(cache) >= os.path.getmtime(path)):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    meta = model_files.gguf_tokenizer_metadata(path)
    meta = {k: (v if not hasattr(v, "tolist") else v.tolist()) for k, v in meta.items()}
    with open(cache + ".part", "w", encoding="utf-8") as f:
        json.dump(meta, f)
    os.replace(cache + ".part", cache)
    return meta


@functools.lru_cache(maxsize=None)
def smollm2_hf():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    meta = smollm2_meta()
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == 3])
    return tok


@functools.lru_cache(maxsize=None)
def smollm2():
    from ecomlm.engine.tokenizer import Tokenizer

    return Tokenizer.from_gguf_metadata(smollm2_meta())


@functools.lru_cache(maxsize=None)
def minilm_hf():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_files.minilm_dir(), "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@functools.lru_cache(maxsize=None)
def minilm():
    from ecomlm.engine.tokenizer import Tokenizer

    return Tokenizer.from_file(model_files.minilm_dir())
