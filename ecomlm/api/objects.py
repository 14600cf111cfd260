"""Response objects shaped like OpenAI's: dicts that also allow attribute access.

``r.choices[0].text == r["choices"][0]["text"]``; ``json.dumps(r)`` is the JSON
body OpenAI's HTTP API returns. The 0.x SDK's objects were dict subclasses too
(``OpenAIObject``); the v1 SDK's pydantic verbs ``model_dump`` and
``model_dump_json`` are here as well, so code from either generation reads them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import time
from typing import Any

__all__ = ["OpenAIObject", "ChoiceDelta", "ChatCompletionMessage", "Completion", "ChatCompletion", "ChatCompletionChunk", "CreateEmbeddingResponse",
           "ModelObject", "ModelList", "SyncPage", "CursorPage", "FileObject", "FineTuningJob",
           "FineTuningJobEvent", "new_id", "fingerprint", "now"]

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id like OpenAI's: ``cmpl-`` / ``chatcmpl-`` and 29 random characters."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(29))


def fingerprint(local_model: str) -> str:
    """system_fingerprint: stable for one ecomlm version and local model."""
    from .. import __version__

    return "fp_" + hashlib.sha1(f"ecomlm-{__version__}-{local_model}".encode()).hexdigest()[:10]


def now() -> int:
    return int(time.time())


def _wrap(v: Any) -> Any:
    if isinstance(v, OpenAIObject):
        return v
    if isinstance(v, dict):
        return OpenAIObject(v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _plain(v: Any, exclude_none: bool = False) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x, exclude_none) for k, x in v.items() if not (exclude_none and x is None)}
    if isinstance(v, list):
        return [_plain(x, exclude_none) for x in v]
    return v


class OpenAIObject(dict):
    """A JSON object from the API; keys are also attributes."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        for k, v in list(self.items()):
            dict.__setitem__(self, k, _wrap(v))

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        try:
            del self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def __reduce__(self):
        return (type(self), (dict(self),))

    # the 0.x SDK's verbs
    def to_dict(self) -> dict:
        return _plain(self)

    to_dict_recursive = to_dict

    # the v1 SDK's (pydantic) verbs
    def model_dump(self, *, exclude_none: bool = False, **_: Any) -> dict:
        return _plain(self, exclude_none)

    def model_dump_json(self, *, indent: int | None = None, exclude_none: bool = False, **_: Any) -> str:
        return json.dumps(self.model_dump(exclude_none=exclude_none), indent=indent, ensure_ascii=False)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self, indent=indent, ensure_ascii=False)

    def __str__(self) -> str:
        return json.dumps(self, indent=2, ensure_ascii=False)

    def __repr__(self) -> str:
        ident = f" id={self['id']}" if isinstance(self.get("id"), str) else ""
        obj = f" {self['object']}" if isinstance(self.get("object"), str) else ""
        return f"<{type(self).__name__}{obj}{ident} at {hex(id(self))}> JSON: {self}"


class _Optional(OpenAIObject):
    """An object whose optional fields read as None when absent, as the v1
    SDK's models do (``chunk.choices[0].delta.content or ""``), while the
    JSON keeps OpenAI's shape (the last chunk's delta is ``{}``)."""

    OPTIONAL: frozenset = frozenset()

    def __getattr__(self, key: str) -> Any:
        if key in self.OPTIONAL and key not in self:
            return None
        return super().__getattr__(key)


class ChoiceDelta(_Optional):
    OPTIONAL = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})


class ChatCompletionMessage(_Optional):
    OPTIONAL = frozenset({"content", "refusal", "tool_calls", "function_call", "audio", "annotations"})


class Completion(OpenAIObject):
    """object "text_completion" (a whole response or a streamed chunk)."""


class ChatCompletion(OpenAIObject):
    """object "chat.completion"."""


class ChatCompletionChunk(OpenAIObject):
    """object "chat.completion.chunk"."""


class CreateEmbeddingResponse(OpenAIObject):
    """object "list" of {"object": "embedding", "index", "embedding"}."""


class ModelObject(OpenAIObject):
    """object "model"."""


class ModelList(OpenAIObject):
    """object "list" of models."""


class SyncPage(ModelList):
    """The v1 client's page: iterating yields the items of ``data``
    (``for m in client.models.list(): m.id``)."""

    def __iter__(self):
        return iter(self["data"])


class CursorPage(SyncPage):
    """A page of a cursor-paginated list (files, fine-tuning jobs, events):
    ``data``, ``has_more``. As with the v1 SDK's SyncCursorPage, iterating
    walks every page (fetching the next with ``after=`` the last id)."""

    def __init__(self, *args: Any, fetch=None, **kw: Any):
        super().__init__(*args, **kw)
        object.__setattr__(self, "_fetch", fetch)

    def has_next_page(self) -> bool:
        return bool(self.get("has_more")) and bool(self["data"]) and self._fetch is not None

    def get_next_page(self) -> "CursorPage":
        if not self.has_next_page():
            raise RuntimeError("No next page expected; please check `.has_next_page()` before calling "
                               "`.get_next_page()`.")
        return self._fetch(self["data"][-1]["id"])

    def iter_pages(self):
        page = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self):
        for page in self.iter_pages():
            yield from page["data"]

    async def __aiter__(self):  # AsyncOpenAI: `async for job in await client.fine_tuning.jobs.list()`
        for item in self:
            yield item


class FileObject(OpenAIObject):
    """object "file"."""


class FineTuningJob(OpenAIObject):
    """object "fine_tuning.job"."""


class FineTuningJobEvent(OpenAIObject):
    """object "fine_tuning.job.event"."""
