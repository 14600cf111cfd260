"""/v1/embeddings: sentence vectors from the embedding model (mean-pooled,
L2-normalised, as sentence-transformers computes them)."""

from __future__ import annotations

import base64
from typing import Any, Dict, List

import numpy as np

from ..errors import BadRequestError
from . import _common as c
from .models import DEFAULT_LIMITS, Limits, get_model
from .objects import CreateEmbeddingResponse

ALLOWED = {"model", "engine", "deployment_id", "input", "encoding_format", "dimensions"}
BATCH = 64


def create(**kw: Any) -> CreateEmbeddingResponse:
    """``openai.Embedding.create(...)`` / ``client.embeddings.create(...)``."""
    return create_embedding(c.merge_extra_body(kw), DEFAULT_LIMITS)


def _inputs(body: Dict[str, Any], limits: Limits) -> List:
    x = body.get("input")
    bad = BadRequestError("'$.input' is invalid: pass a non-empty string, a list of non-empty strings, a list of "
                          "token ids or a list of token-id lists", param="input", code="invalid_value")
    if x is None:
        raise BadRequestError("you must provide an input parameter", param="input", code="missing_required_parameter")

    def is_ids(v):
        return isinstance(v, list) and v and all(isinstance(t, int) and not isinstance(t, bool) for t in v)

    if isinstance(x, str):
        items = [x]
    elif is_ids(x):
        items = [x]
    elif isinstance(x, list) and x and all((isinstance(v, str)) or is_ids(v) for v in x):
        items = list(x)
    else:
        raise bad
    if any(isinstance(v, str) and not v for v in items):
        raise bad
    if len(items) > limits.max_inputs:
        raise BadRequestError(f"input holds {len(items)} items; at most {limits.max_inputs} are allowed",
                              param="input", code="array_above_max_length")
    return items


def create_embedding(body: Dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> CreateEmbeddingResponse:
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object", param=None, code="invalid_type")
    c.check_known(body, ALLOWED)
    name = body.get("model") or body.get("engine") or body.get("deployment_id")
    model, _ = get_model(name, limits, embedding=True)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequestError(f"encoding_format must be 'float' or 'base64', got {fmt!r}", param="encoding_format",
                              code="invalid_value")
    dims = c.integer(body, "dimensions", 1, model.dim, None)
    items = _inputs(body, limits)
    tok = model.tokenizer
    if tok is None and any(isinstance(v, str) for v in items):
        raise BadRequestError("this embedding model has no tokenizer: pass token ids", param="input")
    vecs, n_tokens = np.zeros((len(items), model.dim), np.float32), 0
    for lo in range(0, len(items), BATCH):
        part = items[lo:lo + BATCH]
        ids, mask, types = _encode(model, part)
        n_tokens += int(mask.sum())
        vecs[lo:lo + len(part)] = model.embed(ids, mask, types)
    if dims is not None and dims < model.dim:  # OpenAI's shortening: truncate, then renormalise
        vecs = vecs[:, :dims]
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    data = []
    for i, v in enumerate(vecs):
        emb = base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if fmt == "base64" else v.tolist()
        data.append(dict(object="embedding", index=i, embedding=emb))
    return CreateEmbeddingResponse(object="list", data=data, model=name,
                                   usage=dict(prompt_tokens=n_tokens, total_tokens=n_tokens))


def _encode(model, part: List):
    """Token rows (N, T), attention mask and token types for texts or token-id lists."""
    max_len = model.max_seq_length
    texts = [v for v in part if isinstance(v, str)]
    enc_rows = {}
    if texts:
        enc = model.tokenizer.encode_batch(texts, max_length=max_len)
        it = iter(range(len(texts)))
        for j, v in enumerate(part):
            if isinstance(v, str):
                k = next(it)
                m = np.asarray(enc.attention_mask[k])
                L = int(m.sum())
                enc_rows[j] = (np.asarray(enc.input_ids[k])[:L], np.asarray(enc.token_type_ids[k])[:L])
    rows = []
    for j, v in enumerate(part):
        if j in enc_rows:
            rows.append(enc_rows[j])
        else:
            ids = np.asarray(v[:max_len], dtype=np.int64)
            if ids.min() < 0 or ids.max() >= model.vocab_size:
                raise BadRequestError(f"input holds a token id outside [0, {model.vocab_size})", param="input",
                                      code="invalid_value")
            rows.append((ids, np.zeros_like(ids)))
    T = max(len(r[0]) for r in rows)
    ids = np.zeros((len(rows), T), np.int32)
    mask = np.zeros((len(rows), T), np.int32)
    types = np.zeros((len(rows), T), np.int32)
    for j, (r, t) in enumerate(rows):
        ids[j, :len(r)], mask[j, :len(r)], types[j, :len(r)] = r, 1, t
    return ids, mask, types
