"""Uploaded files, kept under ``$ECOMLM_HOME/files/<file id>/`` (``meta.json``
with the OpenAI ``file`` object, ``content`` with the bytes):

    f = client.files.create(file=open("train.jsonl", "rb"), purpose="fine-tune")
    client.files.retrieve(f.id); client.files.list(purpose="fine-tune")
    client.files.content(f.id).content; client.files.delete(f.id)

A ``fine-tune`` file is checked when it is uploaded, as OpenAI does: JSONL of
chat ``{"messages": [...]}`` or ``{"prompt", "completion"}`` examples, the
first bad line named in the error. (Whether each example fits the model's
context is checked by ``fine_tuning.jobs.create``, which knows the model.)
Every process sharing the home sees the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ..engine import registry
from ..errors import BadRequestError, NotFoundError
from ._common import check_known, integer, merge_extra_body
from .objects import CursorPage, FileObject, OpenAIObject, new_id, now

__all__ = ["create_file", "retrieve_file", "list_files", "delete_file", "file_content", "file_path",
           "save_bytes", "PURPOSES"]

PURPOSES = ("fine-tune", "fine-tune-results", "assistants", "assistants_output", "batch", "batch_output",
            "vision", "user_data", "evals")
UPLOAD_PURPOSES = ("fine-tune", "assistants", "batch", "vision", "user_data", "evals")


def files_dir() -> str:
    return os.path.join(registry.home(), "files")


def _dir(file_id: str) -> str:
    if not isinstance(file_id, str) or not file_id:
        raise BadRequestError("file_id must be a non-empty string", param="file_id")
    if "/" in file_id or "\\" in file_id or file_id.startswith("."):
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return os.path.join(files_dir(), file_id)


def _read_meta(file_id: str) -> dict:
    try:
        with open(os.path.join(_dir(file_id), "meta.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        raise NotFoundError(f"No such File object: {file_id}", param="file_id") from None


def file_path(file_id: str) -> str:
    """The bytes of an uploaded file, on disk (NotFoundError if there is none)."""
    _read_meta(file_id)
    return os.path.join(_dir(file_id), "content")


def _read_upload(file: Any) -> Tuple[str, bytes]:
    """(file name, bytes) of what the openai SDK accepts as `file`: a path, bytes,
    a binary file object, or a tuple (name, content[, content type[, headers]])."""
    name = None
    if isinstance(file, tuple):
        if not 2 <= len(file) <= 4:
            raise BadRequestError("file as a tuple must be (filename, content[, content_type])", param="file")
        name, file = file[0], file[1]
        if name is not None and not isinstance(name, str):
            raise BadRequestError("the file name must be a string", param="file")
    if isinstance(file, (bytes, bytearray, memoryview)):
        return name or "upload", bytes(file)
    if isinstance(file, (str, os.PathLike)):
        path = os.fspath(file)
        if not os.path.isfile(path):
            raise BadRequestError(f"no such file: {path} (pass a path, bytes or an open binary file)", param="file")
        with open(path, "rb") as f:
            return name or os.path.basename(path), f.read()
    if hasattr(file, "read"):
        data = file.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise BadRequestError("file.read() must return bytes", param="file")
        if name is None:
            fname = getattr(file, "name", None)
            name = os.path.basename(fname) if isinstance(fname, str) else "upload"
        return name, bytes(data)
    if file is None:
        raise BadRequestError("you must provide a file", param="file", code="missing_required_parameter")
    raise BadRequestError(f"file must be a path, bytes, a binary file object or a (name, content) tuple, not "
                          f"{type(file).__name__}", param="file", code="invalid_type")


def validate_fine_tune_bytes(name: str, data: bytes) -> int:
    """Check a fine-tuning upload; returns the number of examples."""
    from ..engine.finetune import read_jsonl

    ext = os.path.splitext(name)[1].lower()
    if ext and ext != ".jsonl":
        raise BadRequestError(f"Invalid file format for Fine-Tuning API. Must be .jsonl (got {name!r})",
                              param="file", code="invalid_file_format")
    try:
        return len(read_jsonl(data, name))
    except BadRequestError as e:
        raise BadRequestError(e.message, param="file", code="invalid_file_format") from None


def save_bytes(name: str, data: bytes, purpose: str, status: str = "processed") -> FileObject:
    """Store bytes as a new file; written to a temporary folder and renamed,
    so no reader ever sees half a file."""
    fid = new_id("file-")
    obj = dict(id=fid, object="file", bytes=len(data), created_at=now(), filename=name, purpose=purpose,
               status=status, status_details=None, expires_at=None)
    root = files_dir()
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=root, prefix=".upload-")
    try:
        with open(os.path.join(tmp, "content"), "wb") as f:
            f.write(data)
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, os.path.join(root, fid))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileObject(obj)


def create_file(body: Dict[str, Any], max_bytes: Optional[int] = None) -> FileObject:
    """``client.files.create(file=..., purpose=...)``."""
    body = merge_extra_body(dict(body))
    check_known(body, ("file", "purpose", "expires_after"))
    purpose = body.get("purpose")
    if purpose is None:
        raise BadRequestError("you must provide a purpose", param="purpose", code="missing_required_parameter")
    if purpose not in UPLOAD_PURPOSES:
        raise BadRequestError(f"{purpose!r} is not one of {list(UPLOAD_PURPOSES)} - 'purpose'", param="purpose",
                              code="invalid_value")
    name, data = _read_upload(body.get("file"))
    if max_bytes is not None and len(data) > max_bytes:
        raise BadRequestError(f"the file is {len(data)} bytes; this server accepts at most {max_bytes}",
                              param="file", code="file_too_large")
    if purpose == "fine-tune":
        validate_fine_tune_bytes(name, data)
    return save_bytes(name, data, purpose)


def retrieve_file(file_id: str) -> FileObject:
    return FileObject(_read_meta(file_id))


def _all_files() -> List[dict]:
    root = files_dir()
    out = []
    if os.path.isdir(root):
        for d in os.listdir(root):
            if d.startswith("."):
                continue
            try:
                with open(os.path.join(root, d, "meta.json"), encoding="utf-8") as f:
                    meta = json.load(f)
                    meta["_ns"] = os.fstat(f.fileno()).st_mtime_ns  # orders files created within a second
                out.append(meta)
            except (OSError, ValueError):
                continue  # being deleted
    return out


def paginate(items: List[dict], after: Optional[str], limit: int) -> Tuple[List[dict], bool]:
    """The items after the one whose id is `after`, at most `limit`, and whether more follow."""
    if after is not None:
        if not isinstance(after, str):
            raise BadRequestError("after must be a string (an object id)", param="after", code="invalid_type")
        ids = [x["id"] for x in items]
        if after not in ids:
            raise BadRequestError(f"after: no object {after!r} in this list", param="after", code="invalid_value")
        items = items[ids.index(after) + 1:]
    return items[:limit], len(items) > limit


def list_files(body: Optional[Dict[str, Any]] = None) -> CursorPage:
    """``client.files.list(purpose=, limit=, after=, order=)``: newest first by default."""
    body = merge_extra_body(dict(body or {}))
    check_known(body, ("purpose", "limit", "after", "order"))
    limit = integer(body, "limit", 1, 10000, 10000)
    order = body.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise BadRequestError(f"{order!r} is not one of ['asc', 'desc'] - 'order'", param="order")
    purpose = body.get("purpose")
    items = [x for x in _all_files() if purpose is None or x.get("purpose") == purpose]
    items.sort(key=lambda x: (x["created_at"], x.pop("_ns")), reverse=order == "desc")
    page, more = paginate(items, body.get("after"), limit)
    rest = {k: v for k, v in body.items() if k != "after"}
    return CursorPage(object="list", data=[FileObject(x) for x in page], has_more=more,
                      first_id=page[0]["id"] if page else None, last_id=page[-1]["id"] if page else None,
                      fetch=lambda last: list_files(dict(rest, after=last)))


def delete_file(file_id: str) -> OpenAIObject:
    d = _dir(file_id)
    _read_meta(file_id)
    os.remove(os.path.join(d, "meta.json"))  # gone for readers at once
    shutil.rmtree(d, ignore_errors=True)
    return OpenAIObject(id=file_id, object="file", deleted=True)


def file_content(file_id: str) -> bytes:
    with open(file_path(file_id), "rb") as f:
        return f.read()


class BinaryContent:
    """What the v1 SDK's ``client.files.content(id)`` returns."""

    def __init__(self, data: bytes):
        self.content = data

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")

    def read(self) -> bytes:
        return self.content

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_bytes(self, chunk_size: Optional[int] = None):
        n = chunk_size or len(self.content) or 1
        for i in range(0, len(self.content), n):
            yield self.content[i:i + n]

    def write_to_file(self, file: Any) -> None:
        with open(file, "wb") as f:
            f.write(self.content)

    stream_to_file = write_to_file
