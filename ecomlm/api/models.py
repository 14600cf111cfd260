"""The models the API serves: OpenAI names resolved through the registry,
loaded once per name and shared by every thread (the engine's scheduler
batches their requests), plus models registered under a name of your own.

    ecomlm.api.register_model("shop-tiny", "/path/to/model-dir")
    ecomlm.OpenAI().completions.create(model="shop-tiny", prompt="...")
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from ..engine import registry
from ..engine.model import Model, load
from ..errors import BadRequestError, NotFoundError, PermissionDeniedError
from .objects import ModelList, ModelObject, OpenAIObject

__all__ = ["Limits", "register_model", "unregister_model", "get_model", "list_models", "retrieve_model",
           "delete_model", "close_all"]

CREATED = 1735689600  # 2025-01-01: "created" of every local model


@dataclass(frozen=True)
class Limits:
    """What one caller may ask for. In process: the model's own limits; the
    server passes tighter ones (and never loads a model from a path)."""

    max_tokens: Optional[int] = None   # None: up to the context length
    max_n: int = 128
    max_inputs: int = 2048             # embeddings per request
    allow_paths: bool = True           # model= may be a directory or .gguf file


DEFAULT_LIMITS = Limits()

_lock = threading.Lock()
_loaded: Dict[str, Model] = {}
_loading: Dict[str, threading.Lock] = {}
_registered: Dict[str, Union[str, Model]] = {}


def register_model(name: str, model: Union[str, os.PathLike, Model]) -> None:
    """Serve a model directory, GGUF file or loaded Model under `name`."""
    if not isinstance(name, str) or not name:
        raise BadRequestError("model name must be a non-empty string", param="model")
    with _lock:
        _registered[name] = model if isinstance(model, Model) else os.fspath(model)
        old = _loaded.pop(name, None)
    if old is not None and old is not model:
        old.close()


def unregister_model(name: str) -> None:
    with _lock:
        src = _registered.pop(name, None)
        m = _loaded.pop(name, None)
    if m is not None and not isinstance(src, Model):  # a Model handed to us stays the caller's
        m.close()


def _key(name, limits: Limits) -> str:
    if name is None or name == "":
        raise BadRequestError("you must provide a model parameter", param="model", code="missing_required_parameter")
    if not isinstance(name, str):
        raise BadRequestError(f"model must be a string, got {type(name).__name__}", param="model",
                              code="invalid_type")
    if name in _registered:
        return name
    key = registry.canonical(name)
    if key in registry.MODELS:
        return key
    if registry.fine_tuned_path(name) is not None:
        return name
    if limits.allow_paths and (os.path.isdir(name) or os.path.isfile(name)):
        return os.path.abspath(name)
    raise NotFoundError(f"The model `{name}` does not exist or you do not have access to it.", param="model",
                        code="model_not_found")


def get_model(name, limits: Limits = DEFAULT_LIMITS, embedding: bool = False) -> Tuple[Model, str]:
    """(the loaded Model, its local name) for an OpenAI, registered or local name."""
    key = _key(name, limits)
    with _lock:
        m = _loaded.get(key)
        if m is None:
            lk = _loading.setdefault(key, threading.Lock())
    if m is None:
        with lk:  # one thread loads; the others wait for it
            with _lock:
                m = _loaded.get(key)
            if m is None:
                src = _registered.get(key, key)
                m = src if isinstance(src, Model) else load(src)
                with _lock:
                    _loaded[key] = m
    if embedding and not m.is_encoder:
        raise BadRequestError(f"model `{name}` generates text; embeddings need an embedding model such as "
                              "text-embedding-ada-002 (all-minilm-l6-v2)", param="model", code="invalid_model")
    if not embedding and m.is_encoder:
        raise BadRequestError(f"model `{name}` is an embedding model; it cannot generate text (use "
                              "gpt-3.5-turbo / smollm2-135m-instruct)", param="model", code="invalid_model")
    return m, (key if key in registry.MODELS or key in _registered or key.startswith("ft:") else m.name)


def _entry(mid: str, meta: Optional[dict] = None) -> ModelObject:
    if meta is not None:  # a fine-tuned model: created when its job finished, owned by the user
        return ModelObject(id=mid, object="model", created=int(meta.get("created", CREATED)),
                           owned_by=meta.get("owned_by", "user"))
    return ModelObject(id=mid, object="model", created=CREATED, owned_by="ecomlm")


def model_ids() -> List[str]:
    with _lock:
        extra = sorted(_registered)
    return sorted(registry.MODELS) + sorted(registry.ALIASES) + extra + sorted(registry.fine_tuned_models())


def list_models(page: type = ModelList) -> ModelList:
    tuned = registry.fine_tuned_models()
    return page(object="list", data=[_entry(m, tuned.get(m)) for m in model_ids()])


def retrieve_model(model_id, limits: Limits = DEFAULT_LIMITS) -> ModelObject:
    if not isinstance(model_id, str) or not model_id:
        raise BadRequestError("model id must be a non-empty string", param="model")
    with _lock:
        known = model_id in _registered
    tuned = registry.fine_tuned_models().get(model_id) if model_id.startswith("ft:") else None
    if not known and tuned is None and registry.canonical(model_id) not in registry.MODELS:
        raise NotFoundError(f"The model `{model_id}` does not exist or you do not have access to it.",
                            param="model", code="model_not_found")
    return _entry(model_id, None if known else tuned)


def delete_model(model_id) -> OpenAIObject:
    """``client.models.delete("ft:...")``: delete a fine-tuned model (its
    weights too). Only fine-tuned models can be deleted, as with OpenAI."""
    if not isinstance(model_id, str) or not model_id:
        raise BadRequestError("model id must be a non-empty string", param="model")
    if registry.fine_tuned_path(model_id) is None:
        retrieve_model(model_id)  # NotFoundError for an unknown name
        raise PermissionDeniedError(f"You do not have permission to delete the model `{model_id}`: only "
                                    "fine-tuned models can be deleted", param="model", code="model_not_deletable")
    with _lock:
        m = _loaded.pop(model_id, None)
    if m is not None:
        m.close()
    registry.delete_fine_tuned(model_id)
    return OpenAIObject(id=model_id, object="model", deleted=True)


def close_all() -> None:
    """Free every model this module loaded (the server calls it on shutdown)."""
    with _lock:
        items = list(_loaded.items())
        _loaded.clear()
        owned = {k for k, v in _registered.items() if isinstance(v, Model)}
    for k, m in items:
        if k not in owned:
            m.close()
