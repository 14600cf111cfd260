"""Chat templates: turn OpenAI-style messages into the prompt a model was tuned on.

A model brings its own Jinja template (``tokenizer.chat_template`` in GGUF,
``chat_template`` in tokenizer_config.json); it is rendered the way
``transformers`` renders it: a sandboxed Jinja environment with
``trim_blocks`` and ``lstrip_blocks``, the variables ``messages``,
``add_generation_prompt``, ``bos_token``, ``eos_token``, and the helpers
``raise_exception`` and ``strftime_now``.

Fallback: a model without a template gets ChatML (:data:`CHATML_TEMPLATE`),
the format SmolLM2 and Qwen use::

    <|im_start|>system
    You are ...<|im_end|>
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, Iterable, Mapping

from ..errors import BadRequestError, ModelFormatError

__all__ = ["CHATML_TEMPLATE", "render_chat_template", "normalize_messages"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_ROLES = {"system", "user", "assistant", "tool", "function", "developer"}


def normalize_messages(messages: Any) -> list[dict]:
    """Check OpenAI-style messages and return plain dicts with str content.

    ``content`` may be a string, None (an assistant turn that only calls
    tools) or a list of parts ``{"type": "text", "text": ...}`` whose texts
    are joined.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Iterable):
        raise BadRequestError("messages must be a list of {'role': ..., 'content': ...} dicts",
                              param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise BadRequestError(f"messages[{i}] must be a dict with 'role' and 'content'",
                                  param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise BadRequestError(
                f"messages[{i}].role must be one of {sorted(_ROLES)}, got {role!r}",
                param=f"messages[{i}].role")
        content = m.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, Mapping) and part.get("type") == "text" and isinstance(
                        part.get("text"), str):
                    parts.append(part["text"])
                else:
                    raise BadRequestError(
                        f"messages[{i}].content[{j}] must be a text part "
                        "({'type': 'text', 'text': ...})", param=f"messages[{i}].content")
            content = "".join(parts)
        elif not isinstance(content, str):
            raise BadRequestError(f"messages[{i}].content must be a string",
                                  param=f"messages[{i}].content")
        d = dict(m)
        d["content"] = content
        out.append(d)
    return out


def _raise(message: str):
    raise BadRequestError(f"chat template: {message}", param="messages")


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    try:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 is a dependency
        raise ModelFormatError("chat templates need the jinja2 package") from e

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        import json
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.TemplateError as e:
        raise ModelFormatError(f"the model's chat template does not parse: {e}") from e


def render_chat_template(template: str | None, messages: Any, add_generation_prompt: bool = True,
                         bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render ``messages`` with ``template`` (ChatML when None or empty)."""
    msgs = normalize_messages(messages)
    tmpl = _compile(template or CHATML_TEMPLATE)
    try:
        import jinja2
        return tmpl.render(messages=msgs, add_generation_prompt=bool(add_generation_prompt),
                           bos_token=bos_token, eos_token=eos_token, **extra)
    except BadRequestError:
        raise
    except jinja2.TemplateError as e:
        raise ModelFormatError(f"the model's chat template failed: {e}") from e
