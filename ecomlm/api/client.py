"""The v1 SDK's client, run in process:

    from ecomlm import OpenAI
    client = OpenAI()                    # no key, no network
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])

``api_key`` and ``base_url`` are accepted and ignored (point the official
``openai`` package at ``ecomlm serve`` to go over HTTP). ``AsyncOpenAI`` has
the same shape with awaitable methods; its work runs in worker threads, where
the engine's scheduler batches it with every other request.
"""

from __future__ import annotations

from typing import Any

from . import chat, completions, embeddings, files, fine_tuning, models
from .legacy import _aiter
from .objects import SyncPage

__all__ = ["OpenAI", "AsyncOpenAI"]


class _Resource:
    def __init__(self, client):
        self._client = client


class Completions(_Resource):
    def create(self, **kw: Any):
        return completions.create(**kw)


class ChatCompletions(_Resource):
    def create(self, **kw: Any):
        return chat.create(**kw)


class Chat(_Resource):
    def __init__(self, client):
        super().__init__(client)
        self.completions = ChatCompletions(client)


class Embeddings(_Resource):
    def create(self, **kw: Any):
        return embeddings.create(**kw)


class Models(_Resource):
    def list(self, **_: Any) -> SyncPage:
        return models.list_models(SyncPage)

    def retrieve(self, model: str, **_: Any):
        return models.retrieve_model(model)

    def delete(self, model: str, **_: Any):
        return models.delete_model(model)


class Files(_Resource):
    """``client.files``: uploads kept under $ECOMLM_HOME/files."""

    def create(self, *, file: Any, purpose: str, **kw: Any):
        return files.create_file(dict(kw, file=file, purpose=purpose))

    def retrieve(self, file_id: str, **_: Any):
        return files.retrieve_file(file_id)

    def list(self, **kw: Any):
        return files.list_files(kw)

    def delete(self, file_id: str, **_: Any):
        return files.delete_file(file_id)

    def content(self, file_id: str, **_: Any) -> files.BinaryContent:
        return files.BinaryContent(files.file_content(file_id))

    def retrieve_content(self, file_id: str, **_: Any) -> str:
        return files.file_content(file_id).decode("utf-8")

    def wait_for_processing(self, id: str, **_: Any):
        return files.retrieve_file(id)  # checked when uploaded: always "processed"


class Jobs(_Resource):
    """``client.fine_tuning.jobs``: jobs trained in a background thread
    (ecomlm extras such as lora_rank go in as keyword arguments or extra_body)."""

    def create(self, **kw: Any):
        return fine_tuning.create_job(kw)

    def retrieve(self, fine_tuning_job_id: str, **_: Any):
        return fine_tuning.retrieve_job(fine_tuning_job_id)

    def list(self, **kw: Any):
        return fine_tuning.list_jobs(kw)

    def cancel(self, fine_tuning_job_id: str, **_: Any):
        return fine_tuning.cancel_job(fine_tuning_job_id)

    def list_events(self, fine_tuning_job_id: str, **kw: Any):
        return fine_tuning.list_events(fine_tuning_job_id, kw)

    def wait(self, fine_tuning_job_id: str, timeout: Any = None, **_: Any):
        """ecomlm's own: block until the job has finished."""
        return fine_tuning.wait(fine_tuning_job_id, timeout)


class FineTuning(_Resource):
    def __init__(self, client):
        super().__init__(client)
        self.jobs = Jobs(client)


class OpenAI:
    """``openai.OpenAI`` with the same resources, answered by the local engine."""

    def __init__(self, *, api_key: str | None = None, organization: str | None = None, project: str | None = None,
                 base_url: str | None = None, timeout: Any = None, max_retries: int = 2,
                 default_headers: Any = None, default_query: Any = None, http_client: Any = None, **_: Any):
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.completions = Completions(self)
        self.chat = Chat(self)
        self.embeddings = Embeddings(self)
        self.models = Models(self)
        self.files = Files(self)
        self.fine_tuning = FineTuning(self)

    def with_options(self, **_: Any) -> "OpenAI":
        return self

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Async:
    """Wraps a sync resource: awaitable create/list/retrieve run in a thread."""

    def __init__(self, sync):
        self._sync = sync

    def __getattr__(self, name):
        attr = getattr(self._sync, name)
        if isinstance(attr, _Resource):
            return _Async(attr)
        if not callable(attr):
            return attr

        async def call(*args, **kw):
            import asyncio

            result = await asyncio.to_thread(attr, *args, **kw)
            if kw.get("stream"):
                return _aiter(result)
            return result

        return call


class AsyncOpenAI(OpenAI):
    """``openai.AsyncOpenAI``: ``await client.chat.completions.create(...)``;
    with ``stream=True`` the awaited result is an async iterator of chunks."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.completions = _Async(self.completions)
        self.chat = _Async(self.chat)
        self.embeddings = _Async(self.embeddings)
        self.models = _Async(self.models)
        self.files = _Async(self.files)
        self.fine_tuning = _Async(self.fine_tuning)

    async def close(self) -> None:  # type: ignore[override]
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass
