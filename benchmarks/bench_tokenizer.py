"""Encode throughput of ecomlm's tokenizers against Hugging Face `tokenizers`.

Same models (SmolLM2 byte-level BPE, all-MiniLM-L6-v2 WordPiece), same text
(the nasty test corpus, repeated to --mb megabytes), same outputs (ids are
checked equal before timing). Three workloads:

  document   the whole text as one string, one encode call
  lines      one encode call per line, from Python
  batch      all lines in one encode_batch call (ecomlm: OpenMP, HF: rayon),
             on --threads threads (1 = single-threaded, the issue's bar)

Run:  python benchmarks/bench_tokenizer.py [--mb 4] [--threads 1] [--repeat 3]
Prints MB/s for each and the ratio ecomlm / tokenizers (> 1: ecomlm faster).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))


def best_of(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=4.0, help="megabytes of text")
    ap.add_argument("--threads", type=int, default=1, help="threads for the batch workload")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    # HF's thread pool is sized when tokenizers is first used
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"

    import corpus
    import tok_refs

    lines = corpus.big_text(int(args.mb * (1 << 20)))
    doc = "\n".join(lines)
    nbytes = len(doc.encode("utf-8", "surrogatepass"))
    mb = nbytes / 1e6
    print(f"text: {len(lines)} lines, {mb:.2f} MB; batch threads: {args.threads}")
    rows = []
    for name, ours, ref in (("SmolLM2 BPE", tok_refs.smollm2(), tok_refs.smollm2_hf()),
                            ("MiniLM WordPiece", tok_refs.minilm(), tok_refs.minilm_hf())):
        assert ours.encode(doc) == ref.encode(doc).ids, f"{name}: ids differ"
        sample = lines[:2000]
        assert ours.encode_batch(sample).ids == [e.ids for e in ref.encode_batch(sample)]
        work = {
            "document": (lambda: ours.encode(doc), lambda: ref.encode(doc)),
            "lines": (lambda: [ours.encode(s) for s in lines],
                      lambda: [ref.encode(s) for s in lines]),
            "batch": (lambda: ours.encode_batch(lines, n_threads=args.threads),
                      lambda: ref.encode_batch(lines)),
        }
        for wl, (fo, fr) in work.items():
            to, tr = best_of(fo, args.repeat), best_of(fr, args.repeat)
            rows.append((name, wl, mb / to, mb / tr, tr / to))
    print(f"{'model':18} {'workload':9} {'ecomlm MB/s':>12} {'tokenizers MB/s':>16} {'ratio':>7}")
    for name, wl, a, b, r in rows:
        print(f"{name:18} {wl:9} {a:12.2f} {b:16.2f} {r:6.2f}x")


if __name__ == "__main__":
    main()
