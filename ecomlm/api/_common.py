"""Argument checks shared by the endpoints, with OpenAI's names and codes.

Each endpoint takes its arguments as one dict (the JSON body, or the keyword
arguments of an in-process call), so the HTTP server and the Python API run
exactly the same checks and say exactly the same things."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, Optional

from ..errors import BadRequestError

# accepted and ignored: they change nothing in a local model (or only
# identify the caller), and OpenAI code passes them routinely
IGNORED = frozenset({
    "user", "metadata", "store", "service_tier", "timeout", "request_timeout", "extra_headers", "extra_query",
    "api_key", "api_base", "api_type", "api_version", "organization", "headers", "project",
    "parallel_tool_calls", "prompt_cache_key", "safety_identifier", "reasoning_effort", "verbosity",
})
# sampling knobs OpenAI lacks but local servers (vLLM, llama.cpp) accept
EXTENSIONS = frozenset({"top_k", "min_p", "repetition_penalty"})


def merge_extra_body(kw: Dict[str, Any]) -> Dict[str, Any]:
    """The v1 SDK's extra_body={...}: its keys join the request."""
    extra = kw.pop("extra_body", None)
    if extra:
        if not isinstance(extra, dict):
            raise BadRequestError("extra_body must be a dict", param="extra_body")
        kw.update(extra)
    return kw


def check_known(body: Dict[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    for k in body:
        if k not in allowed and k not in IGNORED and k not in EXTENSIONS:
            raise BadRequestError(f"Unrecognized request argument supplied: {k}", param=k,
                                  code="unknown_parameter")


def given(body: Dict[str, Any], name: str) -> bool:
    return body.get(name) is not None


def boolean(body: Dict[str, Any], name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise BadRequestError(f"{v!r} is not of type 'boolean' - '{name}'", param=name, code="invalid_type")
    return v


def integer(body: Dict[str, Any], name: str, lo: int, hi: Optional[int], default=None) -> Optional[int]:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, float) and v.is_integer() and not math.isinf(v):
        v = int(v)  # JSON clients send 16.0 for 16
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequestError(f"{v!r} is not of type 'integer' - '{name}'", param=name, code="invalid_type")
    if v < lo:
        raise BadRequestError(f"{v} is less than the minimum of {lo} - '{name}'", param=name,
                              code="integer_below_min_value")
    if hi is not None and v > hi:
        raise BadRequestError(f"{v} is greater than the maximum of {hi} - '{name}'", param=name,
                              code="integer_above_max_value")
    return v


def number(body: Dict[str, Any], name: str, lo: float, hi: float, default: float) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadRequestError(f"{v!r} is not of type 'number' - '{name}'", param=name, code="invalid_type")
    if math.isnan(v) or v < lo:
        raise BadRequestError(f"{v} is less than the minimum of {lo} - '{name}'", param=name,
                              code="decimal_below_min_value")
    if v > hi:
        raise BadRequestError(f"{v} is greater than the maximum of {hi} - '{name}'", param=name,
                              code="decimal_above_max_value")
    return float(v)


def sampling(body: Dict[str, Any]) -> Dict[str, Any]:
    """The engine's SamplingParams fields common to completions and chat."""
    p: Dict[str, Any] = dict(
        temperature=number(body, "temperature", 0.0, 2.0, 1.0),
        top_p=number(body, "top_p", 0.0, 1.0, 1.0),
        presence_penalty=number(body, "presence_penalty", -2.0, 2.0, 0.0),
        frequency_penalty=number(body, "frequency_penalty", -2.0, 2.0, 0.0),
        top_k=integer(body, "top_k", 0, None, 0),
        min_p=number(body, "min_p", 0.0, 1.0, 0.0),
        repetition_penalty=number(body, "repetition_penalty", 0.01, 100.0, 1.0),
    )
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BadRequestError(f"{seed!r} is not of type 'integer' - 'seed'", param="seed", code="invalid_type")
        p["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise BadRequestError("stop must be a string or a list of up to 4 strings", param="stop",
                                  code="invalid_type")
        if len(stop) > 4:
            raise BadRequestError(f"{stop!r} is too long - 'stop' (at most 4 sequences)", param="stop")
        stop = [s for s in stop if s]  # OpenAI ignores empty stop strings
        p["stop"] = stop or None
    bias = body.get("logit_bias")
    if bias is not None:
        if not isinstance(bias, dict):
            raise BadRequestError("logit_bias must be an object mapping token ids (as strings) to numbers "
                                  "between -100 and 100", param="logit_bias", code="invalid_type")
        p["logit_bias"] = bias  # keys and values are checked by the engine, against the vocabulary
    return p


def max_tokens(body: Dict[str, Any], names, default: Optional[int], limit: Optional[int]) -> Optional[int]:
    """max_tokens (or max_completion_tokens); None means up to the context."""
    value, which = default, names[0]
    for name in names:
        v = integer(body, name, 1, None, None)
        if v is not None:
            value, which = v, name
    if limit is not None:
        if value is None:
            return limit
        if value > limit:
            raise BadRequestError(f"{which} is too large: {value}. This server allows at most {limit} "
                                  "completion tokens.", param=which, code="integer_above_max_value")
    return value


def context_check(model, n_prompt: int, max_new: Optional[int], param: str, asked: bool) -> None:
    """OpenAI's context_length_exceeded, for the prompt alone or prompt + max_tokens."""
    ctx = model.context_length
    if n_prompt >= ctx:
        raise BadRequestError(f"This model's maximum context length is {ctx} tokens. However, your {param} "
                              f"resulted in {n_prompt} tokens. Please reduce the length of the {param}.",
                              param=param, code="context_length_exceeded")
    if asked and max_new is not None and n_prompt + max_new > ctx:
        raise BadRequestError(f"This model's maximum context length is {ctx} tokens. However, you requested "
                              f"{n_prompt + max_new} tokens ({n_prompt} in the {param}, {max_new} for the "
                              "completion). Please reduce the length of the prompt or the completion.",
                              param="max_tokens", code="context_length_exceeded")


def stream_flags(body: Dict[str, Any]):
    stream = boolean(body, "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise BadRequestError("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                                  param="stream_options")
        if not isinstance(opts, dict):
            raise BadRequestError("stream_options must be an object", param="stream_options", code="invalid_type")
        include_usage = boolean(opts, "include_usage")
        for k in opts:
            if k not in ("include_usage", "include_obfuscation"):
                raise BadRequestError(f"Unrecognized stream_options argument: {k}", param="stream_options")
    return stream, include_usage


class Stream:
    """The chunks of a streamed response; also a context manager. Closing it
    (or leaving the with block) stops the generation."""

    def __init__(self, chunks, source):
        self._chunks = chunks
        self._source = source

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._chunks)

    def cancel(self) -> None:
        """Stop the generation from another thread (the server, when a client goes away)."""
        self._source.cancel()

    def close(self) -> None:
        self._source.cancel()
        self._chunks.close()
        self._source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
