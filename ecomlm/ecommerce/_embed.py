"""Sentence embeddings for the e-commerce tools, through the public API only
(`ecomlm.load(name).embed(texts)`), with a per-process cache so that a
catalog, a knowledge base or a review set is embedded once.

Every tool takes `model` (a registered name or a model directory) or
`embedder` (any callable list[str] -> (N, D) float array, L2-normalised), so
tests and users can plug in another encoder.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import BadRequestError

DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"
_models: dict = {}
_cache: dict = {}
_lock = threading.Lock()
_CACHE_LIMIT = 200_000


def _model(name: str):
    with _lock:
        m = _models.get(name)
        if m is None:
            import ecomlm

            m = ecomlm.load(name)
            _models[name] = m
        return m


class Embedder:
    """Callable texts -> L2-normalised float32 (N, D), cached per text."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, fn: Optional[Callable] = None, batch_size: int = 32):
        self.model = model
        self.fn = fn
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        key = self.model if self.fn is None else id(self.fn)
        todo = [t for t in dict.fromkeys(texts) if (key, t) not in _cache]
        if todo:
            if self.fn is not None:
                vecs = np.asarray(self.fn(todo), dtype=np.float32)
            else:
                vecs = _model(self.model).embed(todo, batch_size=self.batch_size)
            if vecs.ndim != 2 or vecs.shape[0] != len(todo):
                raise BadRequestError(f"the embedder returned shape {vecs.shape} for {len(todo)} texts",
                                      param="embedder")
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.maximum(norms, 1e-12)
            with _lock:
                if len(_cache) > _CACHE_LIMIT:
                    _cache.clear()
                for t, v in zip(todo, vecs):
                    _cache[(key, t)] = v
        if not texts:
            return np.zeros((0, 0), np.float32)
        return np.stack([_cache[(key, t)] for t in texts]).astype(np.float32, copy=False)


def make_embedder(model=DEFAULT_EMBEDDING_MODEL, embedder=None) -> Embedder:
    if embedder is not None:
        if isinstance(embedder, Embedder):
            return embedder
        if not callable(embedder):
            raise BadRequestError("embedder must be callable: list[str] -> array (N, D)", param="embedder")
        return Embedder(fn=embedder)
    if not isinstance(model, str) or not model:
        raise BadRequestError("model must be a model name or directory", param="model")
    return Embedder(model)
