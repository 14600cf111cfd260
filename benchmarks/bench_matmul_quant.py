"""ecomlm._core.matmul_quant against NumPy's fp32 matmul on the dequantised weights.

    python benchmarks/bench_matmul_quant.py [--n 1536 --k 576 --threads 1 2 --types q4_1 q8_0]

Q4_0 / Q4_1 / Q8_0 run on the 8-row tiled layout the models use.
Prints time, GFLOP/s and weight bytes streamed per second for decode (M=1) and
prompt-sized (M=128) products. NumPy's BLAS thread count follows
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS as set before the run; compare ratios
only at equal thread counts.
"""

import argparse
import time

import numpy as np

from ecomlm import _core
from ecomlm.engine.quantize import QUANT_TYPES


def best_time(fn, min_time=0.3):
    fn()
    n, best = 0, float("inf")
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < min_time or n < 5:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        n += 1
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--k", type=int, default=576)
    ap.add_argument("--m", type=int, nargs="+", default=[1, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--types", nargs="+", default=["q4_1", "q8_0", "q4_0"])
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"simd={_core.simd_level()}  N={a.n} K={a.k}")
    print(f"{'type':5s} {'M':>4s} {'thr':>3s} {'ecomlm us':>10s} {'GFLOP/s':>8s} {'GB/s':>6s} {'numpy us':>9s} {'ratio':>6s}")
    for name in a.types:
        qt = QUANT_TYPES[name]
        w = (rng.standard_normal((a.n, a.k)) * 0.05).astype(np.float32)
        raw = _core.quantize(w, qt)
        wd = _core.dequantize(raw, qt, (a.n, a.k))
        # Q4_0 / Q4_1 / Q8_0: time the models' 8-row tiled layout (the
        # standard-block entry point tiles a copy on every call)
        tiled = name in ("q4_0", "q4_1", "q8_0")
        if tiled:
            raw = _core.tile_weights(raw, qt, a.n, a.k)
        for m in a.m:
            x = rng.standard_normal((m, a.k)).astype(np.float32)
            t_np = best_time(lambda: x @ wd.T)
            for nt in a.threads:
                t = best_time(lambda: _core.matmul_quant(x, raw, qt, a.n, a.k, n_threads=nt, tiled=tiled))
                print(f"{name:5s} {m:4d} {nt:3d} {t * 1e6:10.1f} {2 * m * a.n * a.k / t / 1e9:8.1f} "
                      f"{raw.nbytes / t / 1e9:6.1f} {t_np * 1e6:9.1f} {t_np / t:6.2f}")


if __name__ == "__main__":
    main()
