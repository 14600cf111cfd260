"""The 0.x SDK's module-level calls, for code written in 2022-2023:

    import ecomlm as openai
    openai.api_key = "sk-..."            # accepted, ignored: nothing leaves the machine
    r = openai.Completion.create(engine="text-davinci-002", prompt="...", max_tokens=50)
    r.choices[0].text.strip()

Each class is the type of the object its ``create`` returns, as in the 0.x SDK.
``openai.Model.list()`` lives on ``ecomlm.Model`` (see ``ecomlm/__init__.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import chat, completions, embeddings, models
from . import objects

__all__ = ["Completion", "ChatCompletion", "Embedding", "model_list", "model_retrieve"]


def _as(cls, result):
    """The 0.x SDK returns instances of the class whose create() was called."""
    if isinstance(result, dict):
        return cls(result)
    return result  # a stream of chunks


class Completion(objects.Completion):
    @classmethod
    def create(cls, **kw: Any):
        return _as(cls, completions.create(**kw))

    @classmethod
    async def acreate(cls, **kw: Any):
        return _as(cls, await _athread(completions.create, kw))


class ChatCompletion(objects.ChatCompletion):
    @classmethod
    def create(cls, **kw: Any):
        return _as(cls, chat.create(**kw))

    @classmethod
    async def acreate(cls, **kw: Any):
        return _as(cls, await _athread(chat.create, kw))


class Embedding(objects.CreateEmbeddingResponse):
    @classmethod
    def create(cls, **kw: Any):
        return _as(cls, embeddings.create(**kw))

    @classmethod
    async def acreate(cls, **kw: Any):
        return _as(cls, await _athread(embeddings.create, kw))


def model_list(cls=None, **_: Any) -> objects.ModelList:
    """``openai.Model.list()``."""
    return models.list_models()


def model_retrieve(cls=None, id: str = None, **_: Any) -> objects.ModelObject:
    """``openai.Model.retrieve("gpt-3.5-turbo")``."""
    return models.retrieve_model(id)


async def _athread(fn, kw):
    result = await asyncio.to_thread(fn, **kw)
    if kw.get("stream"):
        return _aiter(result)
    return result


async def _aiter(stream):
    """An async iterator over a blocking stream (each step in a worker thread)."""
    done = object()
    try:
        while True:
            item = await asyncio.to_thread(next, stream, done)
            if item is done:
                return
            yield item
    finally:
        stream.close()
