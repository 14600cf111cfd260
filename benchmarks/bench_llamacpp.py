"""ecomlm against llama.cpp (llama-cpp-python) on the same GGUF files.

    python benchmarks/bench_llamacpp.py                 # 2 threads, best of 3
    python benchmarks/bench_llamacpp.py --threads 2 --repeats 5 --types q4_1,q8_0

SmolLM2-135M-Instruct in Q4_1 (the shipped file), and Q8_0 / Q4_K written by
ecomlm's quantiser (``quantize_file``). There is no fp16 SmolLM2 on these
machines, so Q8_0 and Q4_K are quantised from the Q4_1 file's dequantised
weights: their accuracy is that of Q4_1 (speed is what is measured here).
Q4_K needs rows of 256: SmolLM2's 576-wide rows fall back to Q4_1 and only
ffn_down (rows of 1536) is Q4_K, as llama.cpp's own quantiser also falls back.

Work, the same token ids for both engines (ecomlm's tokenizer):
  pp128 / pp512  prompt processing: one forward over 128 / 512 tokens into an
                 empty cache, tokens/s
  tg128          generation: 128 single-token forwards after a 16-token
                 prompt, feeding a fixed continuation (no sampling, so both
                 engines do exactly the same work), tokens/s
  rss            peak resident memory of the worker process (VmHWM), MiB

Each engine runs in its own subprocess (clean RSS, no shared OpenMP/ggml
state); the engines alternate, and each cell is the best of --repeats runs.
The machine's load average is printed: on shared cores timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TEXT = ("Welcome to our shop! We sell running shoes, hiking boots and sandals for every season. "
        "Our best seller, the TrailRunner 2, weighs 280 grams, has a recycled mesh upper and costs 89.90 EUR. "
        "Free shipping on orders over 50 EUR; returns are accepted within 30 days of delivery. ")


def worker(engine: str, path: str, threads: int, ids: list) -> dict:
    """Runs in a subprocess: load, warm up, time pp128, pp512, tg128."""
    if engine == "ecomlm":
        sys.path.insert(0, ROOT)
        import ecomlm

        m = ecomlm.load(path, n_threads=threads)

        def prefill(toks):
            m.forward(toks, m.new_cache(len(toks) + 1))

        def generate(prompt, cont):
            c = m.new_cache(len(prompt) + len(cont) + 1)
            m.forward(prompt, c)
            t = time.perf_counter()
            for tok in cont:
                m.forward([tok], c)
            return time.perf_counter() - t
    else:
        import llama_cpp

        llm = llama_cpp.Llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=1024, n_batch=512,
                              n_ubatch=512, verbose=False)

        def prefill(toks):
            llm.reset()  # eval() drops the cache beyond n_tokens = 0
            llm.eval(toks)

        def generate(prompt, cont):
            prefill(prompt)
            t = time.perf_counter()
            for tok in cont:
                llm.eval([tok])
            return time.perf_counter() - t

    prefill(ids[:32])  # warm-up: page in the weights, start the threads
    out = {}
    for n in (128, 512):
        t = time.perf_counter()
        prefill(ids[:n])
        out[f"pp{n}"] = n / (time.perf_counter() - t)
    out["tg128"] = 128 / generate(ids[:16], ids[16:144])
    out["rss"] = peak_rss_mib()
    return out


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux keeps
    the parent's high-water mark in it across fork + exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def model_files(types, shipped=None):
    sys.path.insert(0, ROOT)
    from ecomlm.engine import registry
    from ecomlm.engine.quantize import quantize_file

    shipped = shipped or registry.pull("smollm2-135m-instruct", progress=False)
    files = {}
    for t in types:
        if t == "q4_1":
            files[t] = shipped
            continue
        out = os.path.join(os.path.dirname(shipped), f"SmolLM2-135M-Instruct.{t.upper()}.from-Q4_1.gguf")
        if not os.path.exists(out):
            print(f"quantising {os.path.basename(shipped)} -> {os.path.basename(out)}", file=sys.stderr)
            quantize_file(shipped, out + ".part", t)
            os.replace(out + ".part", out)
        files[t] = out
    return files


def run_worker(engine, path, threads, ids_file):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", engine, path, "--threads",
                        str(threads), "--ids", ids_file], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{engine} worker failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--types", default="q4_1,q8_0,q4_k")
    ap.add_argument("--model", help="the Q4_1 GGUF to start from (default: the shipped SmolLM2 file)")
    ap.add_argument("--worker", nargs=2, metavar=("ENGINE", "FILE"), help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        with open(args.ids) as f:
            ids = json.load(f)
        print(json.dumps(worker(args.worker[0], args.worker[1], args.threads, ids)))
        return 0
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed: pip install llama-cpp-python (the 'bench' extra)",
              file=sys.stderr)
        return 1
    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    files = model_files(types, args.model)
    import tempfile

    import ecomlm

    ids = ecomlm.load(files[types[0]], n_threads=1).tokenize(TEXT * 40, add_special_tokens=False)[:600]
    assert len(ids) >= 512 + 16
    ids_file = os.path.join(tempfile.mkdtemp(prefix="bench_llamacpp_"), "ids.json")
    with open(ids_file, "w") as f:
        json.dump(ids, f)
    cmd = " ".join([os.path.basename(sys.executable), "benchmarks/bench_llamacpp.py"] + sys.argv[1:])
    print(f"command: {cmd}")
    print(f"llama-cpp-python {llama_cpp.__version__}, threads={args.threads}, best of {args.repeats}, "
          f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    results = {}
    for t in types:
        best = {"ecomlm": {}, "llama.cpp": {}}
        for rep in range(args.repeats):
            order = ("ecomlm", "llama.cpp") if rep % 2 == 0 else ("llama.cpp", "ecomlm")
            for eng in order:
                r = run_worker("ecomlm" if eng == "ecomlm" else "llama", files[t], args.threads, ids_file)
                b = best[eng]
                for k, v in r.items():  # best speed; peak RSS varies little, report the highest
                    b[k] = max(b.get(k, 0.0), v)
        results[t] = best
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    hdr = f"{'model':<8} {'test':<6} {'ecomlm tok/s':>13} {'llama.cpp tok/s':>16} {'ratio':>7}"
    print(hdr)
    print("-" * len(hdr))
    for t in types:
        e, l = results[t]["ecomlm"], results[t]["llama.cpp"]
        for k in ("pp128", "pp512", "tg128"):
            print(f"{t:<8} {k:<6} {e[k]:>13.1f} {l[k]:>16.1f} {e[k] / l[k]:>6.2f}x")
        print(f"{t:<8} {'rss':<6} {e['rss']:>10.0f} MiB {l['rss']:>12.0f} MiB {e['rss'] / l['rss']:>6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
