"""Model: a loaded network and the verbs a notebook needs (logits, embed).

>>> import ecomlm
>>> with ecomlm.load("path/to/hf-model-dir") as m:
...     m.logits([1, 2, 3]).shape        # (3, vocab)
"""

from __future__ import annotations

import json
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError, NotFoundError
from . import hf

__all__ = ["Model", "load"]


class Model:
    """A network whose weights live in the C engine (read-only once loaded).

    One Model serves many Python threads at once: each call that decodes
    keeps its own KV cache. Use ``close()`` or a ``with`` block to free the
    weights early.
    """

    def __init__(self, core: "_core.Model", family: str, config: dict, engine_config: dict, n_params: int,
                 path: Optional[str] = None, name: Optional[str] = None):
        self._core = core
        self.family = family
        self.config = config
        self.engine_config = engine_config
        self.n_params = n_params
        self.path = path
        self.name = name or (os.path.basename(os.path.normpath(path)) if path else family)
        self.tokenizer = None
        # sentence-transformers truncates at its own max_seq_length (256 for MiniLM)
        self.max_seq_length = _sentence_max_len(path) or engine_config["max_pos"]

    # ---------------------------------------------------------------- basics
    @property
    def n_threads(self) -> int:
        return self._core.n_threads

    @n_threads.setter
    def n_threads(self, n: Optional[int]) -> None:
        self._core.n_threads = n

    @property
    def vocab_size(self) -> int:
        return self.engine_config["vocab"]

    @property
    def context_length(self) -> int:
        return self.engine_config["max_pos"]

    @property
    def dim(self) -> int:
        return self.engine_config["d_model"]

    @property
    def is_encoder(self) -> bool:
        return self.family == "bert"

    def close(self) -> None:
        if getattr(self, "_scheduler", None) is not None:
            self._scheduler.close()
            self._scheduler = None
        self._core.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ecomlm.Model {self.name!r} {self.family} {self.n_params / 1e6:.1f}M params>"

    # ----------------------------------------------------------------- verbs
    def new_cache(self, max_tokens: Optional[int] = None) -> "_core.KVCache":
        """A KV cache for decoding one sequence of up to max_tokens tokens."""
        if self.is_encoder:
            raise BadRequestError("an encoder model has no KV cache", param="model")
        return _core.KVCache(self._core, self.context_length if max_tokens is None else int(max_tokens))

    def forward(self, token_ids, cache, all_logits: bool = False) -> np.ndarray:
        """Append token_ids to `cache` and return logits (T or 1, vocab)."""
        return self._core.forward(token_ids, cache, all_logits)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Next-token logits at every position: float32 array (T, vocab)."""
        if self.is_encoder:
            raise BadRequestError("an encoder (bert) model has no next-token logits; use embed()", param="model")
        ids = _as_ids(token_ids, "token_ids")
        if ids.size > self.context_length:
            raise BadRequestError(f"{ids.size} tokens exceed the model's context length {self.context_length}",
                                  param="token_ids")
        cache = _core.KVCache(self._core, int(ids.size))
        return self._core.forward(ids, cache, True)

    # ------------------------------------------------------------ generation
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise BadRequestError(f"model {self.name!r} has no tokenizer; pass token ids", param="model")
        return self.tokenizer

    def tokenize(self, text, add_special_tokens: bool = True) -> List[int]:
        """Token ids of text with the model's own tokenizer."""
        return self._need_tokenizer().encode(text, add_special_tokens=add_special_tokens)

    def detokenize(self, ids, skip_special_tokens: bool = False) -> str:
        return self._need_tokenizer().decode(ids, skip_special_tokens=skip_special_tokens)

    def stop_token_ids(self) -> Tuple[int, ...]:
        """End-of-text tokens: the tokenizer's eos and the chat end-of-turn tokens."""
        tok = self._need_tokenizer()
        ids = {tok.eos_id} if tok.eos_id is not None else set()
        for name in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>"):
            t = tok.token_to_id(name)
            if t is not None:
                ids.add(t)
        return tuple(sorted(ids))

    def _scheduler_get(self):
        from .generate import Scheduler

        if getattr(self, "_scheduler", None) is None:
            self._need_tokenizer()
            self._scheduler = Scheduler(self)
        return self._scheduler

    def _prompt_ids(self, prompt, what: str = "prompt") -> List[int]:
        if isinstance(prompt, (str, bytes)):
            ids = self.tokenize(prompt)
        else:
            ids = [int(t) for t in _as_ids(prompt, what)]
            if min(ids) < 0 or max(ids) >= self.vocab_size:
                raise BadRequestError(f"{what} holds a token id outside [0, {self.vocab_size})", param=what)
        if not ids:
            raise BadRequestError(f"{what} must not be empty", param=what)
        if len(ids) >= self.context_length:
            raise BadRequestError(f"{what} has {len(ids)} tokens; the model's context length is "
                                  f"{self.context_length}", param=what, code="context_length_exceeded")
        return ids

    def _params(self, kw) -> "SamplingParams":
        from .generate import SamplingParams, validate_params

        unknown = set(kw) - set(SamplingParams.__dataclass_fields__)
        if unknown:
            raise BadRequestError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}",
                                  param=sorted(unknown)[0])
        p = SamplingParams(**kw)
        if not p.stop_token_ids:
            p.stop_token_ids = self.stop_token_ids()
        return validate_params(p, self.vocab_size)

    def complete(self, prompts, n: int = 1, best_of: Optional[int] = None, **params) -> List[List["Completion"]]:
        """Completions of each prompt (str or token ids): a list per prompt of
        n Completion objects. All prompts and choices decode in one batch."""
        from .generate import collect

        if isinstance(prompts, (str, bytes)) or (isinstance(prompts, (list, tuple)) and prompts
                                                   and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise BadRequestError("prompt must be a string, a list of strings or token ids", param="prompt")
        n = _count("n", n, 1, 128)
        best_of = n if best_of is None else _count("best_of", best_of, 1, 128)
        if best_of < n:
            raise BadRequestError(f"best_of ({best_of}) must be >= n ({n})", param="best_of")
        ids = [self._prompt_ids(p) for p in prompts]
        p = self._params(params)
        want_lp = p.logprobs is not None or best_of > n
        if best_of > n and p.logprobs is None:
            p.logprobs = 0
        req = self._scheduler_get().submit(ids, best_of, p, want_lp, stream=False)
        out = collect(req, len(ids))
        if best_of > n:  # OpenAI: the n with the highest log probability per token
            out = [sorted(choices, key=lambda c: -c.mean_logprob)[:n] for choices in out]
            for choices in out:
                for i, c in enumerate(choices):
                    c.index = i
                    if params.get("logprobs") is None:
                        c.logprobs = None
        return out

    def stream(self, prompts, n: int = 1, **params) -> Iterator[tuple]:
        """Yield (prompt_index, index, text_delta, TokenLogprob or None,
        finish_reason or None) as tokens are generated."""
        from .generate import iter_events

        if isinstance(prompts, (str, bytes)) or (isinstance(prompts, (list, tuple)) and prompts
                                                   and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        n = _count("n", n, 1, 128)
        ids = [self._prompt_ids(p) for p in prompts]
        p = self._params(params)
        req = self._scheduler_get().submit(ids, n, p, p.logprobs is not None)
        for ev in iter_events(req):
            if ev[0] == "delta":
                _, s, text, lp = ev
                yield (s.prompt_index, s.index, text, lp, None)
            else:
                s = ev[1]
                yield (s.prompt_index, s.index, "", None, s.finish)

    def stream_completions(self, prompts, n: int = 1, **params) -> "CompletionStream":
        """Validate and start generating now; return an iterator of
        (prompt_index, index, text_delta, TokenLogprob or None, Completion or None).

        Unlike stream(), bad arguments raise here, before anything is
        iterated (a server can still answer 400), and each choice's last
        event carries its whole Completion (finish_reason, token counts)."""
        from .generate import iter_events, to_completion

        if isinstance(prompts, (str, bytes)) or (isinstance(prompts, (list, tuple)) and prompts
                                                   and isinstance(prompts[0], (int, np.integer))):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise BadRequestError("prompt must be a string, a list of strings or token ids", param="prompt")
        n = _count("n", n, 1, 128)
        ids = [self._prompt_ids(p) for p in prompts]
        p = self._params(params)
        req = self._scheduler_get().submit(ids, n, p, p.logprobs is not None)

        def events():
            for ev in iter_events(req):
                if ev[0] == "delta":
                    _, s, text, lp = ev
                    yield (s.prompt_index, s.index, text, lp, None)
                else:
                    s = ev[1]
                    yield (s.prompt_index, s.index, "", None, to_completion(s))

        return CompletionStream(req, events())

    def generate(self, prompt, max_tokens: Optional[int] = 64, **params) -> str:
        """The continuation of one prompt, as text (temperature 0: greedy)."""
        return self.complete(prompt, max_tokens=max_tokens, **params)[0][0].text

    def chat(self, messages, max_tokens: Optional[int] = None, **params) -> str:
        """The assistant's reply to OpenAI-style messages, with the model's chat template."""
        ids = self.apply_chat_template(messages)
        return self.complete([ids], max_tokens=max_tokens, **params)[0][0].text

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> List[int]:
        tok = self._need_tokenizer()
        return tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)

    def embed(self, inputs, attention_mask=None, token_type_ids=None, *, pooling: str = "mean",
              normalize: bool = True, batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings (N, dim), mean-pooled and L2-normalised by default,
        as sentence-transformers computes them.

        `inputs` is a batch of token-id rows (N, T) with `attention_mask`, or a
        list of strings once the model has a tokenizer.
        """
        if not self.is_encoder:
            raise BadRequestError("embed() needs an encoder model such as all-minilm-l6-v2", param="model")
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            if self.tokenizer is None:
                raise BadRequestError("this model has no tokenizer: pass token ids and attention_mask",
                                      param="input")
            out = []
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer.encode_batch(texts[i:i + batch_size], max_length=self.max_seq_length)
                out.append(self._core.embed(enc.input_ids, enc.attention_mask, enc.token_type_ids,
                                            pooling, normalize))
            return np.concatenate(out, axis=0)
        return self._core.embed(inputs, attention_mask, token_type_ids, pooling, normalize)

    def fine_tune(self, train_data, validation_data=None, **kwargs):
        """Fine-tune this model in place (full, or LoRA with lora_rank > 0) on
        OpenAI fine-tuning JSONL; returns the per-step history (a list of
        dicts for pandas.DataFrame). See ecomlm.engine.finetune.fine_tune."""
        from .finetune import fine_tune

        return fine_tune(self, train_data, validation_data, **kwargs)


class CompletionStream:
    """The events of a started generation; dropping or closing it before the
    end cancels the sequences still decoding."""

    def __init__(self, req, events):
        self._req = req
        self._events = events

    def __iter__(self) -> "CompletionStream":
        return self

    def __next__(self) -> tuple:
        return next(self._events)

    def cancel(self) -> None:
        """Stop generating; safe from any thread, even while another waits in next()."""
        self._req.cancelled = True

    def close(self) -> None:
        self._req.cancelled = True
        self._events.close()

    def __del__(self) -> None:
        self._req.cancelled = True


def _sentence_max_len(path: Optional[str]) -> Optional[int]:
    cfg = os.path.join(path, "sentence_bert_config.json") if path and os.path.isdir(path) else None
    if not cfg or not os.path.isfile(cfg):
        return None
    try:
        with open(cfg, encoding="utf-8") as f:
            n = json.load(f).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        return None
    return n if isinstance(n, int) and n > 0 else None


def _count(name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
        raise BadRequestError(f"{name} must be an integer between {lo} and {hi}, got {v!r}", param=name)
    return int(v)


def _as_ids(token_ids, what: str) -> np.ndarray:
    arr = np.asarray(token_ids)
    if arr.ndim != 1:
        raise BadRequestError(f"{what} must be a 1-D sequence of integers, got shape {arr.shape}", param=what)
    if arr.size == 0:
        raise BadRequestError(f"{what} must not be empty", param=what)
    if arr.dtype.kind not in "iu":
        raise BadRequestError(f"{what} must contain integers, got {arr.dtype}", param=what)
    return arr


def load_hf_dir(path: str, n_threads: Optional[int] = None, name: Optional[str] = None) -> Model:
    """Load a Hugging Face model directory (config.json + *.safetensors)."""
    cfg = hf.read_config(path)
    family, ecfg = hf.engine_config(cfg)
    store = hf.TensorStore(hf.safetensors_files(path))
    core = _core.Model(ecfg, n_threads)
    slots = dict(core.slots())
    plan, used = hf.weight_plan(family, cfg, ecfg, store)
    for slot, fetch, transposed in plan:
        if slot not in slots:
            continue  # a bias the engine configuration does not carry
        arr = fetch()
        core.set_tensor(slot, arr, transposed)
    core.finalize()
    n_params = sum(store.numel(n) for n in used)
    return Model(core, family, cfg, ecfg, n_params, path=path, name=name)


def load(path_or_name: str | os.PathLike, n_threads: Optional[int] = None, dequantize: bool = False) -> Model:
    """Load a model: a Hugging Face directory, a GGUF file, a registered name,
    or a LoRA adapter directory (save_adapter's; merged into its base at load).

    n_threads: OpenMP threads per call (default: the cores this process may use).
    dequantize: widen a GGUF model's quantised weights to fp32 (exact, larger).
    """
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise BadRequestError("model must be a path or a model name", param="model")
    path = os.fspath(path_or_name)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")) \
            and os.path.isfile(os.path.join(path, "adapter_config.json")):
        from .finetune import load_adapter  # a LoRA adapter: its base with the adapter merged at load

        return load_adapter(path, n_threads=n_threads)
    if os.path.isdir(path):
        model = load_hf_dir(path, n_threads)
    elif os.path.isfile(path):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ModelFormatError(f"{path} is not a GGUF file (pass a GGUF file or a model directory)",
                                   param="model")
        from .gguf_model import load_gguf

        return load_gguf(path, n_threads, dequantize)
    else:
        from . import registry
        local = registry.resolve(path)
        if local is None:
            raise NotFoundError(f"model '{path}' is neither a directory nor a known model name "
                                f"({', '.join(registry.names())})", param="model")
        model = load(local, n_threads, dequantize)
        model.name = registry.canonical(path)
    _attach_tokenizer(model)
    return model


def _attach_tokenizer(model: Model) -> None:
    """Give a model directory's model the tokenizer beside it (a GGUF model
    brings its own from the metadata)."""
    if model.tokenizer is not None or model.path is None or not os.path.isdir(model.path):
        return
    try:
        from .tokenizer import Tokenizer  # lands with the tokenizer issue
    except ImportError:
        return
    try:
        model.tokenizer = Tokenizer.from_file(model.path)
    except (NotFoundError, FileNotFoundError):
        model.tokenizer = None
