"""Which GGUF keeps a fine-tune of the Q4_1 SmolLM2? (the format of a
fine-tuning job's model on a GGUF base, ecomlm.api.fine_tuning)

    OMP_WAIT_POLICY=passive python benchmarks/bench_ft_export.py --steps 2 --lr 2e-4
    OMP_WAIT_POLICY=passive python benchmarks/bench_ft_export.py --steps 12 --lr 2e-3

A LoRA run (rank 4 on --targets, batch 2 x 64, 4 short shop dialogues), then
the merged weights exported as GGUF at the source's types (Q4_1, token table
Q8_0), at Q8_0 everywhere, and with only the tensors the fine-tune changed at
Q8_0 / F16 / F32 (the others copied byte for byte). Every file is run with
dequantised fp32 weights, as is the fine-tuned model and the base, so the
numbers measure the weights alone (not the 8-bit activations of the quantised
kernels): max |export - fine-tuned| / max |fine-tuned - base| over the logits of
a chat prompt (0: the fine-tune kept whole, 1: as far off as the base)."""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--targets", default="q,k,v,o")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from ecomlm.engine import finetune as ft
    from ecomlm.engine import registry
    from ecomlm.engine.gguf_model import load_gguf

    src = registry.resolve("smollm2-135m-instruct")
    rows = [chat("How long is the return window?", "30 days from delivery."),
            chat("When is shipping free?", "On orders over $50."),
            chat("How long is the warranty on electronics?", "2 years."),
            chat("Can I cancel my order?", "Yes, within 60 minutes of placing it.")]
    t = time.time()
    h = ft.fine_tune(src, rows, None, epochs=1000, batch_size=2, seq_len=64, lr=a.lr, lora_rank=4,
                     lora_targets=a.targets.split(","), max_steps=a.steps, n_threads=a.threads, progress=False,
                     val_fraction=0.0, warmup=0)
    print(f"{a.steps} steps, lr {a.lr}, LoRA r4 on {a.targets}: {time.time() - t:.1f} s, losses "
          f"{[round(r['loss'], 3) for r in h]}")
    ids = h.model.apply_chat_template([{"role": "user", "content": "How long can I return a jacket?"}])
    want = h.model.logits(ids).astype(np.float64)
    base = load_gguf(src, a.threads, dequantize=True).logits(ids).astype(np.float64)
    change = np.abs(want - base).max()
    print(f"max |fine-tuned - base| = {change:.4f} logits (range {np.ptp(base):.1f})")
    print("| export | MiB | max err / change | argmax = fine-tuned |\n| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.gguf")
        for label, q, changed in (("source types (Q4_1)", None, False), ("Q8_0 everywhere", "q8_0", False),
                                  ("changed Q8_0, rest source", "q8_0", True),
                                  ("changed F16, rest source (jobs)", "f16", True),
                                  ("changed F32, rest source", "f32", True)):
            ft.save_gguf(h, p, q, src=src, changed_only=changed)
            m = load_gguf(p, a.threads, dequantize=True)
            got = m.logits(ids).astype(np.float64)
            m.close()
            print(f"| {label} | {os.path.getsize(p) / 2**20:.1f} | {np.abs(got - want).max() / change:.3f} | "
                  f"{np.mean(got.argmax(-1) == want.argmax(-1)):.2f} |")
    print(f"(source file: {os.path.getsize(src) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
