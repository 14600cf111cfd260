"""The 0.x SDK's module-level calls, for code written in 2022-2023:

    import ecomlm as openai
    openai.api_key = "sk-..."            # accepted, ignored: nothing leaves the machine
    r = openai.Completion.create(engine="text-davinci-002", prompt="...", max_tokens=50)
    r.choices[0].text.strip()

Each class is the type of the object its ``create`` returns, as in the 0.x SDK.
``openai.Model.list()`` lives on ``ecomlm.Model`` (see ``ecomlm/__init__.py``).

Fine-tuning as the 0.27/0.28 SDKs had it:

    f = openai.File.create(file=open("data.jsonl", "rb"), purpose="fine-tune")
    ft = openai.FineTune.create(training_file=f.id, model=..., n_epochs=2)     # 2022's /v1/fine-tunes
    job = openai.FineTuningJob.create(training_file=f.id, model=...)          # 0.28's /v1/fine_tuning/jobs
    openai.FineTuningJob.list_events(id=job.id, limit=10)

``FineTune`` objects are views of the same jobs in the 2022 shape (object
"fine-tune", ``hyperparams``, ``training_files``, ``events``, status
"pending" while queued); prompt tokens are never trained on (prompt_loss_weight 0).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import BadRequestError
from . import chat, completions, embeddings, files, fine_tuning, models
from . import objects

__all__ = ["Completion", "ChatCompletion", "Embedding", "File", "FineTune", "FineTuningJob", "model_list",
           "model_retrieve"]


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


def _id(id, sid, what):
    """The 0.x SDK took an object's id positionally, as id= or as sid=."""
    v = id if id is not None else sid
    if v is None:
        raise BadRequestError(f"you must provide the {what} id", param="id", code="missing_required_parameter")
    return v


class File(objects.FileObject):
    """``openai.File``: create / list / retrieve / delete / download."""

    @classmethod
    def create(cls, file=None, purpose=None, model=None, user_provided_filename=None, **kw: Any):
        if user_provided_filename is not None and file is not None and not isinstance(file, tuple):
            file = (user_provided_filename, file)
        for k in ("api_key", "api_base", "api_type", "api_version", "organization", "request_id"):
            kw.pop(k, None)
        return cls(files.create_file(dict(kw, file=file, purpose=purpose)))

    @classmethod
    def list(cls, **kw: Any):
        page = files.list_files({k: v for k, v in kw.items() if k in ("purpose", "limit", "after", "order")})
        return objects.OpenAIObject(object="list", data=[cls(x) for x in page["data"]],
                                    has_more=page["has_more"])

    @classmethod
    def retrieve(cls, id=None, sid=None, **_: Any):
        return cls(files.retrieve_file(_id(id, sid, "file")))

    @classmethod
    def delete(cls, sid=None, id=None, **_: Any):
        return files.delete_file(_id(id, sid, "file"))

    @classmethod
    def download(cls, id=None, sid=None, **_: Any) -> bytes:
        return files.file_content(_id(id, sid, "file"))


class FineTuningJob(objects.FineTuningJob):
    """``openai.FineTuningJob`` (SDK 0.28): create / list / retrieve / cancel / list_events."""

    @classmethod
    def create(cls, **kw: Any):
        return cls(fine_tuning.create_job(_strip(kw)))

    @classmethod
    def list(cls, **kw: Any):
        page = fine_tuning.list_jobs(_strip(kw))
        return objects.OpenAIObject(object="list", data=[cls(j) for j in page["data"]], has_more=page["has_more"])

    @classmethod
    def retrieve(cls, id=None, sid=None, **_: Any):
        return cls(fine_tuning.retrieve_job(_id(id, sid, "fine-tuning job")))

    @classmethod
    def cancel(cls, id=None, sid=None, **_: Any):
        return cls(fine_tuning.cancel_job(_id(id, sid, "fine-tuning job")))

    @classmethod
    def list_events(cls, id=None, sid=None, **kw: Any):
        page = fine_tuning.list_events(_id(id, sid, "fine-tuning job"), _strip(kw))
        return objects.OpenAIObject(object="list", data=list(page["data"]), has_more=page["has_more"])


_LEGACY_STATUS = {"validating_files": "pending", "queued": "pending"}


def _strip(kw):
    return {k: v for k, v in kw.items()
            if k not in ("api_key", "api_base", "api_type", "api_version", "organization", "request_id")}


class FineTune(objects.OpenAIObject):
    """``openai.FineTune`` (2022, /v1/fine-tunes): the same jobs in the old shape."""

    LEGACY_FIELDS = ("n_epochs", "batch_size", "learning_rate_multiplier", "prompt_loss_weight")

    @classmethod
    def _view(cls, job, with_events: bool = True):
        def f(fid):
            try:
                return files.retrieve_file(fid)
            except Exception:  # deleted since
                return {"id": fid, "object": "file", "deleted": True}

        hp = dict(job["hyperparameters"], prompt_loss_weight=0.0)
        out = dict(id=job["id"], object="fine-tune", model=job["model"], created_at=job["created_at"],
                   updated_at=job["finished_at"] or job["created_at"], fine_tuned_model=job["fine_tuned_model"],
                   hyperparams=hp, organization_id=job["organization_id"],
                   result_files=[f(x) for x in job["result_files"]],
                   status=_LEGACY_STATUS.get(job["status"], job["status"]),
                   training_files=[f(job["training_file"])],
                   validation_files=[f(job["validation_file"])] if job["validation_file"] else [])
        if with_events:
            out["events"] = cls._events(job["id"])
        return cls(out)

    @staticmethod
    def _events(job_id):
        evs = list(fine_tuning.list_events(job_id, {"limit": 10000})["data"])[::-1]  # oldest first, as in 2022
        return [dict(object="fine-tune-event", created_at=e["created_at"], level=e["level"], message=e["message"])
                for e in evs]

    @classmethod
    def create(cls, **kw: Any):
        kw = _strip(kw)
        hp = {k: kw.pop(k) for k in cls.LEGACY_FIELDS if kw.get(k) is not None}
        weight = hp.pop("prompt_loss_weight", 0.0)
        if weight not in (0, 0.0, 0.01):
            raise BadRequestError("prompt_loss_weight: ecomlm trains on the completion tokens only (weight 0)",
                                  param="prompt_loss_weight", code="invalid_value")
        kw.setdefault("model", "smollm2-135m-instruct")
        return cls._view(fine_tuning.create_job(dict(kw, hyperparameters=hp)))

    @classmethod
    def list(cls, **_: Any):
        return objects.OpenAIObject(object="list", data=[cls._view(j, False) for j in
                                                         fine_tuning.list_jobs({"limit": 10000})["data"]])

    @classmethod
    def retrieve(cls, id=None, sid=None, **_: Any):
        return cls._view(fine_tuning.retrieve_job(_id(id, sid, "fine-tune")))

    @classmethod
    def cancel(cls, id=None, sid=None, **_: Any):
        return cls._view(fine_tuning.cancel_job(_id(id, sid, "fine-tune")))

    @classmethod
    def list_events(cls, id=None, sid=None, stream: bool = False, **_: Any):
        job_id = _id(id, sid, "fine-tune")
        if stream:
            return cls.stream_events(job_id)
        return objects.OpenAIObject(object="list", data=cls._events(job_id))

    @classmethod
    def stream_events(cls, id=None, sid=None, poll: float = 0.2, **_: Any):
        """Yield the job's events as they come, until it has finished."""
        import time

        job_id = _id(id, sid, "fine-tune")
        seen = 0
        while True:
            status = fine_tuning.retrieve_job(job_id)["status"]
            evs = cls._events(job_id)
            for e in evs[seen:]:
                yield objects.OpenAIObject(e)
            seen = len(evs)
            if status in fine_tuning.FINAL:
                return
            time.sleep(poll)


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
