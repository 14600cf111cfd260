"""Text generation: sampling parameters, stop strings, logprobs, JSON mode,
and a scheduler that batches every running sequence of a model into one
pass over the weights per step.

Each Model gets one scheduler thread on first use. Requests (a list of
prompts, n completions each) join the running batch at the next step:
new prompts are prefilled in the same forward call that advances the
sequences already decoding, so concurrent callers share the weights'
memory traffic. n > 1 computes the prompt once and copies its KV cache;
prompts that share a long prefix with a recent one (a system prompt, a
knowledge-base context) reuse that prefix's cache instead of recomputing it.

Determinism: a sequence's logits do not depend on which other sequences
share its batch (the GEMM sums each output in a fixed order), and each
sequence samples from its own seeded generator, so a seed gives the same
text alone, in a batch, and on any thread count.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..errors import APIError, BadRequestError
from .jsonmode import JsonPrefix

__all__ = ["SamplingParams", "Completion", "TokenLogprob", "Scheduler", "validate_params"]

PREFIX_MIN = 16        # shortest prefix worth reusing from another prompt's cache
PREFIX_SLOTS = 4       # prompt caches kept for reuse
HISTORY_TAIL = 256     # prompt tokens that count for the penalties
DIRECT_ATTENTION_ROWS = _core.ATTENTION_DIRECT_ROWS


@dataclass
class SamplingParams:
    max_tokens: Optional[int] = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[Dict[int, float]] = None
    seed: Optional[int] = None
    stop: Optional[List[str]] = None
    logprobs: Optional[int] = None     # None: off; k >= 0: the chosen token's and k alternatives
    echo: bool = False
    json_mode: bool = False
    stop_token_ids: Tuple[int, ...] = ()
    skip_special_tokens: bool = True


def _num(name, v, lo, hi, integer=False, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise BadRequestError(f"{name} must be {'an integer' if integer else 'a number'}, got {v!r}", param=name)
    if not (lo <= v <= hi) or (isinstance(v, float) and math.isnan(v)):
        raise BadRequestError(f"{name} must be between {lo} and {hi}, got {v}", param=name)
    return v


def validate_params(p: SamplingParams, vocab: int) -> SamplingParams:
    """Check every field (OpenAI's ranges); raise BadRequestError naming it."""
    _num("max_tokens", p.max_tokens, 1, 1 << 20, integer=True, allow_none=True)
    _num("temperature", p.temperature, 0.0, 2.0)
    _num("top_p", p.top_p, 0.0, 1.0)
    if p.top_p == 0.0:
        p.top_p = 1e-9  # OpenAI accepts 0: the most likely token only
    _num("top_k", p.top_k, 0, 1 << 24, integer=True)
    _num("min_p", p.min_p, 0.0, 1.0)
    _num("repetition_penalty", p.repetition_penalty, 0.01, 100.0)
    _num("presence_penalty", p.presence_penalty, -2.0, 2.0)
    _num("frequency_penalty", p.frequency_penalty, -2.0, 2.0)
    if p.seed is not None:
        if isinstance(p.seed, bool) or not isinstance(p.seed, int):
            raise BadRequestError(f"seed must be an integer, got {p.seed!r}", param="seed")
        p.seed &= (1 << 64) - 1
    if p.logprobs is not None:
        _num("logprobs", p.logprobs, 0, 20, integer=True)
    if p.stop is not None:
        stops = [p.stop] if isinstance(p.stop, str) else p.stop
        if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops):
            raise BadRequestError("stop must be a string or a list of strings", param="stop")
        if len(stops) > 4:
            raise BadRequestError(f"stop may hold at most 4 sequences, got {len(stops)}", param="stop")
        if any(s == "" for s in stops):
            raise BadRequestError("stop sequences must not be empty", param="stop")
        p.stop = list(stops) or None
    if p.logit_bias is not None:
        if not isinstance(p.logit_bias, dict):
            raise BadRequestError("logit_bias must map token ids to numbers", param="logit_bias")
        bias = {}
        for k, v in p.logit_bias.items():
            try:
                tid = int(k)
            except (TypeError, ValueError):
                raise BadRequestError(f"logit_bias key {k!r} is not a token id", param="logit_bias") from None
            if not 0 <= tid < vocab:
                raise BadRequestError(f"logit_bias token {tid} is out of range [0, {vocab})", param="logit_bias")
            _num("logit_bias", v, -100, 100)
            bias[tid] = float(v)
        p.logit_bias = bias or None
    return p


@dataclass
class TokenLogprob:
    token: str
    token_id: int
    logprob: Optional[float]
    top: List[Tuple[str, float]] = field(default_factory=list)
    offset: int = 0  # character offset of this token in the returned text


@dataclass
class Completion:
    """One generated continuation."""
    text: str
    token_ids: List[int]
    finish_reason: str                 # "stop" or "length"
    prompt_index: int = 0
    index: int = 0
    logprobs: Optional[List[TokenLogprob]] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_logprobs: Optional[List[TokenLogprob]] = None  # echo with logprobs

    @property
    def mean_logprob(self) -> float:
        lps = [t.logprob for t in (self.logprobs or []) if t.logprob is not None]
        return float(np.mean(lps)) if lps else 0.0


# ------------------------------------------------------------------ internals

class _Request:
    def __init__(self, prompts: List[List[int]], n: int, params: SamplingParams, tokenizer, want_logprobs: bool,
                 stream: bool = True):
        self.prompts = prompts
        self.stream = stream  # False: no per-token "delta" events (the caller waits for "finish")
        self.n = n
        self.params = params
        self.tokenizer = tokenizer
        self.want_logprobs = want_logprobs
        self.events: "queue.Queue" = queue.Queue()
        self.cancelled = False
        self.remaining = len(prompts) * n


class _Seq:
    """One sequence being decoded."""

    def __init__(self, req: _Request, prompt_index: int, index: int, vocab: int):
        p = req.params
        self.req, self.prompt_index, self.index = req, prompt_index, index
        self.prompt = req.prompts[prompt_index]
        seed = p.seed if p.seed is not None else int.from_bytes(np.random.bytes(8), "little")
        # distinct, reproducible streams for the n choices of one seed; a
        # prompt's text does not depend on which other prompts share the call
        self.sampler = _core.Sampler(vocab, (seed + 0x9E3779B97F4A7C15 * index) % (1 << 64),
                                     p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty,
                                     p.presence_penalty, p.frequency_penalty, p.logit_bias)
        self.cache = None
        self.tokens: List[int] = []
        self.decoder = req.tokenizer.stream(skip_special_tokens=p.skip_special_tokens)
        self.text = ""        # decoded so far (before stop truncation)
        self.emitted = 0      # characters of text already sent
        self.logprobs: List[TokenLogprob] = []
        self.json = JsonPrefix() if p.json_mode else None
        self.finish: Optional[str] = None
        self.pending: Optional[int] = None  # sampled token not yet fed to the model
        self.prompt_logprobs: Optional[List[TokenLogprob]] = None

    def history(self) -> np.ndarray:
        tail = self.prompt[-HISTORY_TAIL:]
        return np.asarray(tail + self.tokens, dtype=np.int32)


class Scheduler:
    """Runs every request of one model in a single batched decode loop."""

    def __init__(self, model):
        self.model = model
        self.tokenizer = model.tokenizer
        self.vocab = model.vocab_size
        self.context = model.context_length
        self._inbox: "queue.Queue" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._closed = False
        self._prefixes: List[Tuple[Tuple[int, ...], Any]] = []  # (ids, cache), most recent last
        self.max_batch = 64
        self._admitted: List[_Request] = []  # taken from the queue in the current step

    # -------------------------------------------------------------- public
    def submit(self, prompts: List[List[int]], n: int, params: SamplingParams, want_logprobs: bool,
               stream: bool = True) -> _Request:
        req = _Request(prompts, n, params, self.tokenizer, want_logprobs, stream)
        with self._lock:
            if self._closed:
                raise APIError("the model is closed")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ecomlm-scheduler", daemon=True)
                self._thread.start()
        self._inbox.put(req)
        return req

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._prefixes.clear()

    # ------------------------------------------------------------- the loop
    def _loop(self) -> None:
        active: List[_Seq] = []
        waiting: List[_Request] = []
        while True:
            try:
                block = not active and not waiting
                item = self._inbox.get(block=block)
                while True:
                    if item is None:
                        self._fail_all(active, waiting, APIError("the model was closed"))
                        return
                    waiting.append(item)
                    item = self._inbox.get_nowait()
            except queue.Empty:
                pass
            active = [s for s in active if not (s.req.cancelled and self._finish(s, "stop", silent=True))]
            try:
                active = self._step(active, waiting)
            except Exception as e:  # noqa: BLE001 - delivered to the callers, never lost
                err = e if isinstance(e, (BadRequestError, APIError)) else APIError(f"generation failed: {e}")
                # requests taken from `waiting` this step are in neither list yet
                self._fail_all(active, waiting + self._admitted, err)
                active, waiting = [], []

    def _fail_all(self, active, waiting, err) -> None:
        seen = set()
        for r in [s.req for s in active] + waiting:
            if id(r) not in seen:
                seen.add(id(r))
                r.events.put(("error", err))

    def _cache_for(self, n_tokens: int, max_new: Optional[int]):
        want = n_tokens + (max_new if max_new is not None else 256)
        return self.model.new_cache(min(self.context, max(want, n_tokens + 1)))

    def _grow(self, s: _Seq) -> bool:
        """Give a full cache more room (doubling, up to the context)."""
        cap = s.cache.max_tokens
        if cap >= self.context:
            return False
        bigger = self.model.new_cache(min(self.context, cap * 2))
        bigger.copy_from(s.cache)
        s.cache = bigger
        return True

    def _best_prefix(self, ids: List[int]):
        best, best_len = None, 0
        for key, cache in self._prefixes:
            n = 0
            # keep > 8 tokens to compute: attention takes its row path for <= 8
            # query rows and its GEMM path above, which round differently, so a
            # prompt's logits must not depend on how much of it was cached
            lim = min(len(key), len(ids) - (DIRECT_ATTENTION_ROWS + 1))
            while n < lim and key[n] == ids[n]:
                n += 1
            if n > best_len:
                best, best_len = cache, n
        return (best, best_len) if best_len >= PREFIX_MIN else (None, 0)

    def _remember_prefix(self, ids: List[int], cache) -> None:
        if len(ids) < PREFIX_MIN:
            return
        key = tuple(ids)
        self._prefixes = [(k, c) for k, c in self._prefixes if k != key]
        keep = self.model.new_cache(len(ids))
        keep.copy_from(cache, len(ids))
        self._prefixes.append((key, keep))
        del self._prefixes[:-PREFIX_SLOTS]

    def _admit(self, waiting: List[_Request], room: int):
        """Start the prompts of waiting requests: (leaders to prefill, rows)."""
        leaders = []
        self._admitted = []
        while waiting and room > 0:
            req = waiting[0]
            if req.cancelled:
                waiting.pop(0)
                req.events.put(("done", None))
                continue
            if len(req.prompts) * req.n > room and leaders:
                break
            waiting.pop(0)
            self._admitted.append(req)
            room -= len(req.prompts) * req.n
            for pi, ids in enumerate(req.prompts):
                group = [_Seq(req, pi, i, self.vocab) for i in range(req.n)]
                leader = group[0]
                leader.cache = self._cache_for(len(ids), req.params.max_tokens)
                cached, n_reuse = self._best_prefix(ids)
                if cached is not None:
                    leader.cache.copy_from(cached, n_reuse)
                leaders.append((leader, group, ids[n_reuse:]))
        return leaders

    def _step(self, active: List[_Seq], waiting: List[_Request]) -> List[_Seq]:
        self._admitted = []
        leaders = self._admit(waiting, self.max_batch - len(active)) if waiting else []
        # echo + logprobs needs the prompt's own logits: prefill those alone
        batch_ids, batch_caches, rows = [], [], []
        for leader, group, todo in leaders:
            if leader.req.params.echo and leader.req.params.logprobs is not None:
                logits = self.model.forward(todo, leader.cache, all_logits=True)
                self._prompt_logprobs(group, logits)
                self._start_group(leader, group, logits[-1])
                active.extend(s for s in group if s.finish is None)
                continue
            batch_ids.append(todo)
            batch_caches.append(leader.cache)
            rows.append(("prefill", leader, group))
        for s in active:
            if s.cache.n_past >= s.cache.max_tokens and not self._grow(s):
                self._finish(s, "length")
                continue
            batch_ids.append([s.pending])
            batch_caches.append(s.cache)
            rows.append(("decode", s, None))
        if not rows:
            return [s for s in active if s.finish is None]
        logits = self.model._core.forward_batch(batch_ids, batch_caches, False)
        for (kind, s, group), row in zip(rows, logits):
            if kind == "prefill":
                self._remember_prefix(s.prompt, s.cache)
                self._start_group(s, group, row)
                active.extend(x for x in group if x.finish is None)
            else:
                self._advance(s, row)
        return [s for s in active if s.finish is None]

    def _start_group(self, leader: _Seq, group: List[_Seq], row: np.ndarray) -> None:
        for s in group[1:]:
            s.cache = self.model.new_cache(leader.cache.max_tokens)
            s.cache.copy_from(leader.cache)
        for s in group:
            self._advance(s, row)

    def _prompt_logprobs(self, group: List[_Seq], logits: np.ndarray) -> None:
        """Echo with logprobs: the prompt's tokens scored by the model."""
        leader = group[0]
        ids = leader.prompt
        k = leader.req.params.logprobs or 0
        lps = [TokenLogprob(self.tokenizer.decode([ids[0]]), ids[0], None)]
        for t in range(1, len(ids)):
            row = logits[t - 1]
            sampler = _core.Sampler(self.vocab, 0, 0.0)
            _, _, tid, tlp = sampler.sample(row, None, k)
            z = _logsumexp(row)
            lps.append(TokenLogprob(self.tokenizer.decode([ids[t]]), ids[t], float(row[ids[t]] - z),
                                    [(self.tokenizer.decode([int(a)]), float(b)) for a, b in zip(tid, tlp)]))
        for s in group:
            s.prompt_logprobs = lps

    def _sample(self, s: _Seq, row: np.ndarray):
        p = s.req.params
        k = p.logprobs or 0
        stop_ids = p.stop_token_ids
        if s.json is None:
            return s.sampler.sample(row, s.history(), k)
        banned: List[int] = [] if s.json.complete else list(stop_ids)
        for _ in range(64):
            tok, lp, tid, tlp = s.sampler.sample(row, s.history(), k, np.asarray(banned, dtype=np.int32) if banned else None)
            if tok in stop_ids and s.json.complete:
                return tok, lp, tid, tlp
            piece = self.tokenizer.decode([tok])
            if tok not in stop_ids and s.json.copy().feed(piece):
                return tok, lp, tid, tlp
            banned.append(tok)
        # the sampler keeps proposing invalid tokens: take the likeliest valid one
        for tok in np.argsort(-row)[:4096]:
            tok = int(tok)
            if tok in stop_ids:
                continue
            if s.json.copy().feed(self.tokenizer.decode([tok])):
                z = _logsumexp(row)
                return tok, float(row[tok] - z), tid, tlp
        raise APIError("JSON mode found no valid continuation")

    def _advance(self, s: _Seq, row: np.ndarray) -> None:
        """Sample the next token from row and handle stops and events."""
        p = s.req.params
        tok, lp, tid, tlp = self._sample(s, row)
        if tok in p.stop_token_ids:
            self._finish(s, "stop")
            return
        s.tokens.append(tok)
        s.pending = tok
        piece = s.decoder.add(tok)
        if s.json is not None:
            s.json.feed(self.tokenizer.decode([tok]))
        offset = len(s.text)
        s.text += piece
        if s.req.want_logprobs:
            s.logprobs.append(TokenLogprob(self.tokenizer.decode([tok]), tok, lp,
                                           [(self.tokenizer.decode([int(a)]), float(b)) for a, b in zip(tid, tlp)],
                                           offset))
        if p.stop:
            stop_at = _find_stop(s.text, p.stop, max(0, s.emitted - max(map(len, p.stop))))
            if stop_at is not None:
                s.text = s.text[:stop_at]
                self._finish(s, "stop", flush=False)
                return
        if s.json is not None and s.json.complete:
            self._finish(s, "stop")
            return
        limit = p.max_tokens if p.max_tokens is not None else self.context
        if len(s.tokens) >= limit or len(s.prompt) + len(s.tokens) >= self.context:
            self._finish(s, "length")
            return
        hold = _holdback(s.text, p.stop) if p.stop else 0
        upto = len(s.text) - hold
        if upto > s.emitted:
            if s.req.stream:
                s.req.events.put(("delta", s, s.text[s.emitted:upto], s.logprobs[-1] if s.req.want_logprobs else None))
            s.emitted = upto

    def _finish(self, s: _Seq, reason: str, silent: bool = False, flush: bool = True) -> bool:
        if s.finish is not None:
            return True
        if flush:  # an unfinished UTF-8 character shows as U+FFFD, as decode() does
            s.text += s.decoder.flush()
        s.finish = reason
        if not silent:
            if len(s.text) > s.emitted:
                if s.req.stream:
                    s.req.events.put(("delta", s, s.text[s.emitted:], None))
                s.emitted = len(s.text)
            s.req.events.put(("finish", s))
        s.req.remaining -= 1
        if s.req.remaining == 0:
            s.req.events.put(("done", None))
        s.cache = None
        return True


def _logsumexp(row: np.ndarray) -> float:
    m = float(np.max(row))
    return m + math.log(float(np.sum(np.exp(row.astype(np.float64) - m))))


def _find_stop(text: str, stops: Sequence[str], start: int) -> Optional[int]:
    best = None
    for st in stops:
        i = text.find(st, start)
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def _holdback(text: str, stops: Sequence[str]) -> int:
    """Characters at the end of text that could begin a stop string."""
    hold = 0
    for st in stops:
        for k in range(min(len(st) - 1, len(text)), 0, -1):
            if text.endswith(st[:k]):
                hold = max(hold, k)
                break
    return hold


# ------------------------------------------------------------- caller side

def collect(req: _Request, n_prompts: int) -> List[List[Completion]]:
    """Wait for a request and return completions [prompt][choice]."""
    out: List[List[Optional[Completion]]] = [[None] * req.n for _ in range(n_prompts)]
    for kind, *rest in iter_events(req):
        if kind == "finish":
            s = rest[0]
            out[s.prompt_index][s.index] = to_completion(s)
    return out  # type: ignore[return-value]


def iter_events(req: _Request) -> Iterator[tuple]:
    """Yield ("delta", seq, text, logprob) and ("finish", seq) until done;
    raise the request's error if it failed."""
    try:
        while True:
            ev = req.events.get()
            if ev[0] == "done":
                return
            if ev[0] == "error":
                raise ev[1]
            yield ev
    finally:
        req.cancelled = True  # an abandoned stream frees its sequences


def to_completion(s: _Seq) -> Completion:
    text = s.text
    lps = s.logprobs if s.req.want_logprobs else None
    if lps is not None:
        lps = [t for t in lps if t.offset < len(text) or not text]
    return Completion(text=text, token_ids=list(s.tokens), finish_reason=s.finish or "stop",
                      prompt_index=s.prompt_index, index=s.index, logprobs=lps,
                      prompt_tokens=len(s.prompt), completion_tokens=len(s.tokens),
                      prompt_logprobs=s.prompt_logprobs)
