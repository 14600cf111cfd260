"""Fine-tuning jobs, OpenAI's ``client.fine_tuning.jobs``, run by the C engine
in a background thread:

    f = client.files.create(file=open("shop.jsonl", "rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="path/or/name", training_file=f.id,
                                         hyperparameters={"n_epochs": 3}, suffix="shop")
    client.fine_tuning.jobs.retrieve(job.id).status      # ... "succeeded"
    client.fine_tuning.jobs.list_events(job.id)          # newest first; metrics carry the loss
    client.chat.completions.create(model=job.fine_tuned_model, messages=[...])

ecomlm's own knobs join the request (``extra_body={...}`` over HTTP, or plain
keyword arguments in process): ``lora_rank`` (default 8; 0 trains every
weight), ``lora_alpha``, ``lora_dropout``, ``lora_targets``, ``learning_rate``
(the base rate the multiplier scales; default 2e-4 with LoRA, 5e-5 without),
``seq_len``, ``grad_accum``, ``warmup``, ``weight_decay``, ``max_steps``,
``checkpoint_every`` (default 10 steps), ``n_threads``.

A job lives in ``$ECOMLM_HOME/fine_tuning/<job id>/``: ``job.json`` (the
``fine_tuning.job`` object), ``events.jsonl``, ``spec.json`` (the engine's
arguments), ``checkpoints/`` and ``lock``. The data is checked when the job is
created (every example tokenised and measured against the context, errors
naming the line), so a job never fails on its data after it was accepted.
One job trains at a time per process; the others wait in the queue.

The process that queues a job holds an exclusive ``flock`` on its ``lock``
file until the job ends. If that process dies, the lock goes with it: the next
process that looks at the jobs (any ``fine_tuning.jobs`` call, or
``ecomlm serve`` at start) adopts the job and resumes it from its last
checkpoint; the steps after that checkpoint are trained again and their
events replaced, so the history holds every step exactly once. Cancelling
stops at the next step boundary; the checkpoint on disk is always whole.
On success the merged weights become the model ``fine_tuned_model``
(``ft:<base>:<suffix>:<id>``), usable as ``model=`` everywhere,
listed by ``models.list()`` and deleted by ``models.delete()``.

The base is any gpt2 / llama model: a Hugging Face directory, a GGUF file, or
a name (the default ``smollm2-135m-instruct``, a GGUF Q4_1, and the OpenAI
names that alias it); anything else is refused at create (400, ``model``).
A HF base gives a merged HF directory (fp32 safetensors). A GGUF base gives
``model.gguf``: the source's metadata and tensors, with the tensors the
fine-tune changed written at F16 and every other tensor copied byte for byte
at its source type (re-quantising the changed ones to Q4_1 or Q8_0 rounds the
fine-tune away: docs/finetune.md, "Jobs on a GGUF base").

Metrics events carry ``step``, ``total_steps``, ``epoch``, ``train_loss``,
``valid_loss``, ``learning_rate``, ``grad_norm`` and ``tokens_per_s``; while
it runs, the job's ``estimated_finish`` extrapolates the pace of its steps
(the export after the last step is not counted); at the end
``trained_tokens`` is the number of token positions trained (steps x batch
rows x seq_len, padding included).
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

from ..engine import registry
from ..errors import BadRequestError, NotFoundError, OpenAIError
from . import files as _files
from ._common import check_known, integer, merge_extra_body
from .models import DEFAULT_LIMITS, Limits, get_model
from .objects import CursorPage, FineTuningJob, FineTuningJobEvent, new_id, now

try:
    import fcntl
except ImportError:  # not POSIX: jobs are not shared between processes
    fcntl = None

__all__ = ["create_job", "retrieve_job", "list_jobs", "cancel_job", "list_events", "resume_jobs", "wait",
           "EXTRAS", "FINAL"]

FINAL = frozenset({"succeeded", "failed", "cancelled"})
OPENAI_FIELDS = ("model", "training_file", "validation_file", "hyperparameters", "suffix", "seed", "method",
                 "integrations", "metadata")
# ecomlm's extras: name -> (kind, lo, hi); kind "int", "num", "targets"
EXTRAS = {
    "lora_rank": ("int", 0, 4096), "lora_alpha": ("num", 0.0, 1e6), "lora_dropout": ("num", 0.0, 0.99),
    "lora_targets": ("targets", None, None), "learning_rate": ("num", 0.0, 10.0), "seq_len": ("int", 2, None),
    "grad_accum": ("int", 1, 1024), "warmup": ("num", 0.0, 1e9), "weight_decay": ("num", 0.0, 10.0),
    "max_steps": ("int", 1, None), "checkpoint_every": ("int", 1, None), "n_threads": ("int", 1, 1024),
    "val_fraction": ("num", 0.0, 0.99),
}
DEFAULT_LORA_RANK = 8
DEFAULT_CHECKPOINT_EVERY = 10
GGUF_NAME = "model.gguf"          # the fine-tuned model of a GGUF base, in its folder
GGUF_CHANGED_TYPE = "f16"         # the type of the tensors the fine-tune changed (measured: docs/finetune.md)
AUTO = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
ORG = "org-ecomlm"


# ------------------------------------------------------------------ disk

def jobs_dir() -> str:
    return os.path.join(registry.home(), "fine_tuning")


def _job_dir(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise BadRequestError("fine_tuning_job_id must be a non-empty string", param="fine_tuning_job_id")
    if not re.fullmatch(r"ftjob-[A-Za-z0-9]+", job_id):
        raise NotFoundError(f"Could not find fine-tune: {job_id}", param="fine_tuning_job_id")
    return os.path.join(jobs_dir(), job_id)


def _write_json(path: str, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_job(job_id: str) -> dict:
    try:
        with open(os.path.join(_job_dir(job_id), "job.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        raise NotFoundError(f"Could not find fine-tune: {job_id}", param="fine_tuning_job_id") from None


def _read_events(job_id: str) -> List[dict]:
    out = []
    try:
        with open(os.path.join(_job_dir(job_id), "events.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a killed process
    except OSError:
        pass
    return out


def _event(job_id: str, message: str, level: str = "info", data: Optional[dict] = None,
           type_: str = "message") -> None:
    ev = dict(object="fine_tuning.job.event", id=new_id("ftevent-"), created_at=now(), level=level,
              message=message, data=data, type=type_)
    with open(os.path.join(_job_dir(job_id), "events.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(ev, allow_nan=False) + "\n")


def _update(job_id: str, **fields) -> dict:
    job = _read_job(job_id)
    job.update(fields)
    _write_json(os.path.join(_job_dir(job_id), "job.json"), job)
    return job


def _finite(x) -> Optional[float]:
    return float(x) if x is not None and math.isfinite(x) else None


# ---------------------------------------------------------------- runner

class _Cancelled(Exception):
    pass


class _Runner:
    """The jobs this process holds (queued or running) for one $ECOMLM_HOME,
    and the one worker thread that trains them in order."""

    def __init__(self, home: str):
        self.home = home
        self.cv = threading.Condition()
        self.queue: collections.deque = collections.deque()
        self.locks: Dict[str, Any] = {}      # job id -> open lock file (flock held)
        self.done: Dict[str, threading.Event] = {}
        self.current: Optional[str] = None
        self.thread: Optional[threading.Thread] = None

    def hold(self, job_id: str) -> bool:
        """Take the job's lock; False when another live process holds it."""
        with self.cv:
            if job_id in self.locks:
                return True
            f = open(os.path.join(self.home, "fine_tuning", job_id, "lock"), "a+")
            try:
                if fcntl is not None:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                return False
            self.locks[job_id] = f
            self.done[job_id] = threading.Event()
            return True

    def release(self, job_id: str) -> None:
        with self.cv:
            f = self.locks.pop(job_id, None)
            ev = self.done.pop(job_id, None)
        if f is not None:
            f.close()
        if ev is not None:
            ev.set()

    def submit(self, job_id: str) -> None:
        with self.cv:
            self.queue.append(job_id)
            if self.thread is None or not self.thread.is_alive():
                # a daemon: a process that ends leaves its job to be resumed by the next one
                self.thread = threading.Thread(target=self._loop, name="ecomlm-fine-tuning", daemon=True)
                self.thread.start()
            self.cv.notify_all()

    def dequeue(self, job_id: str) -> bool:
        with self.cv:
            if job_id in self.queue:
                self.queue.remove(job_id)
                return True
            return False

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    if not self.cv.wait(timeout=30):
                        if not self.queue:
                            self.thread = None
                            return
                job_id = self.queue.popleft()
                self.current = job_id
            try:
                _run(job_id)
            except Exception as e:  # _run records the failures it expects; anything else fails the job here
                traceback.print_exc()
                _fail(job_id, "internal_error", f"{type(e).__name__}: {e}")
            finally:
                with self.cv:
                    self.current = None
                self.release(job_id)


_runners: Dict[str, _Runner] = {}
_runners_lock = threading.Lock()


def _runner() -> _Runner:
    home = os.path.abspath(registry.home())
    with _runners_lock:
        r = _runners.get(home)
        if r is None:
            r = _runners[home] = _Runner(home)
    return r


def resume_jobs() -> List[str]:
    """Adopt the unfinished jobs no live process holds (their process died)
    and queue them; they resume from their last checkpoint. Called by every
    ``fine_tuning.jobs`` call and by ``ecomlm serve`` at start. Returns their ids."""
    root = jobs_dir()
    if not os.path.isdir(root):
        return []
    r = _runner()
    adopted = []
    for job_id in sorted(os.listdir(root)):
        if not job_id.startswith("ftjob-") or job_id in r.locks:
            continue
        try:
            job = _read_job(job_id)
        except NotFoundError:
            continue  # being created
        if job.get("status") in FINAL or not r.hold(job_id):
            continue
        job = _read_job(job_id)  # it may have finished while we took the lock
        if job.get("status") in FINAL:
            r.release(job_id)
            continue
        if os.path.exists(os.path.join(root, job_id, "cancel")):
            _finish_cancelled(job_id)
            r.release(job_id)
            continue
        if not os.path.isfile(os.path.join(root, job_id, "spec.json")):
            _fail(job_id, "internal_error", "the process creating this job stopped before its files were validated")
            r.release(job_id)
            continue
        _event(job_id, "The process running this job stopped; the job is queued to resume from its last "
                       "checkpoint", level="warn")
        _update(job_id, status="queued")
        adopted.append(job_id)
        r.submit(job_id)
    return adopted


def _fail(job_id: str, code: str, message: str, param: Optional[str] = None) -> None:
    try:
        _event(job_id, f"Fine-tuning job failed: {message}", level="error")
        _update(job_id, status="failed", finished_at=now(), estimated_finish=None,
                error=dict(code=code, message=message, param=param))
    except OSError:
        traceback.print_exc()


def _finish_cancelled(job_id: str) -> dict:
    _event(job_id, "Fine-tuning job cancelled")
    return _update(job_id, status="cancelled", finished_at=now(), estimated_finish=None)


def _checkpoint_step(ckpt_dir: str) -> int:
    import numpy as np

    path = os.path.join(ckpt_dir, "checkpoint.npz")
    if not os.path.isfile(path):
        return 0
    with np.load(path) as z:
        return int(json.loads(bytes(z["meta"]).decode("utf-8"))["step"])


def _run(job_id: str) -> None:
    """Train one job (in the worker thread) and record how it ended."""
    from ..engine import finetune

    d = _job_dir(job_id)
    if os.path.exists(os.path.join(d, "cancel")):
        _finish_cancelled(job_id)
        return
    with open(os.path.join(d, "spec.json"), encoding="utf-8") as f:
        spec = json.load(f)
    ckpt = os.path.join(d, "checkpoints")
    start = _checkpoint_step(ckpt)
    if start:
        # the steps after the checkpoint are trained again: drop their events
        events = [e for e in _read_events(job_id)
                  if not (e.get("type") == "metrics" and (e.get("data") or {}).get("step", 0) > start)]
        tmp = os.path.join(d, ".events.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(e) + "\n" for e in events)
        os.replace(tmp, os.path.join(d, "events.jsonl"))
        _event(job_id, f"Fine-tuning job resumed from the checkpoint after step {start}")
    else:
        _event(job_id, "Fine-tuning job started")
    _update(job_id, status="running")

    t_run, first = time.time(), [None]

    def on_step(rec: dict) -> None:
        n = rec["tokens_per_s"]
        total = rec.get("total_steps")
        data = dict(step=rec["step"], total_steps=total, epoch=rec["epoch"], train_loss=_finite(rec["loss"]),
                    valid_loss=_finite(rec["val_loss"]), learning_rate=rec["lr"],
                    grad_norm=_finite(rec["grad_norm"]), tokens_per_s=_finite(n))
        msg = f"Step {rec['step']}: training loss={rec['loss']:.4f}"
        if rec["val_loss"] is not None:
            msg += f", validation loss={rec['val_loss']:.4f}"
        _event(job_id, msg, data=data, type_="metrics")
        if total and rec["step"] > 0:  # the mean pace of the steps this process trained, extrapolated
            if first[0] is None:
                first[0] = rec["step"] - 1
            done = rec["step"] - first[0]
            _update(job_id, estimated_finish=int(round(time.time() + (time.time() - t_run) / done
                                                       * (total - rec["step"]))))
        if os.path.exists(os.path.join(d, "cancel")):
            raise _Cancelled()

    kw = dict(spec["engine"])
    try:
        history = finetune.fine_tune(spec["model_path"], spec["training_path"], spec["validation_path"],
                                     checkpoint_dir=ckpt, callback=on_step, progress=False, **kw)
    except _Cancelled:
        _finish_cancelled(job_id)
        return
    except finetune.TrainingDivergedError as e:
        _fail(job_id, "training_diverged", str(e))
        return
    except OpenAIError as e:
        _fail(job_id, e.code or "invalid_request", str(e), e.param)
        return
    except Exception as e:  # an engine bug or I/O: the job fails, the process carries on
        _fail(job_id, "internal_error", f"{type(e).__name__}: {e}")
        return
    name = spec["fine_tuned_model"]
    try:
        tmp = os.path.join(registry.fine_tuned_dir(), f".{job_id}.part")
        shutil.rmtree(tmp, ignore_errors=True)
        extra = {}
        if finetune.model_source(spec["model_path"])[0] == "gguf":
            # a GGUF base gives a GGUF: the tensors the fine-tune changed at F16, the others byte for byte
            # at the source's types (Q4_1 / Q8_0 would round the change away: docs/finetune.md)
            os.makedirs(tmp)
            finetune.save_gguf(history, os.path.join(tmp, GGUF_NAME), GGUF_CHANGED_TYPE, src=spec["model_path"],
                               changed_only=True)
            extra["file"] = GGUF_NAME
        else:
            finetune.save_merged(history, tmp)
        registry.delete_fine_tuned(name)  # saved by a process that died before it could record success
        registry.add_fine_tuned(name, tmp, job_id, created=now(), owned_by="user", job=job_id, base=spec["model"],
                                **extra)
        result = _files.save_bytes("step_metrics.csv", _metrics_csv(history), "fine-tune-results")
    except Exception as e:
        _fail(job_id, "internal_error", f"saving the model: {type(e).__name__}: {e}")
        return
    finally:
        model = getattr(history, "model", None)
        history.trainer = None
        if model is not None:
            model.close()
    _event(job_id, f"New fine-tuned model created: {name}")
    _event(job_id, "The job has successfully completed")  # before the status: a caller that sees it sees every event
    _update(job_id, status="succeeded", finished_at=now(), estimated_finish=None, fine_tuned_model=name,
            trained_tokens=sum(r.get("tokens", spec["tokens_per_step"]) for r in history if r["step"]), result_files=[result["id"]])


def _metrics_csv(history) -> bytes:
    lines = ["step,epoch,train_loss,valid_loss,learning_rate,grad_norm,tokens_per_s"]
    for r in history:
        if not r["step"]:
            continue  # eval_at_start's record
        vals = [r["step"], r["epoch"], r["loss"], r["val_loss"], r["lr"], r["grad_norm"], r["tokens_per_s"]]
        lines.append(",".join("" if v is None else repr(v) if isinstance(v, float) else str(v) for v in vals))
    return ("\n".join(lines) + "\n").encode("utf-8")


# ------------------------------------------------------------ the calls

def _hyper(h: Any, where: str) -> Dict[str, Any]:
    if h is None:
        h = {}
    if not isinstance(h, dict):
        raise BadRequestError(f"{where} must be an object", param=where, code="invalid_type")
    out = {}
    for k, v in h.items():
        if k not in AUTO:
            raise BadRequestError(f"Unrecognized hyperparameter: {k} (one of n_epochs, batch_size, "
                                  "learning_rate_multiplier)", param=f"{where}.{k}", code="unknown_parameter")
        if v is None or v == "auto":
            out[k] = AUTO[k]
        elif k == "learning_rate_multiplier":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise BadRequestError(f"{v!r} is not a positive number - '{where}.{k}'", param=f"{where}.{k}",
                                      code="invalid_value")
            out[k] = float(v)
        else:
            out[k] = integer({k: v}, k, 1, 256 if k == "batch_size" else 50)
    for k, v in AUTO.items():
        out.setdefault(k, v)
    return out


def _extras(body: Dict[str, Any]) -> Dict[str, Any]:
    from ..engine.finetune import LORA_TARGETS

    out: Dict[str, Any] = {}
    for k, (kind, lo, hi) in EXTRAS.items():
        v = body.get(k)
        if v is None:
            continue
        if kind == "int":
            out[k] = integer(body, k, lo, hi)
        elif kind == "num":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo or v > hi:
                raise BadRequestError(f"{v!r} must be a number in [{lo}, {hi}] - '{k}'", param=k,
                                      code="invalid_value")
            out[k] = float(v)
        else:
            if isinstance(v, str):
                v = [t.strip() for t in v.split(",") if t.strip()]
            if not isinstance(v, list) or not v or any(t not in LORA_TARGETS for t in v):
                raise BadRequestError(f"lora_targets must be a non-empty list of {list(LORA_TARGETS)}",
                                      param=k, code="invalid_value")
            out[k] = list(v)
    return out


def _base_path(name: str, limits: Limits) -> str:
    """The directory (or file) the engine trains from, for a model= name."""
    from . import models as api_models

    key = api_models._key(name, limits)
    with api_models._lock:
        src = api_models._registered.get(key)
    if src is not None:
        path = getattr(src, "path", src)
        if not isinstance(path, str):
            raise BadRequestError(f"model `{name}` was registered as a loaded Model without a path; register its "
                                  "directory to fine-tune it", param="model")
        return path
    if key in registry.MODELS or key.startswith("ft:"):
        return registry.resolve(key)
    return key


def _check_file(file_id: Any, param: str) -> dict:
    if not isinstance(file_id, str) or not file_id:
        raise BadRequestError(f"{param} must be a file id (from files.create)", param=param, code="invalid_type")
    try:
        meta = _files.retrieve_file(file_id)
    except NotFoundError:
        raise BadRequestError(f"invalid {param}: no such file {file_id!r}", param=param,
                              code="invalid_file_id") from None
    if meta["purpose"] != "fine-tune":
        raise BadRequestError(f"{file_id} was uploaded with purpose {meta['purpose']!r}, not 'fine-tune'",
                              param=param, code="invalid_file_purpose")
    return meta


def _validate_data(model, file_id: str, param: str, seq_len: int) -> int:
    """Read and tokenise every example: the errors name the file's line."""
    from ..engine.finetune import read_jsonl, tokenize_examples

    source = f"{param} {file_id}"
    try:
        items = read_jsonl(_files.file_path(file_id), source)
        tokenize_examples(items, model.tokenizer, seq_len + 1, source)
    except BadRequestError as e:
        raise BadRequestError(e.message, param=param, code=e.code or "invalid_file_format") from None
    return len(items)


def create_job(body: Dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> FineTuningJob:
    """``client.fine_tuning.jobs.create(...)``: check the request and every
    example, then queue the job (status ``queued``)."""
    body = merge_extra_body(dict(body))
    check_known(body, set(OPENAI_FIELDS) | set(EXTRAS))
    name = body.get("model")
    training_file = body.get("training_file")
    if training_file is None:
        raise BadRequestError("you must provide a training_file", param="training_file",
                              code="missing_required_parameter")
    hyper = body.get("hyperparameters")
    where = "hyperparameters"
    method = body.get("method")
    if method is not None:
        if not isinstance(method, dict) or method.get("type", "supervised") != "supervised":
            raise BadRequestError("only the 'supervised' fine-tuning method is supported", param="method.type",
                                  code="invalid_value")
        sup = method.get("supervised") or {}
        if not isinstance(sup, dict):
            raise BadRequestError("method.supervised must be an object", param="method.supervised")
        if sup.get("hyperparameters") is not None:
            if hyper is not None:
                raise BadRequestError("give hyperparameters either at the top level or in method.supervised",
                                      param="hyperparameters")
            hyper = sup["hyperparameters"]
            where = "method.supervised.hyperparameters"
    hp = _hyper(hyper, where)
    extras = _extras(body)
    suffix = body.get("suffix")
    if suffix is not None:
        if not isinstance(suffix, str) or len(suffix) > 64 or not re.fullmatch(r"[A-Za-z0-9._-]*", suffix):
            raise BadRequestError("suffix must be a string of up to 64 letters, digits, '.', '_' or '-'",
                                  param="suffix", code="invalid_value")
    seed = integer(body, "seed", 0, 2 ** 31 - 1, None)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadRequestError("metadata must be an object of strings", param="metadata", code="invalid_type")

    # the model, then the data against the model's tokenizer and context
    model, _ = get_model(name, limits)
    path = _base_path(name, limits)
    from ..engine.finetune import check_base

    base_kind = check_base(path)  # a 400 naming `model` for a base the trainer cannot take (bert, ...)
    train_meta = _check_file(training_file, "training_file")
    val_id = body.get("validation_file")
    if val_id is not None:
        _check_file(val_id, "validation_file")
    ctx = model.context_length
    seq_len = extras.get("seq_len", min(ctx, 1024))
    if seq_len > ctx:
        raise BadRequestError(f"seq_len {seq_len} exceeds the model's context length {ctx}", param="seq_len",
                              code="invalid_value")

    job_id = new_id("ftjob-")
    d = os.path.join(jobs_dir(), job_id)
    os.makedirs(d)
    base = name[3:].split(":")[0] if name.startswith("ft:") else os.path.basename(os.path.normpath(name))
    if base.lower().endswith(".gguf"):
        base = base[:-5]
    base = base.replace(":", "-") or "model"
    ft_name = f"ft:{base}:{suffix or ''}:{job_id[6:14]}"
    created = now()
    job = dict(object="fine_tuning.job", id=job_id, model=name, created_at=created, finished_at=None,
               fine_tuned_model=None, organization_id=ORG, result_files=[], status="validating_files",
               validation_file=val_id, training_file=training_file,
               hyperparameters=dict(hp), trained_tokens=None, error=None, seed=seed, estimated_finish=None,
               integrations=None, metadata=meta, user_provided_suffix=suffix,
               method=dict(type="supervised", supervised=dict(hyperparameters=dict(hp))))
    r = _runner()
    r.hold(job_id)
    try:
        with open(os.path.join(d, "created_ns"), "w") as f:
            f.write(str(time.time_ns()))
        _write_json(os.path.join(d, "job.json"), job)
        _event(job_id, f"Validating training file: {training_file}" +
               (f" and validation file: {val_id}" if val_id else ""))
        n_train = _validate_data(model, training_file, "training_file", seq_len)
        if val_id is not None:
            _validate_data(model, val_id, "validation_file", seq_len)
    except BaseException:
        r.release(job_id)
        shutil.rmtree(d, ignore_errors=True)  # a request refused leaves no job behind
        raise
    lora_rank = extras.pop("lora_rank", DEFAULT_LORA_RANK)
    base_lr = extras.pop("learning_rate", 2e-4 if lora_rank else 5e-5)
    engine = dict(epochs=hp["n_epochs"], batch_size=hp["batch_size"], lr=base_lr * hp["learning_rate_multiplier"],
                  seed=seed, lora_rank=lora_rank, seq_len=seq_len,
                  checkpoint_every=extras.pop("checkpoint_every", DEFAULT_CHECKPOINT_EVERY))
    for k in ("lora_alpha", "lora_dropout", "lora_targets", "grad_accum", "warmup", "weight_decay", "max_steps",
              "n_threads", "val_fraction"):
        if k in extras:
            engine[k] = extras[k]
    spec = dict(model=name, model_path=os.path.abspath(path), training_path=_files.file_path(training_file),
                validation_path=_files.file_path(val_id) if val_id else None, engine=engine, base_kind=base_kind,
                fine_tuned_model=ft_name, n_train_examples=n_train, training_bytes=train_meta["bytes"],
                tokens_per_step=hp["batch_size"] * engine.get("grad_accum", 1) * seq_len)
    _write_json(os.path.join(d, "spec.json"), spec)
    _event(job_id, "Files validated, moving job to queued state")
    job = _update(job_id, status="queued")
    r.submit(job_id)
    return FineTuningJob(job)


def retrieve_job(job_id: str) -> FineTuningJob:
    resume_jobs()
    return FineTuningJob(_read_job(job_id))


def _all_jobs() -> List[dict]:
    """Every job, newest first (created_at has whole seconds: the nanosecond
    clock in `created_ns` orders jobs created within one second)."""
    root = jobs_dir()
    out = []
    if os.path.isdir(root):
        for j in os.listdir(root):
            if j.startswith("ftjob-"):
                try:
                    job = _read_job(j)
                    with open(os.path.join(root, j, "created_ns")) as f:
                        ns = int(f.read())
                except (NotFoundError, OSError, ValueError):
                    continue
                out.append((job["created_at"], ns, job))
    out.sort(key=lambda x: x[:2], reverse=True)
    return [x[2] for x in out]


def list_jobs(body: Optional[Dict[str, Any]] = None) -> CursorPage:
    """``client.fine_tuning.jobs.list(limit=20, after=None)``: newest first."""
    body = merge_extra_body(dict(body or {}))
    check_known(body, ("limit", "after", "metadata"))
    limit = integer(body, "limit", 1, 10000, 20)
    resume_jobs()
    items = _all_jobs()
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta:
        items = [j for j in items if all((j.get("metadata") or {}).get(k) == v for k, v in meta.items())]
    page, more = _files.paginate(items, body.get("after"), limit)
    rest = {k: v for k, v in body.items() if k != "after"}
    return CursorPage(object="list", data=[FineTuningJob(j) for j in page], has_more=more,
                      fetch=lambda last: list_jobs(dict(rest, after=last)))


def list_events(job_id: str, body: Optional[Dict[str, Any]] = None) -> CursorPage:
    """``client.fine_tuning.jobs.list_events(id, limit=20, after=None)``: newest first."""
    body = merge_extra_body(dict(body or {}))
    check_known(body, ("limit", "after"))
    limit = integer(body, "limit", 1, 10000, 20)
    _read_job(job_id)
    events = list(reversed(_read_events(job_id)))
    page, more = _files.paginate(events, body.get("after"), limit)
    rest = {k: v for k, v in body.items() if k != "after"}
    return CursorPage(object="list", data=[FineTuningJobEvent(e) for e in page], has_more=more,
                      fetch=lambda last: list_events(job_id, dict(rest, after=last)))


def cancel_job(job_id: str, timeout: float = 60.0) -> FineTuningJob:
    """``client.fine_tuning.jobs.cancel(id)``: a queued job is cancelled at once,
    a running one at its next step boundary (waited for up to `timeout` s)."""
    job = _read_job(job_id)
    if job["status"] in FINAL:
        raise BadRequestError(f"Job {job_id} has already {'been ' if job['status'] == 'cancelled' else ''}"
                              f"{job['status']}", param="fine_tuning_job_id", code="invalid_state")
    d = _job_dir(job_id)
    open(os.path.join(d, "cancel"), "a").close()  # seen by whichever process trains it
    r = _runner()
    if r.dequeue(job_id):
        job = _finish_cancelled(job_id)
        r.release(job_id)
        return FineTuningJob(job)
    if job_id not in r.locks:
        resume_jobs()  # an orphan: adopting it finds the mark and cancels it
    ev = r.done.get(job_id)
    deadline = time.time() + timeout
    if ev is not None:
        ev.wait(timeout)
    while time.time() < deadline:  # another process trains it: it sees the mark at its next step
        job = _read_job(job_id)
        if job["status"] in FINAL:
            break
        time.sleep(0.05)
    return FineTuningJob(_read_job(job_id))


def wait(job_id: str, timeout: Optional[float] = None, poll: float = 0.1) -> FineTuningJob:
    """Block until the job has finished (an ecomlm convenience for notebooks)."""
    deadline = None if timeout is None else time.time() + timeout
    while True:
        job = retrieve_job(job_id)
        if job.status in FINAL:
            return job
        if deadline is not None and time.time() > deadline:
            return job
        time.sleep(poll)
