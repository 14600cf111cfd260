"""Classifier training throughput: ecomlm's C trainer vs PyTorch on the same
bert (all-MiniLM-L6-v2 by default, 3 classes), side by side in one process.

A step is forward + backward + gradient clipping + AdamW, on a batch of B
sequences of T tokens (no padding), full fine-tuning, dropout off on both
sides. The engines alternate step by step; prints examples/s (best of
--repeat steps after one warm-up each) and the ratio.

    OMP_WAIT_POLICY=passive python benchmarks/bench_train_bert.py [--threads 2] [--batch 16] [--seq 64]
                                                                  [--repeat 5] [--model DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()

    import torch
    import transformers

    from ecomlm.engine import registry
    from ecomlm.engine.classify import build_classifier_trainer

    torch.set_num_threads(args.threads)
    path = args.model or registry.resolve("all-minilm-l6-v2", pull_if_missing=False)
    tr, _, ecfg = build_classifier_trainer(path, 3, n_threads=args.threads)
    ref = transformers.BertForSequenceClassification.from_pretrained(
        path, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-5, weight_decay=0.01)
    rng = np.random.default_rng(0)
    B, T = args.batch, args.seq
    ids = rng.integers(1000, ecfg["vocab"], (B, T)).astype(np.int32)
    ids[:, 0] = 101
    labels = rng.integers(0, 3, B)
    t_ids, t_labels = torch.tensor(ids, dtype=torch.long), torch.tensor(labels)

    def ours():
        tr.zero_grad()
        tr.forward_backward(ids, labels)
        tr.step(1e-5, weight_decay=0.01, max_grad_norm=1.0)

    def peer():
        opt.zero_grad()
        ref(input_ids=t_ids, labels=t_labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()

    times = {"ecomlm": [], "pytorch": []}
    for i in range(args.repeat + 1):
        for name, fn in (("ecomlm", ours), ("pytorch", peer)):
            t0 = time.perf_counter()
            fn()
            if i:
                times[name].append(time.perf_counter() - t0)
    e, p = B / min(times["ecomlm"]), B / min(times["pytorch"])
    print(f"{os.path.basename(os.path.normpath(path))} classifier, full fine-tuning, batch {B} x {T}, "
          f"{args.threads} threads, best of {args.repeat}")
    print(f"| engine | examples/s | tokens/s |\n| --- | ---: | ---: |\n| ecomlm | {e:.1f} | {e * T:.0f} |\n"
          f"| PyTorch {torch.__version__} | {p:.1f} | {p * T:.0f} |\nratio ecomlm / PyTorch: {e / p:.2f}")


if __name__ == "__main__":
    main()
