"""`ecomlm quantize IN OUT --type T`: Hugging Face llama / gpt2 directories and
GGUF files to quantised GGUF.

F32 output checks the conversion itself (llama.cpp's q/k permutation, gpt2's
transposes, tied heads): within 1e-4 of the range of transformers' logits,
the tolerance of every fp32 model test.

Quantised files are checked twice. Against the same file run with fp32
weights (dequantize=True) the engine's own error, 8-bit activations, stays
within 3% of the range for every type (test_gguf_model's bound). Against the
fp32 transformers model the weights' rounding dominates: each bit fewer
doubles a block's step, and on this random model (weights ~N(0, 0.05), no
outliers to hide behind) we measured 1.1% (Q8_0), 3.8% (Q6_K), 7% (Q5_K) and
16-17% (Q4_K, Q4_1, Q4_0) of the range with exact fp32 compute; the bounds
allow 1.5x that.
"""

import os

import numpy as np
import pytest

import ecomlm
from ecomlm.cli import main
from ecomlm.engine.gguf import GGUFReader
from ecomlm.engine.quantize import quantize_file
from helpers import hf_logits, rel_err, save_hf, save_with_smollm2_tokenizer, tiny_gpt2, tiny_llama

pytest.importorskip("transformers")


def _llama(**kw):
    cfg = dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512,
               initializer_range=0.05)
    cfg.update(kw)
    return tiny_llama(**cfg)


@pytest.mark.parametrize("tied", [True, False])
def test_hf_llama_to_f32_gguf_matches_transformers(tmp_path, rng, tied):
    hf = _llama(tie_word_embeddings=tied)
    d = save_hf(hf, str(tmp_path / "hf"))
    out = str(tmp_path / "m.gguf")
    with pytest.warns(UserWarning, match="model only"):
        quantize_file(d, out, "f32")
    r = GGUFReader(out)
    assert ("output.weight" in r) == (not tied)
    m = ecomlm.load(out)
    assert m.family == "llama" and m.engine_config["rope_interleaved"] == 1
    ids = rng.integers(0, 1001, size=60)
    assert rel_err(m.logits(ids), hf_logits(hf, ids)) <= 1e-4


@pytest.mark.parametrize("qtype,tol", [("q8_0", 0.02), ("q6_k", 0.06), ("q5_k", 0.11), ("q4_k", 0.25),
                                       ("q4_1", 0.25), ("q4_0", 0.25)])
def test_quantised_hf_llama_close_to_fp32(tmp_path, rng, qtype, tol, capsys):
    hf = _llama()
    d = save_hf(hf, str(tmp_path / "hf"))
    out = str(tmp_path / f"m.{qtype}.gguf")
    with pytest.warns(UserWarning):
        assert main(["quantize", d, out, "--type", qtype, "--quiet"]) == 0
    assert out in capsys.readouterr().out
    m = ecomlm.load(out)
    assert set(m.weight_types.values()) == {GGUFReader(out).tensor("blk.0.ffn_up.weight").type}
    ids = rng.integers(0, 1001, size=40)
    got = m.logits(ids)
    assert rel_err(got, ecomlm.load(out, dequantize=True).logits(ids)) <= 0.03
    assert rel_err(got, hf_logits(hf, ids)) <= tol


def test_hf_llama_tokenizer_goes_into_the_gguf(tmp_path):
    hf = _llama(hidden_size=64, intermediate_size=128, vocab_size=49152, tie_word_embeddings=True)
    d = save_with_smollm2_tokenizer(hf, str(tmp_path / "hf"))
    out = str(tmp_path / "m.gguf")
    quantize_file(d, out, "q8_0")
    md = GGUFReader(out).metadata
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "smollm"
    assert len(md["tokenizer.ggml.tokens"]) == 49152
    from_gguf = ecomlm.load(out)
    from_dir = ecomlm.load(d)
    text = "Hello! Ca coûte 59,90 € — 你好, 12345 <|im_start|>user\nshoes?<|im_end|>"
    assert from_gguf.tokenize(text) == from_dir.tokenize(text)
    msgs = [{"role": "user", "content": "Where is my order?"}]
    assert from_gguf.apply_chat_template(msgs) == from_dir.apply_chat_template(msgs)
    assert rel_err(from_gguf.logits(from_dir.tokenize(text)), from_dir.logits(from_dir.tokenize(text))) <= 0.03


def test_hf_gpt2_to_gguf(tmp_path, rng):
    hf = tiny_gpt2(n_embd=64)
    d = save_hf(hf, str(tmp_path / "hf"))
    ids = rng.integers(0, 1001, size=50)
    ref = hf_logits(hf, ids)
    for qtype, tol in (("f32", 1e-4), ("q8_0", 0.03)):
        out = str(tmp_path / f"g.{qtype}.gguf")
        with pytest.warns(UserWarning):
            quantize_file(d, out, qtype)
        m = ecomlm.load(out)
        assert m.family == "gpt2"
        assert rel_err(m.logits(ids), ref) <= tol


def test_gguf_to_gguf_with_the_cli(tmp_path, rng):
    hf = _llama()
    d = save_hf(hf, str(tmp_path / "hf"))
    f32 = str(tmp_path / "m.f32.gguf")
    with pytest.warns(UserWarning):
        quantize_file(d, f32, "f32")
    out = str(tmp_path / "m.q8_0.gguf")
    assert main(["quantize", f32, out, "--type", "q8_0", "--quiet"]) == 0
    ids = rng.integers(0, 1001, size=30)
    assert rel_err(ecomlm.load(out).logits(ids), hf_logits(hf, ids)) <= 0.03
    assert main(["quantize", str(tmp_path / "missing.gguf"), out, "--quiet"]) == 1
    assert main(["quantize", f32, f32, "--quiet"]) == 1
    assert os.path.getsize(out) < os.path.getsize(f32) / 3
