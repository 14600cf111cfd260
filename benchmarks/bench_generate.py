"""Sampled generation, 1, 4 and 16 sequences at once: ecomlm against
llama-cpp-python and transformers `generate`, side by side in one run.

    python benchmarks/bench_generate.py [--tokens 64] [--threads 2] [--repeat 2] [--skip llama,hf]

Model: SmolLM2-135M-Instruct, the shipped GGUF Q4_1 file.
  ecomlm       the GGUF Q4_1 model; N caller threads each call complete() for
               one prompt; the engine's scheduler batches the N sequences into
               one forward pass per step (the way `ecomlm serve` serves them).
  ecomlm fp32  the same file with dequantize=True (the weights transformers gets).
  llama.cpp    llama-cpp-python on the same Q4_1 file (n_batch 512). Its Python
               API decodes one sequence at a time, so N sequences run one after
               another: what a Python user of it gets.
  transformers LlamaForCausalLM holding the file's dequantised weights (fp32; no
               fp32 SmolLM2 checkpoint exists on this machine), the N prompts
               left-padded into one batch, `generate(do_sample=True)`.
Every engine samples at temperature 0.8 and generates exactly --tokens new
tokens per sequence (end-of-text is banned or ignored); wall time includes
prompt processing. Prints aggregate generated tokens/s, and each engine's
N-sequence figure against its own single sequence ("x one").
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from bench_engine import best_of  # noqa: E402  (the shortest wall time of repeat calls)
from bench_serve import concurrent  # noqa: E402  (N caller threads at once, wall time)

PROMPTS = [f"Write a short product description for item {i}: a pair of running shoes in colour {c}."
           for i, c in enumerate(["red", "blue", "green", "black", "white", "grey", "navy", "pink"] * 2)]
COUNTS = (1, 4, 16)


def bench_ecomlm(path, tokens, threads, repeat, dequantize):
    import ecomlm
    from ecomlm.engine.gguf_model import load_gguf

    m = load_gguf(path, n_threads=threads, dequantize=True) if dequantize else ecomlm.load(path, n_threads=threads)
    prompts = [m.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]

    def gen(i):
        c = m.complete([prompts[i]], max_tokens=tokens, temperature=0.8, seed=i, stop_token_ids=(-1,))[0][0]
        assert c.completion_tokens == tokens

    gen(0)
    out = {n: min(concurrent(gen, n) for _ in range(repeat)) for n in COUNTS}
    ids = [list(p) if not isinstance(p, str) else m.tokenizer.encode(p) for p in prompts]
    m.close()
    return out, ids


def bench_llama(path, tokens, threads, repeat, ids):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False, seed=0)
    eos = {llm.token_eos(): -1e9, 0: -1e9, 2: -1e9}

    def gen(i):
        r = llm.create_completion(ids[i], max_tokens=tokens, temperature=0.8, top_p=1.0, top_k=0, min_p=0.0,
                                  repeat_penalty=1.0, logit_bias=eos, seed=i)
        assert r["usage"]["completion_tokens"] == tokens, r["usage"]

    gen(0)
    return {n: best_of(lambda: [gen(i) for i in range(n)], repeat) for n in COUNTS}


def bench_hf(path, tokens, threads, repeat, ids):
    import torch
    from test_gguf_model import smollm2_reference

    torch.set_num_threads(threads)
    hf = smollm2_reference(path)

    def gen(n):
        batch = ids[:n]
        width = max(map(len, batch))
        x = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for r, row in enumerate(batch):  # left padding, as batched generation needs
            x[r, width - len(row):] = torch.tensor(row)
            mask[r, width - len(row):] = 1
        torch.manual_seed(n)
        with torch.no_grad():
            y = hf.generate(input_ids=x, attention_mask=mask, do_sample=True, temperature=0.8, top_k=0, top_p=1.0,
                            max_new_tokens=tokens, min_new_tokens=tokens, pad_token_id=0, eos_token_id=None)
        assert y.shape[1] - width == tokens

    gen(1)
    return {n: best_of(lambda: gen(n), repeat) for n in COUNTS}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of: fp32, llama, hf")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    from ecomlm.engine.registry import pull

    path = pull("smollm2-135m-instruct")
    if os.path.isdir(path):
        path = next(os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith("Q4_1.gguf"))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; threads={a.threads}; "
          f"{a.tokens} sampled tokens per sequence; best of {a.repeat}")
    rows = {}
    rows["ecomlm Q4_1"], ids = bench_ecomlm(path, a.tokens, a.threads, a.repeat, False)
    if "fp32" not in skip:
        rows["ecomlm fp32"], _ = bench_ecomlm(path, a.tokens, a.threads, a.repeat, True)
    if "llama" not in skip:
        rows["llama.cpp Q4_1"] = bench_llama(path, a.tokens, a.threads, a.repeat, ids)
    if "hf" not in skip:
        rows["transformers fp32"] = bench_hf(path, a.tokens, a.threads, a.repeat, ids)
    print(f"\n{'engine':18s} " + " ".join(f"{f'{n} seq tok/s':>13s}" for n in COUNTS) +
          " " + " ".join(f"{f'{n} x one':>8s}" for n in COUNTS[1:]))
    for name, t in rows.items():
        tps = {n: n * a.tokens / t[n] for n in COUNTS}
        print(f"{name:18s} " + " ".join(f"{tps[n]:13.1f}" for n in COUNTS) + " " +
              " ".join(f"{tps[n] / tps[1]:8.2f}" for n in COUNTS[1:]))
    base = rows["ecomlm Q4_1"]
    for name, t in rows.items():
        if name != "ecomlm Q4_1":
            print(f"ecomlm Q4_1 / {name}: " + ", ".join(f"{n} seq {t[n] / base[n]:.2f}x" for n in COUNTS))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
