"""/v1/chat/completions: the assistant's reply to a list of messages, rendered
with the model's own chat template."""

from __future__ import annotations

from typing import Any, Dict, List

from ..engine.chat import normalize_messages
from ..errors import BadRequestError
from . import _common as c
from .completions import _json_mode
from .models import DEFAULT_LIMITS, Limits, get_model
from .objects import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage, ChoiceDelta, fingerprint, new_id, now

ALLOWED = {"model", "engine", "deployment_id", "messages", "max_tokens", "max_completion_tokens", "temperature",
           "top_p", "n", "stream", "stream_options", "logprobs", "top_logprobs", "stop", "presence_penalty",
           "frequency_penalty", "logit_bias", "seed", "response_format", "tools", "tool_choice", "functions",
           "function_call", "modalities"}


def create(**kw: Any):
    """``openai.ChatCompletion.create(...)`` / ``client.chat.completions.create(...)``."""
    return create_chat_completion(c.merge_extra_body(kw), DEFAULT_LIMITS)


def _messages(body: Dict[str, Any]) -> List[dict]:
    msgs = body.get("messages")
    if msgs is None:
        raise BadRequestError("you must provide a messages parameter", param="messages",
                              code="missing_required_parameter")
    if not isinstance(msgs, list):
        raise BadRequestError(f"{msgs!r:.60} is not of type 'array' - 'messages'", param="messages",
                              code="invalid_type")
    if not msgs:
        raise BadRequestError("[] is too short - 'messages'", param="messages", code="empty_array")
    out = normalize_messages(msgs)
    for m in out:  # the developer role is the newer name of system
        if m["role"] == "developer":
            m["role"] = "system"
    return out


def _unsupported(body: Dict[str, Any]) -> None:
    for name in ("tools", "functions"):
        if body.get(name):
            raise BadRequestError(f"{name} (function calling) is not supported by ecomlm's local models",
                                  param=name, code="unsupported_parameter")
    for name in ("tool_choice", "function_call"):
        v = body.get(name)
        if v is not None and v not in ("none", "auto"):
            raise BadRequestError(f"{name} is not supported by ecomlm's local models", param=name,
                                  code="unsupported_parameter")
    mods = body.get("modalities")
    if mods is not None and mods != ["text"]:
        raise BadRequestError("only the text modality is supported", param="modalities",
                              code="unsupported_parameter")


def create_chat_completion(body: Dict[str, Any], limits: Limits = DEFAULT_LIMITS):
    """Validate a request body and run it: a ChatCompletion, or a Stream of chunks."""
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object", param=None, code="invalid_type")
    c.check_known(body, ALLOWED)
    _unsupported(body)
    name = body.get("model") or body.get("engine") or body.get("deployment_id")
    model, local = get_model(name, limits)
    messages = _messages(body)
    stream, include_usage = c.stream_flags(body)
    n = c.integer(body, "n", 1, limits.max_n, 1)
    want_lp = c.boolean(body, "logprobs")
    top = c.integer(body, "top_logprobs", 0, 20, None)
    if top is not None and not want_lp:
        raise BadRequestError("logprobs must be set to true when top_logprobs is used", param="top_logprobs",
                              code="invalid_value")
    max_new = c.max_tokens(body, ("max_tokens", "max_completion_tokens"), None, limits.max_tokens)
    params = c.sampling(body)
    rf = body.get("response_format")
    if rf is not None and _json_mode(rf):
        if rf["type"] == "json_object" and not any("json" in m["content"].lower() for m in messages):
            raise BadRequestError("'messages' must contain the word 'json' in some form, to use 'response_format' "
                                  "of type 'json_object'.", param="messages", code="invalid_value")
        params["json_mode"] = True
    ids = model.apply_chat_template(messages)
    c.context_check(model, len(ids), max_new, "messages",
                    c.given(body, "max_tokens") or c.given(body, "max_completion_tokens"))
    if max_new is not None:
        max_new = min(max_new, model.context_length - len(ids))
    params.update(max_tokens=max_new, logprobs=(top or 0) if want_lp else None)
    meta = dict(id=new_id("chatcmpl-"), created=now(), model=name, system_fingerprint=fingerprint(local))
    if stream:
        events = model.stream_completions([ids], n=n, **params)
        return c.Stream(_chunks(events, meta, len(ids), n, want_lp, top or 0, include_usage), events)
    comps = model.complete([ids], n=n, **params)[0]
    choices = [dict(index=comp.index,
                    message=ChatCompletionMessage(role="assistant", content=comp.text, refusal=None),
                    logprobs=dict(content=[_entry(t, top or 0) for t in comp.logprobs or []], refusal=None)
                    if want_lp else None,
                    finish_reason=comp.finish_reason) for comp in comps]
    completion_tokens = sum(comp.completion_tokens for comp in comps)
    return ChatCompletion(id=meta["id"], object="chat.completion", created=meta["created"], model=name,
                          choices=choices,
                          usage=dict(prompt_tokens=len(ids), completion_tokens=completion_tokens,
                                     total_tokens=len(ids) + completion_tokens),
                          system_fingerprint=meta["system_fingerprint"])


def _entry(t, top: int) -> Dict[str, Any]:
    """One token of the chat endpoint's logprobs.content."""
    return dict(token=t.token, logprob=t.logprob, bytes=list(t.token.encode("utf-8")),
                top_logprobs=[dict(token=a, logprob=b, bytes=list(a.encode("utf-8"))) for a, b in t.top[:top]])


def _chunks(events, meta, n_prompt: int, n: int, want_lp: bool, top: int, include_usage: bool):
    def chunk(choices, usage=None):
        d = dict(id=meta["id"], object="chat.completion.chunk", created=meta["created"], model=meta["model"],
                 system_fingerprint=meta["system_fingerprint"], choices=choices)
        if include_usage:
            d["usage"] = usage
        return ChatCompletionChunk(d)

    for i in range(n):  # OpenAI's first chunk of each choice names the role
        yield chunk([dict(index=i, delta=ChoiceDelta(role="assistant", content="", refusal=None), logprobs=None,
                          finish_reason=None)])
    completion_tokens = 0
    for _, i, delta, lp, done in events:
        if done is not None:
            completion_tokens += done.completion_tokens
            yield chunk([dict(index=i, delta=ChoiceDelta(), logprobs=None, finish_reason=done.finish_reason)])
            continue
        lps = dict(content=[_entry(lp, top)], refusal=None) if want_lp and lp is not None else None
        yield chunk([dict(index=i, delta=ChoiceDelta(content=delta), logprobs=lps, finish_reason=None)])
    if include_usage:
        yield chunk([], dict(prompt_tokens=n_prompt, completion_tokens=completion_tokens,
                             total_tokens=n_prompt + completion_tokens))
