"""Fine-tuning: full or LoRA, on OpenAI fine-tuning JSONL, in the C engine.

>>> import ecomlm
>>> m = ecomlm.load("path/to/hf-model-dir")
>>> history = m.fine_tune("train.jsonl", epochs=2, lora_rank=8)
>>> import pandas; pandas.DataFrame(history).plot(x="step", y=["loss", "val_loss"])

The C engine (``_core.Trainer``) owns the fp32 master weights, gradients,
Adam moments and activations; this module owns the policy: reading and
validating data, packing it to the context length, the schedule, checkpoints
and the progress bar.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..errors import APIError, BadRequestError
from . import hf

__all__ = ["build_trainer", "model_source", "hf_config_from_gguf", "trainer_to_model", "save_gguf",
           "load_adapter", "write_tokenizer_files", "read_jsonl", "tokenize_example", "tokenize_examples", "pack",
           "fine_tune", "save_merged", "save_adapter", "History", "TrainingDivergedError", "LORA_TARGETS"]

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


class TrainingDivergedError(APIError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------- trainer

def _tied(family: str, cfg: dict, store) -> bool:
    """Whether lm_head is the token embedding (the same rule as hf.weight_plan)."""
    if family == "gpt2":
        return bool(cfg.get("tie_word_embeddings", True) or not store.has("lm_head.weight"))
    return bool(cfg.get("tie_word_embeddings", False) or not store.has("lm_head.weight"))


def model_source(path_or_name) -> Tuple[str, str]:
    """("hf", directory) or ("gguf", file) for a Hugging Face model directory,
    a GGUF file, or a registered model name (the default SmolLM2 is a GGUF)."""
    from ..errors import NotFoundError

    path = os.fspath(path_or_name)
    if os.path.isdir(path):
        return "hf", path
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"GGUF":
                return "gguf", path
        raise BadRequestError(f"{path} is neither a GGUF file nor a model directory", param="model")
    from . import registry

    local = registry.resolve(path)
    if local is None:
        raise NotFoundError(f"model '{path}' is neither a directory nor a known model name "
                            f"({', '.join(registry.names())})", param="model")
    return model_source(local)


def check_base(path_or_name) -> str:
    """"hf" or "gguf" when the model can be fine-tuned (a gpt2 or llama HF
    directory, GGUF file or registered name); BadRequestError naming `model`
    otherwise. Reads the config / GGUF metadata only."""
    kind, path = model_source(path_or_name)
    if kind == "gguf":
        from .gguf import GGUFReader
        from .gguf_model import engine_config_from_gguf

        try:
            r = GGUFReader(path)
            family = engine_config_from_gguf(r)[0]
            if family in ("gpt2", "llama"):
                hf_config_from_gguf(r)
        except Exception as e:  # noqa: BLE001: any unreadable file means "not fine-tunable"
            raise BadRequestError(f"model {os.path.basename(path)} cannot be fine-tuned: {e}", param="model",
                                  code="model_not_fine_tunable") from None
    else:
        try:
            family, _ = hf.engine_config(hf.read_config(path))
        except Exception as e:  # noqa: BLE001: any unreadable config means "not fine-tunable"
            raise BadRequestError(f"model {os.path.basename(os.path.normpath(path))} cannot be fine-tuned: {e}",
                                  param="model", code="model_not_fine_tunable") from None
    if family not in ("gpt2", "llama"):
        raise BadRequestError(f"fine-tuning supports gpt2 and llama models, not {family} "
                              f"({os.path.basename(os.path.normpath(path))})", param="model",
                              code="model_not_fine_tunable")
    return kind


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's adjacent-pair q/k rows -> Hugging Face's rotate-half rows
    (the inverse of convert.permute_qk)."""
    return np.ascontiguousarray(
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def hf_config_from_gguf(r) -> Tuple[str, dict, dict]:
    """(family, Hugging Face config.json dict, engine config) of a GGUF file.
    The engine config is the GGUF loader's one without rope_interleaved: the
    trainer holds q/k rows in Hugging Face's rotate-half order."""
    from .gguf_model import engine_config_from_gguf

    family, gcfg = engine_config_from_gguf(r)
    md = r.metadata
    tied = "output.weight" not in r
    if family == "gpt2":
        cfg = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=gcfg["d_model"],
                   n_layer=gcfg["n_layer"], n_head=gcfg["n_head"], n_inner=gcfg["d_ff"], vocab_size=gcfg["vocab"],
                   n_positions=gcfg["max_pos"], n_ctx=gcfg["max_pos"], layer_norm_epsilon=gcfg["norm_eps"],
                   activation_function="gelu_new", tie_word_embeddings=tied)
    else:
        cfg = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=gcfg["d_model"],
                   intermediate_size=gcfg["d_ff"], num_hidden_layers=gcfg["n_layer"],
                   num_attention_heads=gcfg["n_head"], num_key_value_heads=gcfg["n_kv_head"],
                   head_dim=gcfg["head_dim"], vocab_size=gcfg["vocab"], max_position_embeddings=gcfg["max_pos"],
                   rms_norm_eps=gcfg["norm_eps"], rope_theta=gcfg["rope_theta"], hidden_act="silu",
                   attention_bias=False, mlp_bias=False, tie_word_embeddings=tied)
        if gcfg.get("rope_scaling") == _core.ROPE_LINEAR:
            cfg["rope_scaling"] = {"rope_type": "linear", "factor": gcfg["rope_factor"]}
    for key, hkey in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("padding_token_id", "pad_token_id")):
        if isinstance(md.get("tokenizer.ggml." + key), int):
            cfg[hkey] = md["tokenizer.ggml." + key]
    cfg["torch_dtype"] = "float32"
    _, ecfg = hf.engine_config(cfg)
    want = {k: v for k, v in gcfg.items() if k != "rope_interleaved"}
    if any(ecfg.get(k) != v for k, v in want.items()):  # the two readers must agree on every field
        from ..errors import ModelFormatError

        raise ModelFormatError(f"{r.path}: the GGUF metadata maps to {want}, its Hugging Face config to {ecfg}")
    return family, cfg, ecfg


def _gguf_plan(family: str, ecfg: dict, r):
    """[(slot, [(gguf tensor, q/k heads to un-permute or 0)])]: the GGUF
    loader's slot plan, with the llama q/k sources marked."""
    from .gguf_model import _plan

    out = []
    for slot, srcs in _plan(family, ecfg, r).items:
        marked = []
        for s in srcs:
            heads = 0
            if family == "llama" and s.endswith(".attn_q.weight"):
                heads = ecfg["n_head"]
            elif family == "llama" and s.endswith(".attn_k.weight"):
                heads = ecfg["n_kv_head"]
            marked.append((s, heads))
        out.append((slot, marked))
    return out


def _build_trainer_gguf(path: str, lora: Optional[dict], n_threads: Optional[int]):
    from .gguf import GGUFReader

    r = GGUFReader(path)
    family, cfg, ecfg = hf_config_from_gguf(r)
    tr = _core.Trainer(ecfg, n_threads, bool(cfg["tie_word_embeddings"]), lora)
    slots = dict(tr.slots())
    for slot, srcs in _gguf_plan(family, ecfg, r):
        if slot not in slots:
            continue  # tied lm_head
        parts = []
        for s, heads in srcs:
            w = r.dequantize(s)
            parts.append(unpermute_qk(w, heads) if heads else w)
        arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
        tr.set_tensor(slot, np.ascontiguousarray(arr, dtype=np.float32), False)
        del parts, arr
    tr.finalize()
    return tr, family, cfg, ecfg


def build_trainer(path: str, *, lora: Optional[dict] = None, n_threads: Optional[int] = None):
    """(trainer, family, hf config, engine config) for a Hugging Face model
    directory, a GGUF file or a registered model name.

    A GGUF base is dequantised into the trainer's fp32 slots (the q/k rows of
    llama files un-permuted back to rotate-half order), so a quantised model
    trains exactly as its dequantised weights compute.
    lora: None for full fine-tuning, or dict(rank, alpha, dropout, targets, seed).
    """
    kind, path = model_source(path)
    if kind == "gguf":
        return _build_trainer_gguf(path, lora, n_threads)
    cfg = hf.read_config(path)
    family, ecfg = hf.engine_config(cfg)
    if family not in ("gpt2", "llama"):
        raise BadRequestError(f"fine-tuning supports gpt2 and llama models, not {family}", param="model")
    store = hf.TensorStore(hf.safetensors_files(path))
    tied = _tied(family, cfg, store)
    tr = _core.Trainer(ecfg, n_threads, tied, lora)
    slots = dict(tr.slots())
    plan, _ = hf.weight_plan(family, cfg, ecfg, store)
    for slot, fetch, transposed in plan:
        if slot not in slots:
            continue  # tied lm_head, or a bias this configuration does not carry
        tr.set_tensor(slot, fetch(), transposed)
    tr.finalize()
    return tr, family, cfg, ecfg


def trainer_to_model(tr, ecfg: dict, n_threads: Optional[int] = None) -> "_core.Model":
    """A _core.Model for inference with the trainer's weights, LoRA merged in."""
    core = _core.Model(ecfg, n_threads)
    names = {n for n, _ in tr.slots()}
    for slot, _shape in core.slots():
        src = "tok_embd" if slot == "lm_head.weight" and slot not in names else slot
        core.set_tensor(slot, tr.export(src, True))
    core.finalize()
    return core


# -------------------------------------------------------------------- data

CHAT_ROLES = ("system", "user", "assistant", "tool", "function", "developer")


def _bad(line: int, msg: str, source: str = "training data") -> BadRequestError:
    return BadRequestError(f"{source}, line {line}: {msg}", param="training_file", code="invalid_training_file")


def read_jsonl(data, source: str = "training data") -> List[Tuple[int, dict]]:
    """[(line number, example)] of OpenAI fine-tuning JSONL, validated.

    data: a path, bytes, a text, or a list of dicts (numbered from 1). Each
    example is chat ``{"messages": [...]}`` (trained on the assistant turns,
    except those with ``"weight": 0``) or legacy ``{"prompt", "completion"}``.
    Raises BadRequestError naming the line of the first bad example.
    """
    if isinstance(data, (list, tuple)):
        items = [(i + 1, x) for i, x in enumerate(data)]
        for line, ex in items:
            _check_example(line, ex, source)
        if not items:
            raise BadRequestError(f"{source} has no examples", param="training_file")
        return items
    if isinstance(data, (str, os.PathLike)) and (isinstance(data, os.PathLike) or "\n" not in data) \
            and os.path.exists(os.fspath(data)):
        with open(os.fspath(data), "rb") as f:
            raw = f.read()
    elif isinstance(data, bytes):
        raw = data
    elif isinstance(data, str):
        if "\n" not in data and not data.lstrip().startswith("{"):
            raise BadRequestError(f"{source}: no such file: {data}", param="training_file")
        raw = data.encode("utf-8")
    else:
        raise BadRequestError(f"{source} must be a path, JSONL text or a list of examples", param="training_file")
    out = []
    for i, bline in enumerate(raw.split(b"\n")):
        line = i + 1
        try:
            text = bline.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _bad(line, f"invalid UTF-8 at byte {e.start}", source) from None
        if not text.strip():
            continue
        try:
            ex = json.loads(text)
        except ValueError as e:
            raise _bad(line, f"invalid JSON: {e}", source) from None
        _check_example(line, ex, source)
        out.append((line, ex))
    if not out:
        raise BadRequestError(f"{source} has no examples", param="training_file")
    return out


def _check_example(line: int, ex: Any, source: str) -> None:
    if isinstance(ex, dict) and "input_ids" in ex:  # pre-tokenised
        ids = ex["input_ids"]
        if not isinstance(ids, (list, tuple, np.ndarray)) or len(ids) < 2:
            raise _bad(line, "input_ids must be a list of at least 2 token ids", source)
        mask = ex.get("loss_mask")
        if mask is not None and len(mask) != len(ids):
            raise _bad(line, "loss_mask must have the length of input_ids", source)
        return
    if not isinstance(ex, dict):
        raise _bad(line, f"expected a JSON object, got {type(ex).__name__}", source)
    if "messages" in ex:
        msgs = ex["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise _bad(line, "'messages' must be a non-empty list", source)
        n_assistant = 0
        for j, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise _bad(line, f"message {j} is not an object", source)
            if "role" not in m:
                raise _bad(line, f"message {j} has no 'role'", source)
            role = m["role"]
            if role not in CHAT_ROLES:
                raise _bad(line, f"message {j} has unknown role {role!r} (one of {', '.join(CHAT_ROLES)})", source)
            content = m.get("content")
            if role != "assistant" or not m.get("tool_calls"):
                if not isinstance(content, str):
                    raise _bad(line, f"message {j} ({role}) needs a string 'content'", source)
            if role == "assistant":
                if isinstance(content, str) and not content.strip() and not m.get("tool_calls"):
                    raise _bad(line, f"message {j}: empty assistant content", source)
                if m.get("weight", 1) not in (0, 1):
                    raise _bad(line, f"message {j}: 'weight' must be 0 or 1", source)
                n_assistant += 1
        if n_assistant == 0:
            raise _bad(line, "the conversation has no assistant message to learn from", source)
        return
    if "prompt" in ex or "completion" in ex:
        if not isinstance(ex.get("prompt"), str):
            raise _bad(line, "'prompt' must be a string", source)
        if not isinstance(ex.get("completion"), str):
            raise _bad(line, "'completion' must be a string", source)
        if not ex["completion"].strip():
            raise _bad(line, "empty completion", source)
        return
    raise _bad(line, "expected {'messages': [...]} or {'prompt': ..., 'completion': ...}", source)


def _encode(tokenizer, text: str) -> List[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:  # a tokenizer with encode(text) only
        return list(tokenizer.encode(text))


def _render(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)


def tokenize_example(ex: dict, tokenizer, eos_id: Optional[int] = None) -> Tuple[List[int], List[int]]:
    """(ids, loss_mask) of one validated example: mask 1 on the tokens the
    model learns to produce (assistant turns, or the completion and EOS)."""
    if "input_ids" in ex:
        ids = [int(x) for x in ex["input_ids"]]
        mask = ex.get("loss_mask")
        return ids, [int(bool(x)) for x in mask] if mask is not None else [1] * len(ids)
    if tokenizer is None:
        raise BadRequestError("text examples need a tokenizer (the model has none): pass tokenizer=",
                              param="tokenizer")
    if "messages" in ex:
        msgs = [{k: v for k, v in m.items() if k != "weight"} for m in ex["messages"]]
        segments: List[Tuple[str, int]] = []  # (text, trained)
        done = ""
        for i, m in enumerate(ex["messages"]):
            if m["role"] != "assistant":
                continue
            prefix = _render(tokenizer, msgs[:i], True)
            full = _render(tokenizer, msgs[:i + 1], False)
            if not prefix.startswith(done) or not full.startswith(prefix):
                raise BadRequestError("the chat template does not render conversations incrementally; "
                                      "cannot tell assistant tokens apart", param="tokenizer")
            segments.append((prefix[len(done):], 0))
            segments.append((full[len(prefix):], int(m.get("weight", 1))))
            done = full
        rest = _render(tokenizer, msgs, False)
        if rest.startswith(done) and len(rest) > len(done):
            segments.append((rest[len(done):], 0))
        ids: List[int] = []
        mask: List[int] = []
        for text, trained in segments:
            if text:
                t = _encode(tokenizer, text)
                ids += t
                mask += [trained] * len(t)
        return ids, mask
    p = _encode(tokenizer, ex["prompt"])
    c = _encode(tokenizer, ex["completion"])
    if eos_id is not None:
        c = c + [int(eos_id)]
    return p + c, [0] * len(p) + [1] * len(c)


def tokenize_examples(items: Sequence[Tuple[int, dict]], tokenizer, max_tokens: int,
                      source: str = "training data") -> List[Tuple[List[int], List[int]]]:
    """Tokenise validated examples; an example longer than max_tokens (the
    context length) is an error naming its line."""
    eos = getattr(tokenizer, "eos_id", None) if tokenizer is not None else None
    out = []
    for line, ex in items:
        ids, mask = tokenize_example(ex, tokenizer, eos)
        if len(ids) > max_tokens:
            raise _bad(line, f"{len(ids)} tokens exceed the context length of {max_tokens} tokens", source)
        if len(ids) < 2 or not any(mask[1:]):
            raise _bad(line, "no tokens to learn from after tokenisation", source)
        out.append((ids, mask))
    return out


def pack(examples: Sequence[Tuple[List[int], List[int]]], seq_len: int, pad_id: int = 0):
    """Pack tokenised examples, in order and whole, into rows of seq_len + 1
    tokens: (ids (N, seq_len + 1) int32, loss mask (N, seq_len + 1) uint8).
    Row r trains on inputs ids[r, :-1] and targets ids[r, 1:] where mask[r, 1:]."""
    rows: List[Tuple[List[int], List[int]]] = []
    cur_ids: List[int] = []
    cur_mask: List[int] = []
    width = seq_len + 1
    for ids, mask in examples:
        if len(ids) > width:
            raise BadRequestError(f"an example of {len(ids)} tokens does not fit rows of {width}")
        if len(cur_ids) + len(ids) > width:
            rows.append((cur_ids, cur_mask))
            cur_ids, cur_mask = [], []
        cur_ids = cur_ids + list(ids)
        cur_mask = cur_mask + list(mask)
    if cur_ids:
        rows.append((cur_ids, cur_mask))
    out_ids = np.full((len(rows), width), pad_id, dtype=np.int32)
    out_mask = np.zeros((len(rows), width), dtype=np.uint8)
    for r, (ids, mask) in enumerate(rows):
        out_ids[r, :len(ids)] = ids
        out_mask[r, :len(mask)] = mask
    return out_ids, out_mask


# --------------------------------------------------------------- training

class History(list):
    """The per-step records of a run (a list of dicts, so that
    ``pandas.DataFrame(history)`` works), with the fine-tuned model attached."""

    model = None
    trainer = None
    checkpoint_dir: Optional[str] = None
    family: Optional[str] = None
    hf_config: Optional[dict] = None
    engine_config: Optional[dict] = None


def _hparams_key(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _save_checkpoint(ckpt_dir: str, tr, step: int, history: list, key: str) -> None:
    """Write the trainable tensors, Adam moments and counters atomically:
    a temporary file in the same directory, then os.replace."""
    os.makedirs(ckpt_dir, exist_ok=True)
    arrays = {}
    grads = tr.gradients()
    params = tr.parameters()
    m, v = tr.adam_m(), tr.adam_v()
    for n in grads:
        arrays["p/" + n] = params[n]
        arrays["m/" + n] = m[n]
        arrays["v/" + n] = v[n]
    meta = dict(step=step, adam_step=tr.adam_step, forward_count=tr.forward_count, history=history, key=key)
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=float).encode("utf-8"), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=ckpt_dir, prefix=".checkpoint-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(ckpt_dir, "checkpoint.npz"))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_checkpoint(ckpt_dir: str, tr, key: str):
    path = os.path.join(ckpt_dir, "checkpoint.npz")
    if not os.path.isfile(path):
        return None
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode("utf-8"))
        if meta.get("key") != key:
            raise BadRequestError(f"the checkpoint in {ckpt_dir} belongs to a run with other data or "
                                  "hyper-parameters; use another checkpoint_dir or resume=False",
                                  param="checkpoint_dir")
        params, m, v = tr.parameters(), tr.adam_m(), tr.adam_v()
        for n in tr.gradients():
            params[n][...] = z["p/" + n]
            m[n][...] = z["m/" + n]
            v[n][...] = z["v/" + n]
    tr.adam_step = int(meta["adam_step"])
    tr.forward_count = int(meta["forward_count"])
    return int(meta["step"]), list(meta["history"])


def _resolve_model(model_or_path, n_threads):
    from .model import Model, load

    if isinstance(model_or_path, Model):
        if model_or_path.path is None:
            raise BadRequestError("this model was not loaded from a directory; pass its path", param="model")
        return model_or_path, model_or_path.path
    model = load(model_or_path, n_threads)
    return model, model.path


def fine_tune(model_or_path, train_data, validation_data=None, *, tokenizer=None, epochs: int = 3,
              batch_size: int = 4, seq_len: Optional[int] = None, lr: Optional[float] = None,
              min_lr: float = 0.0, warmup: float = 0.05, weight_decay: float = 0.0, beta1: float = 0.9,
              beta2: float = 0.999, eps: float = 1e-8, grad_clip: float = 1.0, grad_accum: int = 1,
              lora_rank: int = 0, lora_alpha: Optional[float] = None, lora_dropout: float = 0.0,
              lora_targets: Sequence[str] = ("q", "k", "v", "o"), val_fraction: float = 0.1,
              eval_every: Optional[int] = None, seed: int = 0, checkpoint_dir: Optional[str] = None,
              checkpoint_every: Optional[int] = None, resume: bool = True, max_steps: Optional[int] = None,
              n_threads: Optional[int] = None, progress: bool = True, eval_at_start: bool = False,
              callback: Optional[Callable[[dict], None]] = None) -> History:
    """Fine-tune a gpt2 or llama model (full, or LoRA when lora_rank > 0).

    train_data / validation_data: OpenAI fine-tuning JSONL (a path, text, or a
    list of example dicts), or pre-tokenised ``{"input_ids", "loss_mask"}``
    dicts. Without validation_data, ``val_fraction`` of the examples is held
    out. Rows are packed to ``seq_len`` (default: the context length, at most
    1024). The learning rate warms up linearly over ``warmup`` (a fraction of
    the steps if < 1, else a step count), then follows a cosine to min_lr.

    Checkpoints (trainable tensors, Adam moments, counters, history) are
    written atomically to checkpoint_dir every ``checkpoint_every`` steps and
    at the end; with resume=True a run restarts from the last one without
    losing or repeating a step. A NaN or infinite loss raises
    TrainingDivergedError before the step is applied, so no checkpoint ever
    holds a diverged state.

    eval_at_start: first record the validation loss of the untrained model
    (a record with step 0 and loss None).

    Returns the history (list of dicts: step, epoch, loss, val_loss, lr,
    grad_norm, tokens_per_s, total_steps, tokens: the positions trained in
    the step), with ``.model``: the fine-tuned Model (the model
    passed in is updated in place).
    """
    from tqdm.auto import tqdm

    model, path = _resolve_model(model_or_path, n_threads)
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    ctx = model.context_length
    if seq_len is None:
        seq_len = min(ctx, 1024)
    for name, val, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("grad_accum", grad_accum, 1),
                          ("seq_len", seq_len, 2), ("lora_rank", lora_rank, 0)):
        if not isinstance(val, (int, np.integer)) or val < lo:
            raise BadRequestError(f"{name} must be an integer >= {lo}, got {val!r}", param=name)
    if seq_len > ctx:
        raise BadRequestError(f"seq_len {seq_len} exceeds the model's context length {ctx}", param="seq_len")
    for t in lora_targets:
        if t not in LORA_TARGETS:
            raise BadRequestError(f"unknown lora target {t!r} ({', '.join(LORA_TARGETS)})", param="lora_targets")
    if lr is None:
        lr = 2e-4 if lora_rank else 5e-5
    if not (0.0 <= val_fraction < 1.0):
        raise BadRequestError("val_fraction must be in [0, 1)", param="val_fraction")

    # data: validated and tokenised before any training
    items = read_jsonl(train_data, "training data")
    examples = tokenize_examples(items, tok, seq_len + 1, "training data")
    rng = random.Random(seed)
    if validation_data is not None:
        val_items = read_jsonl(validation_data, "validation data")
        val_examples = tokenize_examples(val_items, tok, seq_len + 1, "validation data")
    else:
        order = list(range(len(examples)))
        rng.shuffle(order)
        n_val = int(round(len(examples) * val_fraction)) if len(examples) >= 2 else 0
        val_idx = set(order[:n_val])
        val_examples = [e for i, e in enumerate(examples) if i in val_idx]
        examples = [e for i, e in enumerate(examples) if i not in val_idx]
    pad = getattr(tok, "pad_id", None) or 0
    rows, masks = pack(examples, seq_len, pad)
    val_rows, val_masks = pack(val_examples, seq_len, pad) if val_examples else (None, None)

    lora = None
    if lora_rank:
        lora = dict(rank=int(lora_rank), alpha=float(lora_alpha if lora_alpha is not None else 2 * lora_rank),
                    dropout=float(lora_dropout), targets=list(lora_targets), seed=int(seed))
    tr, family, cfg, ecfg = build_trainer(path, lora=lora, n_threads=n_threads if n_threads else model.n_threads)

    n_rows = len(rows)
    per_step = batch_size * grad_accum
    steps_per_epoch = max(1, math.ceil(n_rows / per_step))
    total = epochs * steps_per_epoch
    if max_steps is not None:
        total = min(total, int(max_steps))
    warm = int(round(warmup * total)) if warmup < 1 else int(warmup)
    eval_every = eval_every or steps_per_epoch
    data_hash = hashlib.sha256(rows.tobytes() + masks.tobytes()).hexdigest()
    key = _hparams_key(dict(path=os.path.abspath(path), data=data_hash, n_rows=n_rows,
                            seq_len=seq_len, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                            min_lr=min_lr, warmup=warm, weight_decay=weight_decay, betas=(beta1, beta2), eps=eps,
                            grad_clip=grad_clip, lora=lora, seed=seed, total=total))

    history = History()
    start = 0
    if checkpoint_dir and resume:
        got = _load_checkpoint(checkpoint_dir, tr, key)
        if got is not None:
            start, old = got
            history.extend(old)

    def val_loss() -> Optional[float]:
        if val_rows is None:
            return None
        tot, n = 0.0, 0
        for i in range(0, len(val_rows), batch_size):
            idx = [(i + j) % len(val_rows) for j in range(batch_size)]  # full batches: one activation plan
            x, m = val_rows[idx], val_masks[idx]
            real = min(batch_size, len(val_rows) - i)
            m = m.copy()
            m[real:] = 0
            cnt = int(m[:, 1:].sum())
            if cnt:
                tot += tr.forward(x[:, :-1], x[:, 1:], m[:, 1:]) * cnt
                n += cnt
        return tot / n if n else None

    if eval_at_start and start == 0 and val_rows is not None:
        rec0 = dict(step=0, epoch=0, loss=None, val_loss=val_loss(), lr=0.0, grad_norm=None, tokens_per_s=None,
                    total_steps=total, tokens=0)
        history.append(rec0)
        if callback is not None:
            callback(rec0)
    bar = tqdm(total=total, initial=start, disable=not progress, desc="fine-tune", unit="step")
    try:
        for step in range(start, total):
            epoch, k = divmod(step, steps_per_epoch)
            perm = np.random.default_rng([seed, epoch]).permutation(n_rows)
            t0 = time.perf_counter()
            tr.zero_grad()
            losses, tokens = [], 0
            for a in range(grad_accum):
                base = k * per_step + a * batch_size
                idx = perm[[(base + j) % n_rows for j in range(batch_size)]]
                x, m = rows[idx], masks[idx]
                loss = tr.forward_backward(x[:, :-1], x[:, 1:], m[:, 1:], 1.0 / grad_accum)
                losses.append(loss)
                tokens += x.shape[0] * (x.shape[1] - 1)
            loss = float(np.mean(losses))
            if not math.isfinite(loss):
                raise TrainingDivergedError(f"the training loss became {loss} at step {step + 1}; the step was "
                                            "not applied" + (f" and the last checkpoint in {checkpoint_dir} "
                                                              "is intact" if checkpoint_dir else ""))
            cur_lr = _core.lr_schedule(step, lr, min_lr, warm, total)
            try:
                norm = tr.step(cur_lr, beta1, beta2, eps, weight_decay, grad_clip)
            except BadRequestError as e:
                raise TrainingDivergedError(f"step {step + 1}: {e}") from None
            dt = time.perf_counter() - t0
            rec = dict(step=step + 1, epoch=epoch + 1, loss=loss, val_loss=None, lr=cur_lr, grad_norm=norm,
                       tokens_per_s=tokens / dt if dt > 0 else float("nan"), total_steps=total, tokens=tokens)
            if (step + 1) % eval_every == 0 or step + 1 == total:
                rec["val_loss"] = val_loss()
            history.append(rec)
            if callback is not None:
                callback(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{cur_lr:.2e}")
            if checkpoint_dir and ((checkpoint_every and (step + 1) % checkpoint_every == 0) or step + 1 == total):
                _save_checkpoint(checkpoint_dir, tr, step + 1, list(history), key)
    finally:
        bar.close()
    core = trainer_to_model(tr, ecfg, model.n_threads)
    model._core = core
    model.engine_config = dict(ecfg)  # a GGUF base now runs with rotate-half q/k rows, unquantised
    if hasattr(model, "weight_types"):
        model.weight_types = {}
    history.model = model
    history.checkpoint_dir = checkpoint_dir
    history.trainer = tr
    history.family, history.hf_config, history.engine_config = family, cfg, ecfg
    return history


# ---------------------------------------------------------------- export

def save_merged(history_or_trainer, out_dir: str, src_dir: Optional[str] = None, family: Optional[str] = None,
                hf_config: Optional[dict] = None) -> str:
    """Write the fine-tuned weights (LoRA merged) as a Hugging Face model
    directory that ecomlm.load and transformers read: config.json,
    model.safetensors, and the tokenizer files copied from src_dir (or, for a
    GGUF base, written from its metadata)."""
    import shutil

    from .safetensors import save_file

    tr = getattr(history_or_trainer, "trainer", history_or_trainer)
    family = family or history_or_trainer.family
    cfg = hf_config or history_or_trainer.hf_config
    src_dir = src_dir or history_or_trainer.model.path
    if src_dir and not os.path.exists(src_dir):
        src_dir = model_source(src_dir)[1]
    names = {n for n, _ in tr.slots()}
    ex = lambda n: tr.export(n, True)  # noqa: E731
    out: Dict[str, np.ndarray] = {}
    L = cfg.get("n_layer", cfg.get("num_hidden_layers"))
    if family == "gpt2":
        out["transformer.wte.weight"] = ex("tok_embd")
        out["transformer.wpe.weight"] = ex("pos_embd")
        for i in range(L):
            h, s = f"transformer.h.{i}.", f"layers.{i}."
            for a, b, t in (("ln_1.weight", "attn_norm.weight", 0), ("ln_1.bias", "attn_norm.bias", 0),
                            ("attn.c_attn.weight", "qkv.weight", 1), ("attn.c_attn.bias", "qkv.bias", 0),
                            ("attn.c_proj.weight", "proj.weight", 1), ("attn.c_proj.bias", "proj.bias", 0),
                            ("ln_2.weight", "ffn_norm.weight", 0), ("ln_2.bias", "ffn_norm.bias", 0),
                            ("mlp.c_fc.weight", "up.weight", 1), ("mlp.c_fc.bias", "up.bias", 0),
                            ("mlp.c_proj.weight", "down.weight", 1), ("mlp.c_proj.bias", "down.bias", 0)):
                w = ex(s + b)
                out[h + a] = np.ascontiguousarray(w.T) if t else w
        out["transformer.ln_f.weight"] = ex("norm.weight")
        out["transformer.ln_f.bias"] = ex("norm.bias")
        if "lm_head.weight" in names:
            out["lm_head.weight"] = ex("lm_head.weight")
    else:
        _, ecfg = hf.engine_config(cfg)
        QD, KVD, F = ecfg["n_head"] * ecfg["head_dim"], ecfg["n_kv_head"] * ecfg["head_dim"], ecfg["d_ff"]
        out["model.embed_tokens.weight"] = ex("tok_embd")
        for i in range(L):
            h, s = f"model.layers.{i}.", f"layers.{i}."
            out[h + "input_layernorm.weight"] = ex(s + "attn_norm.weight")
            out[h + "post_attention_layernorm.weight"] = ex(s + "ffn_norm.weight")
            for kind in ("weight", "bias"):
                if s + "qkv." + kind in names:
                    w = ex(s + "qkv." + kind)
                    out[h + "self_attn.q_proj." + kind] = np.ascontiguousarray(w[:QD])
                    out[h + "self_attn.k_proj." + kind] = np.ascontiguousarray(w[QD:QD + KVD])
                    out[h + "self_attn.v_proj." + kind] = np.ascontiguousarray(w[QD + KVD:])
                if s + "proj." + kind in names:
                    out[h + "self_attn.o_proj." + kind] = ex(s + "proj." + kind)
                if s + "up." + kind in names:
                    w = ex(s + "up." + kind)
                    out[h + "mlp.gate_proj." + kind] = np.ascontiguousarray(w[:F])
                    out[h + "mlp.up_proj." + kind] = np.ascontiguousarray(w[F:])
                if s + "down." + kind in names:
                    out[h + "mlp.down_proj." + kind] = ex(s + "down." + kind)
        out["model.norm.weight"] = ex("norm.weight")
        if "lm_head.weight" in names:
            out["lm_head.weight"] = ex("lm_head.weight")
    os.makedirs(out_dir, exist_ok=True)
    save_file(out, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    cfg = dict(cfg)
    cfg["tie_word_embeddings"] = "lm_head.weight" not in names
    cfg["torch_dtype"] = "float32"
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    if src_dir and os.path.isfile(src_dir):  # a GGUF base: its tokenizer from the metadata
        from .gguf import GGUFReader

        write_tokenizer_files(GGUFReader(src_dir).metadata, out_dir)
    elif src_dir:
        for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "generation_config.json", "vocab.txt"):
            if os.path.isfile(os.path.join(src_dir, fn)):
                shutil.copy(os.path.join(src_dir, fn), os.path.join(out_dir, fn))
    return out_dir


def save_adapter(history_or_trainer, out_dir: str, base_model: Optional[str] = None) -> str:
    """Write the LoRA adapter alone: adapter.safetensors (engine names
    layers.N.lora_T.A / .B) and adapter_config.json."""
    from .safetensors import save_file

    tr = getattr(history_or_trainer, "trainer", history_or_trainer)
    if not tr.is_lora:
        raise BadRequestError("this run has no LoRA adapter (lora_rank=0)", param="lora_rank")
    tensors = {n: tr.export(n, False) for n in tr.gradients()}
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "adapter.safetensors"))
    rank = next(iter(tensors.values())).shape[0] if tensors else 0
    targets = sorted({n.split(".lora_")[1].split(".")[0] for n in tensors})
    meta = dict(format="ecomlm-lora", rank=int(rank), scale=tr.lora_scale, targets=targets,
                base_model=base_model or getattr(getattr(history_or_trainer, "model", None), "path", None))
    with open(os.path.join(out_dir, "adapter_config.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return out_dir


def write_tokenizer_files(meta: dict, out_dir: str) -> None:
    """tokenizer.json and tokenizer_config.json (read by ecomlm and by
    transformers) for a GGUF file's byte-level BPE tokenizer."""
    from .tokenizer import _GGUF_PRE, LLAMA3_PATTERN, QWEN2_PATTERN

    g = "tokenizer.ggml."
    if meta.get(g + "model") != "gpt2":
        raise BadRequestError(f"cannot write a tokenizer.json for GGUF tokenizer {meta.get(g + 'model')!r} "
                              "(byte-level BPE only)", param="model")
    tokens, types = meta[g + "tokens"], meta.get(g + "token_type") or [1] * len(meta[g + "tokens"])
    pre, digits = _GGUF_PRE[meta.get(g + "pre", "default")]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": pre == "gpt2"}
    steps = [{"type": "Digits", "individual_digits": True}] if digits else []
    if pre != "gpt2":
        steps.append({"type": "Split", "pattern": {"Regex": {"llama3": LLAMA3_PATTERN, "qwen2": QWEN2_PATTERN}[pre]},
                      "behavior": "Isolated", "invert": False})
    steps.append(byte_level)
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": int(types[i]) == 3} for i, t in enumerate(tokens) if int(types[i]) in (3, 4)]
    data = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": steps} if len(steps) > 1 else steps[0],
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": {t: i for i, t in enumerate(tokens)},
                      "merges": list(meta.get(g + "merges") or [])}}
    name = lambda key: tokens[meta[g + key]] if isinstance(meta.get(g + key), int) else None  # noqa: E731
    conf = {"tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False,
            "model_max_length": 1 << 30, "add_prefix_space": False}
    for key, hkey in (("bos_token_id", "bos_token"), ("eos_token_id", "eos_token"),
                      ("unknown_token_id", "unk_token"), ("padding_token_id", "pad_token")):
        if name(key) is not None:
            conf[hkey] = name(key)
    if g + "add_bos_token" in meta and "bos_token" in conf:
        conf["add_bos_token"] = bool(meta[g + "add_bos_token"])
    if meta.get("tokenizer.chat_template"):
        conf["chat_template"] = meta["tokenizer.chat_template"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(conf, f, ensure_ascii=False, indent=2)


def save_gguf(history_or_trainer, out_path: str, qtype=None, src: Optional[str] = None,
              changed_only: bool = False) -> dict:
    """Write the fine-tuned weights (LoRA merged) as a GGUF file.

    From a GGUF base: every metadata key of the source is copied, the tensors
    come in the source's order, llama q/k rows are permuted back to
    llama.cpp's adjacent-pair order, and each tensor is re-quantised to its
    source type (qtype=None) or, given qtype ("f16", "f32", "q8_0", ...), the
    matrices to that type (with quantize.py's fall-backs) and 1-D tensors F32.
    From a Hugging Face base the merged directory is converted as
    ``ecomlm quantize`` does (qtype default "f32"). Returns {tensor: type name}.

    changed_only (GGUF base): qtype applies only to the tensors the fine-tune
    changed (merged weights not bit-equal to the source's dequantised values);
    every other tensor is copied from the source byte for byte, at its type.
    """
    import shutil

    from .convert import permute_qk
    from .gguf import GGMLType, GGUFReader, GGUFWriter, ValueType, copy_metadata
    from .quantize import _FILE_TYPE, QUANT_TYPES, _target_type, quantize_file

    tr = getattr(history_or_trainer, "trainer", history_or_trainer)
    src = src or history_or_trainer.model.path
    kind, src = model_source(src)
    if qtype is not None and isinstance(qtype, str):
        if qtype.lower() not in QUANT_TYPES:
            raise BadRequestError(f"unknown quantisation type {qtype!r}; choose from {', '.join(QUANT_TYPES)}",
                                  param="qtype")
        qtype = QUANT_TYPES[qtype.lower()]
    if kind == "hf":
        tmp = tempfile.mkdtemp(prefix=".merged-", dir=os.path.dirname(os.path.abspath(out_path)))
        try:
            save_merged(history_or_trainer, tmp, src, getattr(history_or_trainer, "family", None),
                        getattr(history_or_trainer, "hf_config", None))
            return quantize_file(tmp, out_path, GGMLType.F32 if qtype is None else qtype)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    r = GGUFReader(src)
    family, _, ecfg = hf_config_from_gguf(r)
    names = {n for n, _ in tr.slots()}
    where: Dict[str, Tuple[str, int, int, int]] = {}  # gguf tensor -> (slot, first row, rows, q/k heads)
    for slot, srcs in _gguf_plan(family, ecfg, r):
        if slot not in names:
            continue
        row = 0
        for s, heads in srcs:
            n = r.tensor(s).shape[0]
            where[s] = (slot, row, n, heads)
            row += n
    w = GGUFWriter(out_path, alignment=r.alignment)
    copy_metadata(r, w, skip=["general.file_type"] if qtype is not None else [])
    if qtype is not None and not changed_only:
        w.add("general.file_type", _FILE_TYPE.get(qtype, 0), ValueType.UINT32)
    matrix_types: Dict[int, int] = {}  # type -> elements of the 2-D tensors written at it
    cache: Dict[str, np.ndarray] = {}
    written = {}
    for t in r.tensors:
        if t.name not in where:  # a tensor the engine does not train (e.g. rope_freqs): as it was
            w.add_tensor(t.name, r.raw(t.name), t.type, t.shape)
            written[t.name] = _core.type_info(t.type)[0]
            continue
        slot, row, n, heads = where[t.name]
        if slot not in cache:
            cache = {slot: tr.export(slot, True)}  # one fused slot at a time
        arr = np.ascontiguousarray(cache[slot][row:row + n]).reshape(t.shape)
        if heads:
            arr = np.ascontiguousarray(permute_qk(arr, heads))
        if changed_only and np.array_equal(arr, r.dequantize(t.name).reshape(t.shape)):
            w.add_tensor(t.name, r.raw(t.name), t.type, t.shape)  # not trained (or not changed): as it was
            written[t.name] = _core.type_info(t.type)[0]
            if len(t.shape) == 2:
                matrix_types[t.type] = matrix_types.get(t.type, 0) + arr.size
            continue
        target = t.type if qtype is None else (_target_type(t.shape, qtype) if len(t.shape) == 2
                                               else GGMLType.F32)
        if target == GGMLType.F32:
            w.add_tensor(t.name, arr.astype(np.float32))
        elif target == GGMLType.F16:
            w.add_tensor(t.name, arr.astype(np.float16))
        else:
            w.add_tensor(t.name, _core.quantize(np.ascontiguousarray(arr, np.float32), target), target, t.shape)
        written[t.name] = _core.type_info(target)[0]
        if len(t.shape) == 2:
            matrix_types[target] = matrix_types.get(target, 0) + arr.size
    if qtype is not None and changed_only:  # llama.cpp's "mostly" type: the one most weights have
        w.add("general.file_type", _FILE_TYPE.get(max(matrix_types, key=matrix_types.get), 0), ValueType.UINT32)
    w.write()
    return written


def load_adapter(adapter_dir: str, base: Optional[str] = None, n_threads: Optional[int] = None):
    """A Model: the base (adapter_config.json's base_model unless given: a
    directory, GGUF file or registered name) with the LoRA adapter of
    save_adapter merged in at load time (fp32 weights)."""
    from .model import load
    from .safetensors import SafeTensorsFile, to_float32

    cpath = os.path.join(adapter_dir, "adapter_config.json")
    if not os.path.isfile(cpath):
        from ..errors import NotFoundError

        raise NotFoundError(f"no adapter_config.json in {adapter_dir}", param="model")
    with open(cpath, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != "ecomlm-lora":
        raise BadRequestError(f"{cpath}: not an ecomlm LoRA adapter", param="model")
    base = base or meta.get("base_model")
    if not base:
        raise BadRequestError(f"{cpath} names no base_model; pass base=", param="base")
    rank = int(meta["rank"])
    lora = dict(rank=rank, alpha=float(meta["scale"]) * rank, dropout=0.0, targets=list(meta["targets"]), seed=0)
    tr, family, cfg, ecfg = build_trainer(base, lora=lora, n_threads=n_threads)
    st = SafeTensorsFile(os.path.join(adapter_dir, "adapter.safetensors"))
    params = tr.parameters()
    want = set(tr.gradients())
    have = set(st.names())
    if want != have:
        raise BadRequestError(f"adapter tensors do not match the base with rank {rank} on "
                              f"{', '.join(meta['targets'])}: missing {sorted(want - have)[:3]}, "
                              f"unexpected {sorted(have - want)[:3]}", param="model")
    for n in want:
        arr = to_float32(st.raw(n), st.dtype(n))
        if arr.shape != params[n].shape:
            raise BadRequestError(f"adapter tensor {n} has shape {arr.shape}, the base needs {params[n].shape}",
                                  param="model")
        params[n][...] = arr
    model = load(base, n_threads)
    model._core = trainer_to_model(tr, ecfg, model.n_threads)
    model.engine_config = dict(ecfg)
    if hasattr(model, "weight_types"):
        model.weight_types = {}
    model.adapter = adapter_dir
    tr.close()
    return model
