"""Model: a loaded network and the verbs a notebook needs (logits, embed).

>>> import ecomlm
>>> with ecomlm.load("path/to/hf-model-dir") as m:
...     m.logits([1, 2, 3]).shape        # (3, vocab)
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError, NotFoundError
from . import hf

__all__ = ["Model", "load"]


class Model:
    """A network whose weights live in the C engine (read-only once loaded).

    One Model serves many Python threads at once: each call that decodes
    keeps its own KV cache. Use ``close()`` or a ``with`` block to free the
    weights early.
    """

    def __init__(self, core: "_core.Model", family: str, config: dict, engine_config: dict, n_params: int,
                 path: Optional[str] = None, name: Optional[str] = None):
        self._core = core
        self.family = family
        self.config = config
        self.engine_config = engine_config
        self.n_params = n_params
        self.path = path
        self.name = name or (os.path.basename(os.path.normpath(path)) if path else family)
        self.tokenizer = None

    # ---------------------------------------------------------------- basics
    @property
    def n_threads(self) -> int:
        return self._core.n_threads

    @n_threads.setter
    def n_threads(self, n: Optional[int]) -> None:
        self._core.n_threads = n

    @property
    def vocab_size(self) -> int:
        return self.engine_config["vocab"]

    @property
    def context_length(self) -> int:
        return self.engine_config["max_pos"]

    @property
    def dim(self) -> int:
        return self.engine_config["d_model"]

    @property
    def is_encoder(self) -> bool:
        return self.family == "bert"

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ecomlm.Model {self.name!r} {self.family} {self.n_params / 1e6:.1f}M params>"

    # ----------------------------------------------------------------- verbs
    def new_cache(self, max_tokens: Optional[int] = None) -> "_core.KVCache":
        """A KV cache for decoding one sequence of up to max_tokens tokens."""
        if self.is_encoder:
            raise BadRequestError("an encoder model has no KV cache", param="model")
        return _core.KVCache(self._core, self.context_length if max_tokens is None else int(max_tokens))

    def forward(self, token_ids, cache, all_logits: bool = False) -> np.ndarray:
        """Append token_ids to `cache` and return logits (T or 1, vocab)."""
        return self._core.forward(token_ids, cache, all_logits)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Next-token logits at every position: float32 array (T, vocab)."""
        if self.is_encoder:
            raise BadRequestError("an encoder (bert) model has no next-token logits; use embed()", param="model")
        ids = _as_ids(token_ids, "token_ids")
        if ids.size > self.context_length:
            raise BadRequestError(f"{ids.size} tokens exceed the model's context length {self.context_length}",
                                  param="token_ids")
        cache = _core.KVCache(self._core, int(ids.size))
        return self._core.forward(ids, cache, True)

    def embed(self, inputs, attention_mask=None, token_type_ids=None, *, pooling: str = "mean",
              normalize: bool = True, batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings (N, dim), mean-pooled and L2-normalised by default,
        as sentence-transformers computes them.

        `inputs` is a batch of token-id rows (N, T) with `attention_mask`, or a
        list of strings once the model has a tokenizer.
        """
        if not self.is_encoder:
            raise BadRequestError("embed() needs an encoder model such as all-minilm-l6-v2", param="model")
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if self.tokenizer is None:
                raise BadRequestError("this model has no tokenizer: pass token ids and attention_mask",
                                      param="input")
            out = []
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer.encode_batch_padded(texts[i:i + batch_size], max_length=self.context_length)
                out.append(self._core.embed(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"),
                                            pooling, normalize))
            return np.concatenate(out, axis=0)
        return self._core.embed(inputs, attention_mask, token_type_ids, pooling, normalize)

    def fine_tune(self, train_data, validation_data=None, **kwargs):
        """Fine-tune this model in place (full, or LoRA with lora_rank > 0) on
        OpenAI fine-tuning JSONL; returns the per-step history (a list of
        dicts for pandas.DataFrame). See ecomlm.engine.finetune.fine_tune."""
        from .finetune import fine_tune

        return fine_tune(self, train_data, validation_data, **kwargs)


def _as_ids(token_ids, what: str) -> np.ndarray:
    arr = np.asarray(token_ids)
    if arr.ndim != 1:
        raise BadRequestError(f"{what} must be a 1-D sequence of integers, got shape {arr.shape}", param=what)
    if arr.size == 0:
        raise BadRequestError(f"{what} must not be empty", param=what)
    if arr.dtype.kind not in "iu":
        raise BadRequestError(f"{what} must contain integers, got {arr.dtype}", param=what)
    return arr


def load_hf_dir(path: str, n_threads: Optional[int] = None, name: Optional[str] = None) -> Model:
    """Load a Hugging Face model directory (config.json + *.safetensors)."""
    cfg = hf.read_config(path)
    family, ecfg = hf.engine_config(cfg)
    store = hf.TensorStore(hf.safetensors_files(path))
    core = _core.Model(ecfg, n_threads)
    slots = dict(core.slots())
    plan, used = hf.weight_plan(family, cfg, ecfg, store)
    for slot, fetch, transposed in plan:
        if slot not in slots:
            continue  # a bias the engine configuration does not carry
        arr = fetch()
        core.set_tensor(slot, arr, transposed)
    core.finalize()
    n_params = sum(store.numel(n) for n in used)
    return Model(core, family, cfg, ecfg, n_params, path=path, name=name)


def load(path_or_name: str | os.PathLike, n_threads: Optional[int] = None) -> Model:
    """Load a model: a Hugging Face directory, or a registered model name.

    n_threads: OpenMP threads per call (default: the cores this process may use).
    """
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise BadRequestError("model must be a path or a model name", param="model")
    path = os.fspath(path_or_name)
    if os.path.isdir(path):
        model = load_hf_dir(path, n_threads)
    elif os.path.isfile(path):
        raise ModelFormatError(f"{path}: loading single files is not supported yet (pass a model directory)",
                               param="model")
    else:
        from . import registry
        local = registry.resolve(path)
        if local is None:
            raise NotFoundError(f"model '{path}' is neither a directory nor a known model name "
                                f"({', '.join(registry.names())})", param="model")
        model = load(local, n_threads)
        model.name = registry.canonical(path)
    _attach_tokenizer(model)
    return model


def _attach_tokenizer(model: Model) -> None:
    """Give the model its tokenizer when the tokenizer engine is available."""
    if model.path is None:
        return
    try:
        from .tokenizer import Tokenizer  # lands with the tokenizer issue
    except ImportError:
        return
    try:
        model.tokenizer = Tokenizer.from_file(model.path)
    except (NotFoundError, FileNotFoundError):
        model.tokenizer = None
