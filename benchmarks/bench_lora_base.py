"""LoRA over the Q4_1 SmolLM2: what holding the frozen base in fp32 costs
against dequantising it on the fly, from measured numbers.

    OMP_WAIT_POLICY=passive python benchmarks/bench_lora_base.py --threads 2 --batch 2 --seq 512

Measures (same process, alternating, so shared-machine load hits both alike):
the base's bytes in fp32 and in its GGUF blocks; the trainer's state; the
peak RSS; the time of one LoRA forward+backward step; and the time to
dequantise every weight matrix once (what an on-the-fly scheme pays at least
twice per step: the forward's W x and the backward's W^T dy)."""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from ecomlm import _core
    from ecomlm.engine import finetune as ft, registry
    from ecomlm.engine.gguf import GGUFReader

    path = registry.resolve("smollm2-135m-instruct")
    r = GGUFReader(path)
    mats = [t for t in r.tensors if len(t.shape) == 2]
    q_bytes = sum(t.nbytes for t in mats)
    f32_bytes = sum(int(np.prod(t.shape)) * 4 for t in mats)
    t0 = time.perf_counter()
    tr, *_ = ft.build_trainer(path, lora=dict(rank=16, alpha=32.0, dropout=0.0, targets=list(ft.LORA_TARGETS)),
                              n_threads=a.threads)
    t_build = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 49152, (a.batch, a.seq + 1), dtype=np.int32)
    raws = [(np.ascontiguousarray(r.raw(t.name)), t.type, t.shape) for t in mats]
    step, deq = [], []
    tr.forward_backward(ids[:, :-1], ids[:, 1:])  # plan the activations
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        tr.zero_grad()
        tr.forward_backward(ids[:, :-1], ids[:, 1:])
        step.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for raw, typ, shape in raws:
            _core.dequantize(raw, typ, shape)
        deq.append(time.perf_counter() - t0)
    s, d = min(step), min(deq)
    print(f"weight matrices: {len(mats)}; fp32 {f32_bytes / 2**20:.0f} MiB, in the GGUF's blocks "
          f"{q_bytes / 2**20:.0f} MiB")
    print(f"trainer state (fp32 base, LoRA r16 on 7 projections, grads, Adam, activations {a.batch}x{a.seq}): "
          f"{tr.state_bytes / 2**20:.0f} MiB; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          f" MiB; build (dequantise + un-permute) {t_build:.1f} s")
    print(f"LoRA forward+backward {a.batch}x{a.seq}: {s:.2f} s ({a.batch * a.seq / s:.0f} tok/s); dequantising "
          f"every matrix once: {d:.3f} s = {100 * d / s:.1f} % of a step (x2 per step on the fly: "
          f"{200 * d / s:.1f} %), threads {a.threads}")


if __name__ == "__main__":
    main()
