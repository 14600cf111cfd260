"""Logits and embeddings of the three architectures against transformers.

Bar (issue 2): max |ecomlm - transformers| <= 1e-4 x the logits' range in
fp32, on random-initialised models with awkward shapes. F16 and BF16
checkpoints are compared with the reference run on the same rounded weights
in fp32, so only the engine's own arithmetic is measured."""

import numpy as np
import pytest

import ecomlm
import ecomlm._core as core
from helpers import bert_reference_embed, hf_logits, rel_err, save_hf, tiny_bert, tiny_gpt2, tiny_llama

TOL = 1e-4


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    # hidden 40 (not a multiple of 16), vocab 1001 (not a multiple of 64)
    hf = tiny_gpt2()
    return hf, ecomlm.load(save_hf(hf, tmp_path_factory.mktemp("gpt2")))


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    # GQA with 9 query and 3 KV heads, hidden 90, head_dim 10, vocab 1001
    hf = tiny_llama()
    return hf, ecomlm.load(save_hf(hf, tmp_path_factory.mktemp("llama")))


@pytest.mark.parametrize("T", [1, 7, 300])
def test_gpt2_logits(gpt2_pair, T, rng):
    hf, m = gpt2_pair
    ids = rng.integers(0, 1001, size=T)
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= TOL


@pytest.mark.parametrize("T", [1, 7, 300])
def test_llama_logits(llama_pair, T, rng):
    hf, m = llama_pair
    ids = rng.integers(0, 1001, size=T)
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= TOL


@pytest.mark.parametrize("kw", [
    dict(tie_word_embeddings=True),
    dict(tie_word_embeddings=False, num_key_value_heads=9),  # plain multi-head, untied
    dict(num_attention_heads=6, num_key_value_heads=1, hidden_size=48),  # MQA
    dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    dict(rope_scaling={"rope_type": "linear", "factor": 4.0}),
    dict(attention_bias=True, mlp_bias=True),
    dict(head_dim=16),  # head_dim * heads != hidden
])
def test_llama_variants(kw, tmp_path, rng):
    hf = tiny_llama(**kw)
    m = ecomlm.load(save_hf(hf, tmp_path))
    ids = rng.integers(0, 1001, size=70)
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= TOL


def test_gpt2_untied_head_and_inner(tmp_path, rng):
    hf = tiny_gpt2(n_inner=56, tie_word_embeddings=False)
    m = ecomlm.load(save_hf(hf, tmp_path))
    ids = rng.integers(0, 1001, size=33)
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= TOL


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_half_precision_checkpoints(family, dtype_name, tmp_path, rng):
    import torch

    hf = tiny_gpt2() if family == "gpt2" else tiny_llama()
    m = ecomlm.load(save_hf(hf, tmp_path, getattr(torch, dtype_name)))
    hf32 = hf.to(torch.float32)  # the rounded weights, computed in fp32
    ids = rng.integers(0, 1001, size=40)
    assert rel_err(m.logits(ids), hf_logits(hf32, ids)) <= TOL


def test_kv_cache_decode_equals_full_forward(llama_pair, rng):
    _, m = llama_pair
    ids = rng.integers(0, 1001, size=50)
    full = m.logits(ids)
    cache = m.new_cache(64)
    step = [m.forward(ids[:20], cache, all_logits=True)]
    for t in range(20, 50):
        step.append(m.forward(ids[t:t + 1], cache))
    inc = np.concatenate(step, axis=0)
    assert cache.n_past == 50
    assert np.abs(inc - full).max() <= 1e-5 * (full.max() - full.min())


def test_cache_rewind_reuses_prefix(gpt2_pair, rng):
    _, m = gpt2_pair
    prefix, a, b = rng.integers(0, 1001, size=30), rng.integers(0, 1001, size=5), rng.integers(0, 1001, size=5)
    cache = m.new_cache(64)
    m.forward(prefix, cache)
    m.forward(a, cache)
    cache.n_past = 30  # back to the shared prefix
    out = m.forward(b, cache, all_logits=True)
    ref = m.logits(np.concatenate([prefix, b]))[30:]
    assert np.abs(out - ref).max() <= 1e-5 * (ref.max() - ref.min())


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_give_identical_logits(gpt2_pair, threads, rng):
    _, m = gpt2_pair
    ids = rng.integers(0, 1001, size=100)
    m.n_threads = 1
    one = m.logits(ids)
    m.n_threads = threads
    assert np.array_equal(m.logits(ids), one)


def test_scalar_path_matches(llama_pair, rng, simd_reset):
    hf, m = llama_pair
    ids = rng.integers(0, 1001, size=65)
    core.set_simd_level("scalar")
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= TOL


def test_bert_embeddings(tmp_path, rng):
    hf = tiny_bert()
    m = ecomlm.load(save_hf(hf, tmp_path))
    ids = rng.integers(0, 1001, size=(4, 300))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 1:] = 0
    mask[3, :5] = 0  # left padding: positions keep their index, as in transformers
    ref = bert_reference_embed(hf, ids, mask)
    out = m.embed(ids, mask)
    assert out.shape == (4, 36)
    assert np.abs(out - ref).max() <= 1e-5


def test_bert_token_types_and_cls(tmp_path, rng):
    import torch

    hf = tiny_bert()
    m = ecomlm.load(save_hf(hf, tmp_path))
    ids = rng.integers(0, 1001, size=(2, 9))
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        h = hf(torch.tensor(ids), token_type_ids=torch.tensor(types)).last_hidden_state[:, 0].numpy()
    out = m.embed(ids, None, types, pooling="cls", normalize=False)
    assert np.abs(out - h).max() <= 1e-4 * (h.max() - h.min())


def test_model_metadata_and_close(gpt2_pair, tmp_path):
    hf, _ = gpt2_pair
    with ecomlm.load(save_hf(hf, tmp_path)) as m:
        assert m.family == "gpt2"
        assert m.vocab_size == 1001 and m.context_length == 320
        assert m.n_params == sum(p.numel() for p in hf.parameters())
        assert m.logits([1, 2, 3]).shape == (3, 1001)
    with pytest.raises(ecomlm.BadRequestError, match="closed"):
        m.logits([1, 2, 3])
