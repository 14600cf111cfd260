"""`ecomlm serve`: an OpenAI-compatible HTTP server (FastAPI on uvicorn).

    ecomlm serve --port 8000                       # 127.0.0.1 by default
    from openai import OpenAI
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").chat.completions.create(...)

Endpoints: POST /v1/completions, /v1/chat/completions (server-sent events with
stream=true), /v1/embeddings; GET /v1/models, /v1/models/{id}, DELETE
/v1/models/{id} (fine-tuned models); /v1/files (multipart upload, list),
/v1/files/{id} (GET, DELETE), /v1/files/{id}/content; /v1/fine_tuning/jobs
(POST, GET), /v1/fine_tuning/jobs/{id}, .../cancel, .../events; /health.
Fine-tuning jobs train in a background thread of the server process; jobs
left unfinished by a previous server are resumed at start.

Every request body goes through the same checks as the in-process API
(ecomlm.api.create_*), so errors carry OpenAI's JSON body and status. The
engine calls block, so they run in worker threads; the model's scheduler
batches the sequences of all concurrent requests into one forward pass per step.
Needs the `serve` extra: pip install "ecomlm[serve]".
"""


import hmac
import json
import logging
import os
import sys
from contextlib import asynccontextmanager
from typing import Dict, Optional, Sequence

from . import __version__
from .api import models as api_models
from .api.chat import create_chat_completion
from .api.completions import create_completion
from .api.embeddings import create_embedding
from .api import files as api_files
from .api import fine_tuning as api_ft
from .api.models import Limits
from .errors import BadRequestError, OpenAIError

log = logging.getLogger("ecomlm.server")

DEFAULT_MAX_BODY = 4 << 20   # bytes
DEFAULT_MAX_TOKENS = 2048    # completion tokens per choice
DEFAULT_MAX_N = 16
DEFAULT_MAX_FILE_BYTES = 256 << 20  # an uploaded file (multipart body)
WORKER_THREADS = 128         # blocking engine calls in flight (each waits on the scheduler)


def _error(status: int, message: str, type_: str = "invalid_request_error", param=None, code=None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


def create_app(api_key: Optional[str] = None, max_body_bytes: int = DEFAULT_MAX_BODY,
               max_tokens: int = DEFAULT_MAX_TOKENS, max_n: int = DEFAULT_MAX_N,
               models: Optional[Dict[str, str]] = None, preload: Sequence[str] = (),
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES):
    """The ASGI app. models: extra {name: path} to serve; preload: names to load at start."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    limits = Limits(max_tokens=max_tokens, max_n=max_n, allow_paths=False)
    for name, path in (models or {}).items():
        api_models.register_model(name, path)

    @asynccontextmanager
    async def lifespan(app):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        for name in preload:
            await run_in_threadpool(api_models.get_model, name, limits, _is_embedding(name))
        resumed = await run_in_threadpool(api_ft.resume_jobs)
        if resumed:
            print(f"ecomlm serve: resuming fine-tuning jobs {', '.join(resumed)}", file=sys.stderr, flush=True)
        yield
        await run_in_threadpool(api_models.close_all)
        print("ecomlm serve: stopped; models closed", file=sys.stderr, flush=True)

    app = FastAPI(title="ecomlm", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(OpenAIError)
    async def _openai_error(request, e: OpenAIError):
        return JSONResponse(e.to_dict(), status_code=e.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        return _error(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, e):
        return _error(400, "invalid request")

    @app.exception_handler(Exception)
    async def _internal(request, e):
        log.exception("internal error")
        return _error(500, f"internal error: {type(e).__name__}", type_="server_error")

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            header = request.headers.get("authorization", "")
            given = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("api-key", "")
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                shown = (given[:3] + "*" * 4 + given[-4:]) if len(given) > 8 else "*" * len(given)
                msg = (f"Incorrect API key provided: {shown}." if given else
                       "You didn't provide an API key. You need to provide your API key in an Authorization "
                       "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
                return _error(401, msg, code="invalid_api_key")
        return await call_next(request)

    async def raw_body(request: Request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                raise BadRequestError("invalid Content-Length header", code="invalid_request") from None
            if too_big:
                raise OpenAIError(f"request body too large: at most {limit} bytes", code="payload_too_large",
                                  http_status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise OpenAIError(f"request body too large: at most {limit} bytes", code="payload_too_large",
                                  http_status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def body_of(request: Request) -> dict:
        raw = await raw_body(request, max_body_bytes)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequestError("We could not parse the JSON body of your request. (HINT: This likely means you "
                                  "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
                                  "but what was sent was not valid JSON.)", code="invalid_json") from None
        if not isinstance(body, dict):
            raise BadRequestError("the request body must be a JSON object", code="invalid_type")
        return body

    async def run(fn, request: Request):
        body = await body_of(request)
        result = await run_in_threadpool(fn, body, limits)
        if body.get("stream") is True:
            return StreamingResponse(_sse(result, request), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse(result)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await run(create_completion, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await run(create_chat_completion, request)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await run(create_embedding, request)

    @app.get("/v1/models")
    async def list_models():
        return JSONResponse(api_models.list_models())

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str):
        return JSONResponse(api_models.retrieve_model(model_id))

    @app.delete("/v1/models/{model_id:path}")
    async def delete_model(model_id: str):
        return JSONResponse(await run_in_threadpool(api_models.delete_model, model_id))

    def query(request: Request) -> dict:
        q = dict(request.query_params)
        if isinstance(q.get("limit"), str) and q["limit"].isdigit():
            q["limit"] = int(q["limit"])
        return q

    # files: multipart/form-data uploads, as the openai SDK sends them
    @app.post("/v1/files")
    async def create_file(request: Request):
        raw = await raw_body(request, max_file_bytes + 64 * 1024)
        fields = parse_multipart(request.headers.get("content-type", ""), raw)
        return JSONResponse(await run_in_threadpool(api_files.create_file, fields, max_file_bytes))

    @app.get("/v1/files")
    async def list_files(request: Request):
        return JSONResponse(await run_in_threadpool(api_files.list_files, query(request)))

    @app.get("/v1/files/{file_id}")
    async def retrieve_file(file_id: str):
        return JSONResponse(await run_in_threadpool(api_files.retrieve_file, file_id))

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str):
        return JSONResponse(await run_in_threadpool(api_files.delete_file, file_id))

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str):
        data = await run_in_threadpool(api_files.file_content, file_id)
        return Response(content=data, media_type="application/octet-stream")

    # fine-tuning jobs
    @app.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request):
        body = await body_of(request)
        return JSONResponse(await run_in_threadpool(api_ft.create_job, body, limits))

    @app.get("/v1/fine_tuning/jobs")
    async def list_jobs(request: Request):
        return JSONResponse(await run_in_threadpool(api_ft.list_jobs, query(request)))

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    async def retrieve_job(job_id: str):
        return JSONResponse(await run_in_threadpool(api_ft.retrieve_job, job_id))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str):
        return JSONResponse(await run_in_threadpool(api_ft.cancel_job, job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def list_events(job_id: str, request: Request):
        return JSONResponse(await run_in_threadpool(api_ft.list_events, job_id, query(request)))

    @app.get("/health")
    async def health():
        return {"status": "ok", "version": __version__, "streams": _open_streams[0]}

    return app


def parse_multipart(content_type: str, raw: bytes) -> dict:
    """The fields of a multipart/form-data body (RFC 7578): text fields as
    str, file fields as (filename, bytes). Parsed here, byte-exact, so the
    server needs no python-multipart."""
    from email.message import Message

    head = Message()
    head["content-type"] = content_type
    if head.get_content_type() != "multipart/form-data" or not head.get_param("boundary"):
        raise BadRequestError("file uploads must be multipart/form-data with a boundary", param="file",
                              code="invalid_request")
    delim = b"--" + str(head.get_param("boundary")).encode("latin-1")
    parts = raw.split(delim)
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        raise BadRequestError("malformed multipart body (no closing boundary)", param="file",
                              code="invalid_request")
    fields: dict = {}
    for part in parts[1:-1]:
        if not part.startswith(b"\r\n") or not part.endswith(b"\r\n"):
            raise BadRequestError("malformed multipart body", param="file", code="invalid_request")
        headers, sep, body = part[2:-2].partition(b"\r\n\r\n")
        if not sep:
            headers, body = part[2:-2].rstrip(b"\r\n"), b""
        m = Message()
        for line in headers.decode("utf-8", "replace").split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip():
                m[k.strip()] = v.strip()
        name = m.get_param("name", header="content-disposition")
        if not name:
            raise BadRequestError("a multipart part has no name", param="file", code="invalid_request")
        filename = m.get_filename()
        if filename is not None or name == "file":
            fields[name] = (filename or "upload", body)
        else:
            fields[name] = body.decode("utf-8", "replace")
    return fields


def _is_embedding(name: str) -> bool:
    from .engine import registry

    return registry.canonical(name) == "all-minilm-l6-v2"


_open_streams = [0]  # streams being sent now (shown by /health)


async def _sse(stream, request):
    """Server-sent events: `data: {chunk}` per chunk, then `data: [DONE]`.
    Each chunk is awaited in a worker thread. uvicorn drops writes to a
    client that went away without telling the app, so the connection is
    checked between chunks and the generation cancelled once it is gone."""
    from starlette.concurrency import run_in_threadpool

    done = object()
    _open_streams[0] += 1
    try:
        while True:
            chunk = await run_in_threadpool(next, stream, done)
            if chunk is done:
                break
            if await request.is_disconnected():
                return
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    except OpenAIError as e:  # mid-stream: OpenAI sends the error as an event
        yield f"data: {json.dumps(e.to_dict())}\n\n"
    finally:
        _open_streams[0] -= 1
        stream.cancel()


def serve(host: str = "127.0.0.1", port: int = 8000, api_key: Optional[str] = None,
          max_body_bytes: int = DEFAULT_MAX_BODY, max_tokens: int = DEFAULT_MAX_TOKENS, max_n: int = DEFAULT_MAX_N,
          max_concurrency: Optional[int] = None, models: Optional[Dict[str, str]] = None,
          preload: Sequence[str] = (), log_level: str = "info", max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
    """Run the server until SIGINT or SIGTERM; in-flight requests get a few
    seconds to finish, then the models are closed."""
    try:
        import uvicorn
    except ImportError:
        raise SystemExit('ecomlm serve needs FastAPI and uvicorn: pip install "ecomlm[serve]"') from None
    api_key = api_key or os.environ.get("ECOMLM_API_KEY") or None
    app = create_app(api_key=api_key, max_body_bytes=max_body_bytes, max_tokens=max_tokens, max_n=max_n,
                     models=models, preload=preload, max_file_bytes=max_file_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, limit_concurrency=max_concurrency,
                            timeout_graceful_shutdown=5, access_log=log_level == "debug")
    uvicorn.Server(config).run()
