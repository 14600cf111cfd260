"""ecomlm vs PyTorch / transformers / sentence-transformers, side by side.

Runs both engines on the same random-initialised fp32 models in one process
and prints tokens/s (or sentences/s) and the ratio ecomlm / peer:

  - GPT-2-124M shape and SmolLM2-135M shape: prefill of 128 and 512 tokens,
    and one decode step with a KV cache holding 128 tokens;
  - all-MiniLM-L6-v2 (the real model): sentences/s on batches of 32
    sentences of about 32 tokens, against sentence-transformers.

    python benchmarks/bench_engine.py [--threads 2] [--repeat 3] [--only gpt2,smollm2,minilm]

Both sides use the same thread count. Timings are the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def row(table, what, ours, peer, unit):
    table.append((what, ours, peer, unit, ours / peer if peer else float("nan")))


def bench_decoder(name, hf_model, tmp, threads, repeat, table):
    import torch

    import ecomlm

    path = os.path.join(tmp, name)
    hf_model.save_pretrained(path, safe_serialization=True)
    m = ecomlm.load(path, n_threads=threads)
    V = hf_model.config.vocab_size
    rng = np.random.default_rng(0)
    for T in (128, 512):
        ids = rng.integers(0, V, size=T)
        t_ours = best_of(lambda: m.forward(ids, m.new_cache(T), all_logits=False), repeat)
        tid = torch.tensor(ids)[None]
        with torch.inference_mode():
            t_peer = best_of(lambda: hf_model(tid, use_cache=False, logits_to_keep=1), repeat)
        row(table, f"{name} prefill {T} tok", T / t_ours, T / t_peer, "tok/s")
    # decode: one step with 128 tokens in the cache, averaged over 32 steps
    ids = rng.integers(0, V, size=128)
    steps = rng.integers(0, V, size=32)

    def ours_decode():
        cache = m.new_cache(160)
        m.forward(ids, cache)
        t0 = time.perf_counter()
        for s in steps:
            m.forward([int(s)], cache)
        return (time.perf_counter() - t0) / len(steps)

    def peer_decode():
        with torch.inference_mode():
            out = hf_model(torch.tensor(ids)[None], use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            t0 = time.perf_counter()
            for s in steps:
                out = hf_model(torch.tensor([[int(s)]]), past_key_values=past, use_cache=True)
                past = out.past_key_values
            return (time.perf_counter() - t0) / len(steps)

    t_ours = min(ours_decode() for _ in range(repeat))
    t_peer = min(peer_decode() for _ in range(repeat))
    row(table, f"{name} decode step (cache 128)", 1 / t_ours, 1 / t_peer, "tok/s")
    m.close()


def bench_minilm_random(threads, repeat, table, tmp):
    """Where the real weights cannot be had (an offline machine): a random
    BERT of all-MiniLM-L6-v2's shape against transformers' BertModel with the
    same mean pooling and normalisation sentence-transformers applies."""
    import torch
    import transformers

    import ecomlm

    cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                  intermediate_size=1536, vocab_size=30522)
    hf = transformers.BertModel(cfg).eval()
    path = os.path.join(tmp, "minilm-shape")
    hf.save_pretrained(path, safe_serialization=True)
    m = ecomlm.load(path, n_threads=threads)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(32, 32))
    mask = np.ones_like(ids)
    tids, tmask = torch.tensor(ids), torch.tensor(mask)

    def peer():
        with torch.inference_mode():
            h = hf(tids, attention_mask=tmask).last_hidden_state
            mm = tmask[..., None].float()
            torch.nn.functional.normalize((h * mm).sum(1) / mm.sum(1), dim=-1)

    t_ours = best_of(lambda: m.embed(ids, mask), repeat)
    t_peer = best_of(peer, repeat)
    row(table, "MiniLM-L6 shape (random) 32 x 32 tok", 32 / t_ours, 32 / t_peer, "sent/s")


def bench_minilm(threads, repeat, table):
    from sentence_transformers import SentenceTransformer

    import ecomlm
    from ecomlm.engine import registry

    path = registry.pull("all-minilm-l6-v2")
    words = ("red running shoes with breathable mesh upper cushioned sole free shipping on orders over fifty "
             "dollars returns accepted within thirty days of delivery size chart fits true to size").split()
    rng = np.random.default_rng(0)
    sentences = [" ".join(rng.choice(words, size=28)) for _ in range(32)]
    st = SentenceTransformer(path, device="cpu")
    m = ecomlm.load(path, n_threads=threads)
    # end to end: text in, normalised embeddings out (each side's own tokenizer)
    t_ours = best_of(lambda: m.embed(sentences), repeat)
    t_peer = best_of(lambda: st.encode(sentences, batch_size=32, normalize_embeddings=True), repeat)
    n_tok = m.tokenizer.encode_batch(sentences).input_ids.shape[1]
    row(table, f"all-MiniLM-L6-v2 batch 32 x {n_tok} tok, text in", 32 / t_ours, 32 / t_peer, "sent/s")
    # the encoder alone, on the same token ids
    enc = m.tokenizer.encode_batch(sentences)
    feats = st.tokenize(sentences)
    import torch

    def peer_model():
        with torch.inference_mode():
            st.forward(dict(feats))

    t_ours = best_of(lambda: m.embed(enc.input_ids, enc.attention_mask, enc.token_type_ids), repeat)
    t_peer = best_of(peer_model, repeat)
    row(table, "all-MiniLM-L6-v2 encoder only (same ids)", 32 / t_ours, 32 / t_peer, "sent/s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="gpt2,smollm2,minilm")
    args = ap.parse_args()
    import torch
    import transformers

    import ecomlm._core as core

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    only = set(args.only.split(","))
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        if "gpt2" in only:
            cfg = transformers.GPT2Config()  # 124M: 12 layers, 768 wide, 12 heads, vocab 50257
            bench_decoder("gpt2-124M", transformers.GPT2LMHeadModel(cfg).eval(), tmp, args.threads, args.repeat,
                          table)
        if "smollm2" in only:
            cfg = transformers.LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                           num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                           max_position_embeddings=8192, rope_theta=100000.0,
                                           rms_norm_eps=1e-5, tie_word_embeddings=True)
            bench_decoder("smollm2-135M", transformers.LlamaForCausalLM(cfg).eval(), tmp, args.threads,
                          args.repeat, table)
        if "minilm" in only:
            bench_minilm(args.threads, args.repeat, table)
        if "minilm-random" in only:
            bench_minilm_random(args.threads, args.repeat, table, tmp)
    print(f"\necomlm {core.simd_level()} vs torch {torch.__version__} / transformers {transformers.__version__}, "
          f"{args.threads} threads, fp32, best of {args.repeat}")
    print(f"{'workload':44s} {'ecomlm':>12s} {'peer':>12s} {'unit':>7s} {'ratio':>7s}")
    for what, ours, peer, unit, ratio in table:
        print(f"{what:44s} {ours:12.1f} {peer:12.1f} {unit:>7s} {ratio:7.2f}x")


if __name__ == "__main__":
    main()
