"""/v1/completions: text completion of one or more prompts (OpenAI's legacy
endpoint, which 2022 code calls as ``openai.Completion.create``)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import BadRequestError
from . import _common as c
from .models import DEFAULT_LIMITS, Limits, get_model
from .objects import Completion, fingerprint, new_id, now

ALLOWED = {"model", "engine", "deployment_id", "prompt", "suffix", "max_tokens", "temperature", "top_p", "n",
           "stream", "stream_options", "logprobs", "echo", "stop", "presence_penalty", "frequency_penalty",
           "best_of", "logit_bias", "seed", "response_format"}


def create(**kw: Any):
    """``openai.Completion.create(...)`` / ``client.completions.create(...)``."""
    return create_completion(c.merge_extra_body(kw), DEFAULT_LIMITS)


def _prompts(model, prompt) -> List:
    """OpenAI's four prompt forms, as a list of (str or token-id list)."""
    if prompt is None:
        raise BadRequestError("you must provide a prompt parameter", param="prompt", code="missing_required_parameter")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            return [list(prompt)]
        if all(isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p)
               for p in prompt):
            return [list(p) for p in prompt]
    raise BadRequestError("prompt must be a string, a list of strings, a list of token ids or a list of "
                          "token-id lists (none of them empty)", param="prompt", code="invalid_type")


def _ids(model, p) -> List[int]:
    if isinstance(p, str):
        ids = model.tokenize(p)
        if not ids:  # "" : OpenAI starts from <|endoftext|>; so do we, from the tokenizer's bos or eos
            tok = model.tokenizer
            start = tok.bos_id if tok.bos_id is not None else tok.eos_id
            ids = [start if start is not None else 0]
        return ids
    vocab = model.vocab_size
    if min(p) < 0 or max(p) >= vocab:
        raise BadRequestError(f"prompt holds a token id outside [0, {vocab})", param="prompt", code="invalid_value")
    return p


def create_completion(body: Dict[str, Any], limits: Limits = DEFAULT_LIMITS):
    """Validate a request body and run it: a Completion, or a Stream of Completion chunks."""
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object", param=None, code="invalid_type")
    c.check_known(body, ALLOWED)
    if body.get("suffix") is not None:
        raise BadRequestError("suffix is not supported: ecomlm's models complete left to right only "
                              "(put the text after the gap into the prompt instead)", param="suffix",
                              code="unsupported_parameter")
    name = body.get("model") or body.get("engine") or body.get("deployment_id")
    model, local = get_model(name, limits)
    stream, include_usage = c.stream_flags(body)
    n = c.integer(body, "n", 1, limits.max_n, 1)
    best_of = c.integer(body, "best_of", 1, limits.max_n, None)
    if best_of is not None and best_of < n:
        raise BadRequestError(f"best_of must be greater than or equal to n (got best_of={best_of}, n={n})",
                              param="best_of", code="invalid_value")
    if stream and best_of is not None and best_of > n:
        raise BadRequestError("best_of cannot be used with stream", param="best_of", code="invalid_value")
    logprobs = c.integer(body, "logprobs", 0, 5, None)
    echo = c.boolean(body, "echo")
    max_new = c.max_tokens(body, ("max_tokens",), 16, limits.max_tokens)
    params = c.sampling(body)
    rf = body.get("response_format")
    if rf is not None:
        params["json_mode"] = _json_mode(rf)
    prompts = _prompts(model, body.get("prompt"))
    if len(prompts) * max(n, best_of or n) > 256:
        raise BadRequestError("too many completions in one request (prompts x best_of > 256)", param="prompt")
    ids = [_ids(model, p) for p in prompts]
    for x in ids:
        c.context_check(model, len(x), max_new, "prompt", c.given(body, "max_tokens"))
    texts = [p if isinstance(p, str) else model.detokenize(p) for p in prompts]
    params.update(max_tokens=max_new, logprobs=logprobs, echo=echo)
    meta = dict(id=new_id("cmpl-"), created=now(), model=name, system_fingerprint=fingerprint(local))
    if stream:
        events = model.stream_completions(ids, n=n, **params)
        return c.Stream(_chunks(events, meta, ids, texts, n, echo, logprobs, include_usage), events)
    results = model.complete(ids, n=n, best_of=best_of, **params)
    choices, completion_tokens = [], 0
    for pi, comps in enumerate(results):
        for comp in comps:
            completion_tokens += comp.completion_tokens
            text = (texts[pi] if echo else "") + comp.text
            choices.append(dict(text=text, index=pi * n + comp.index,
                                logprobs=_logprobs(comp, texts[pi], echo) if logprobs is not None else None,
                                finish_reason=comp.finish_reason))
    prompt_tokens = sum(len(x) for x in ids)
    return Completion(id=meta["id"], object="text_completion", created=meta["created"], model=name,
                      choices=choices, usage=dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                                  total_tokens=prompt_tokens + completion_tokens),
                      system_fingerprint=meta["system_fingerprint"])


def _json_mode(rf) -> bool:
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise BadRequestError("response_format must be {'type': 'text'}, {'type': 'json_object'} or "
                              "{'type': 'json_schema', ...}", param="response_format", code="invalid_value")
    return rf["type"] != "text"


def _lp_block(lps, base: int) -> Dict[str, list]:
    """The completions endpoint's logprobs object for a run of tokens."""
    return dict(tokens=[t.token for t in lps], token_logprobs=[t.logprob for t in lps],
                top_logprobs=[None if t.logprob is None else {a: b for a, b in t.top} for t in lps],
                text_offset=[base + t.offset for t in lps])


def _logprobs(comp, prompt_text: str, echo: bool) -> Dict[str, list]:
    lps = list(comp.logprobs or [])
    if not echo:
        return _lp_block(lps, 0)
    head = []
    off = 0
    for t in comp.prompt_logprobs or []:  # echo: the prompt's own tokens first
        head.append(type(t)(t.token, t.token_id, t.logprob, t.top, off))
        off += len(t.token)
    a, b = _lp_block(head, 0), _lp_block(lps, len(prompt_text))
    return {k: a[k] + b[k] for k in a}


def _chunks(events, meta, ids, texts, n, echo, logprobs, include_usage):
    def chunk(choices, usage=None):
        d = dict(id=meta["id"], object="text_completion", created=meta["created"], model=meta["model"],
                 choices=choices, system_fingerprint=meta["system_fingerprint"])
        if include_usage:
            d["usage"] = usage
        return Completion(d)

    offsets: Dict[int, int] = {}
    if echo:
        for pi, t in enumerate(texts):
            for i in range(n):
                offsets[pi * n + i] = len(t)
                yield chunk([dict(text=t, index=pi * n + i, logprobs=None, finish_reason=None)])
    completion_tokens = 0
    for pi, i, delta, lp, done in events:
        index = pi * n + i
        if done is not None:
            completion_tokens += done.completion_tokens
            yield chunk([dict(text="", index=index, logprobs=None, finish_reason=done.finish_reason)])
            continue
        block = None
        if logprobs is not None and lp is not None:
            block = _lp_block([lp], offsets.get(index, 0) - lp.offset)
            block["text_offset"] = [offsets.get(index, 0)]
        offsets[index] = offsets.get(index, 0) + len(delta)
        yield chunk([dict(text=delta, index=index, logprobs=block, finish_reason=None)])
    if include_usage:
        prompt_tokens = sum(len(x) for x in ids)
        yield chunk([], dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                             total_tokens=prompt_tokens + completion_tokens))
