"""Generation throughput in process and through `ecomlm serve`.

1. In process: aggregate generated tokens/s of the default chat model
   (SmolLM2-135M-Instruct, GGUF Q4_1) with 1, 4 and 16 concurrent sequences,
   each a separate caller thread (the engine's scheduler batches them into
   one forward pass per step). Every sequence generates exactly --tokens
   tokens (end-of-text is not a stop here), prefill included in the time.
2. Server: `ecomlm serve` on 127.0.0.1 (a free port) under a bounded load:
   --requests chat completions from --concurrency client threads at once;
   prints requests/s, completion tokens/s and latency p50/p90/p99, then stops
   the server.

    python benchmarks/bench_serve.py [--tokens 64] [--requests 64] [--concurrency 8] [--threads N]

(llama-cpp-python and transformers comparisons live in their own benchmark.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

PROMPTS = [f"Write a short product description for item {i}: a pair of running shoes in colour {c}."
           for i, c in enumerate(["red", "blue", "green", "black", "white", "grey", "navy", "pink"] * 4)]


def concurrent(fn, n):
    """Run fn(i) in n threads at once; return the wall time."""
    errors = []

    def run(i):
        try:
            fn(i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def bench_in_process(tokens: int, threads, repeat: int):
    import ecomlm

    m = ecomlm.load("smollm2-135m-instruct", n_threads=threads)
    prompts = [m.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]

    def gen(i):
        c = m.complete([prompts[i]], max_tokens=tokens, temperature=0.8, seed=i, stop_token_ids=(-1,))[0][0]
        assert c.completion_tokens == tokens

    gen(0)  # warm up (allocations, prefix cache of the chat template's system prompt)
    rows = []
    for n in (1, 4, 16):
        wall = min(concurrent(gen, n) for _ in range(repeat))
        rows.append((n, n * tokens, wall, n * tokens / wall))
    base = rows[0][3]
    print(f"\nIn process: {m.name}, {tokens} tokens per sequence, threads={m.n_threads}, best of {repeat}")
    print(f"{'sequences':>9} {'tokens':>7} {'wall s':>8} {'tokens/s':>9} {'x one':>6}")
    for n, tok, wall, tps in rows:
        print(f"{n:>9} {tok:>7} {wall:>8.2f} {tps:>9.1f} {tps / base:>6.2f}")
    m.close()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_server(tokens: int, requests: int, concurrency: int, threads):
    import httpx

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen([sys.executable, "-m", "ecomlm", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--preload", "gpt-3.5-turbo", "--log-level", "warning"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit("ecomlm serve did not start")
            time.sleep(0.3)
        client = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency + 4))
        lat, ttft, ntok = [], [], []
        lock = threading.Lock()
        todo = iter(range(requests))  # bounded: exactly `requests` requests, then the workers stop

        def body(i, stream=False):
            return dict(model="gpt-3.5-turbo", messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                        max_tokens=tokens, temperature=0.8, seed=i, stream=stream)

        def worker(_):
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                if i % 2:  # half the requests stream, to measure time to first token
                    first = None
                    n = 0
                    with client.stream("POST", "/v1/chat/completions", json=body(i, True)) as r:
                        r.raise_for_status()
                        for line in r.iter_lines():
                            if line.startswith("data: {"):
                                ch = json.loads(line[6:])
                                if ch["choices"] and ch["choices"][0]["delta"].get("content"):
                                    n += 1
                                    if first is None:
                                        first = time.perf_counter() - t0
                    dt = time.perf_counter() - t0
                    with lock:
                        ttft.append(first if first is not None else dt)
                else:
                    r = client.post("/v1/chat/completions", json=body(i))
                    r.raise_for_status()
                    n = r.json()["usage"]["completion_tokens"]
                    dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    ntok.append(n)

        client.post("/v1/chat/completions", json=body(0)).raise_for_status()  # warm up
        wall = concurrent(worker, concurrency)
        p = np.percentile(np.asarray(lat), [50, 90, 99])
        q = np.percentile(np.asarray(ttft), [50, 90, 99]) if ttft else [float("nan")] * 3
        print(f"\nServer: {requests} chat requests (max_tokens={tokens}; half streamed), {concurrency} at once, "
              "127.0.0.1")
        print(f"{'requests/s':>10} {'tokens/s':>9} {'lat p50':>8} {'p90':>7} {'p99':>7} {'ttft p50':>9} {'p90':>7} "
              f"{'p99':>7}")
        print(f"{requests / wall:>10.2f} {sum(ntok) / wall:>9.1f} {p[0]:>7.2f}s {p[1]:>6.2f}s {p[2]:>6.2f}s "
              f"{q[0]:>8.2f}s {q[1]:>6.2f}s {q[2]:>6.2f}s")
        client.close()
        return requests / wall, p
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per sequence / request")
    ap.add_argument("--requests", type=int, default=64, help="server: requests in all")
    ap.add_argument("--concurrency", type=int, default=8, help="server: requests at once")
    ap.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: all cores)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default="process,server")
    args = ap.parse_args()
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if "process" in args.only:
        bench_in_process(args.tokens, args.threads, args.repeat)
    if "server" in args.only:
        bench_server(args.tokens, args.requests, args.concurrency, args.threads)


if __name__ == "__main__":
    main()
