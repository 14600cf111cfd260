"""One suite of OpenAI v1 calls, run twice: in process against
``ecomlm.OpenAI()`` (tests/test_api.py) and over HTTP by the official ``openai``
SDK pointed at ``ecomlm serve`` (tests/test_server.py). Each of those modules
imports these tests and supplies the ``client`` fixture.

The real default models answer (SmolLM2-135M-Instruct Q4_1 and MiniLM), with
few tokens per call so the suite stays quick on a busy machine.
"""

import json

import numpy as np
import pytest

CHAT = "gpt-3.5-turbo"
TEXT = "text-davinci-002"
EMBED = "text-embedding-ada-002"
HELLO = [{"role": "system", "content": "You are a shop assistant."},
         {"role": "user", "content": "Which shoes are good for running?"}]


def expect_error(fn, status, param=None, code=None):
    """The call fails with an OpenAI-style error: HTTP status, body param and code."""
    with pytest.raises(Exception) as info:
        fn()
    e = info.value
    assert getattr(e, "status_code", None) == status, (type(e), e)
    body = e.body if isinstance(e.body, dict) else {}
    body = body.get("error", body)
    assert isinstance(body.get("message"), str) and body["message"]
    assert body.get("type") == "invalid_request_error"
    if param is not None:
        assert body.get("param") == param, body
    if code is not None:
        assert body.get("code") == code, body
    return e


def test_completion_shape_and_usage(client):
    r = client.completions.create(model=TEXT, prompt="The best running shoes are", max_tokens=6, temperature=0)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == TEXT
    assert isinstance(r.created, int) and r.system_fingerprint.startswith("fp_")
    (ch,) = r.choices
    assert ch.index == 0 and isinstance(ch.text, str) and ch.text
    assert ch.finish_reason in ("length", "stop") and ch.logprobs is None
    assert r.usage.prompt_tokens == 5 and 1 <= r.usage.completion_tokens <= 6
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_prompt_forms_and_n(client):
    r = client.completions.create(model=TEXT, prompt=["Red shoes are", "Blue shirts are"], max_tokens=3, n=2,
                                  temperature=1.0, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]
    ids = client.completions.create(model=TEXT, prompt=[[504, 1345, 314]], max_tokens=2, temperature=0)
    assert ids.usage.prompt_tokens == 3 and ids.choices[0].text


def test_chat_shape(client):
    r = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=8, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == CHAT
    (ch,) = r.choices
    assert ch.message.role == "assistant" and isinstance(ch.message.content, str) and ch.message.content
    assert ch.finish_reason in ("stop", "length") and ch.logprobs is None
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 10


def test_chat_content_parts_and_developer_role(client):
    msgs = [{"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}]
    r = client.chat.completions.create(model=CHAT, messages=msgs, max_tokens=3, temperature=0)
    assert r.choices[0].message.content


def test_chat_stream_matches_non_stream(client):
    kw = dict(model=CHAT, messages=HELLO, max_tokens=8, temperature=0)
    whole = client.chat.completions.create(**kw).choices[0]
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole_tokens(whole, chunks)


def whole_tokens(whole, chunks):
    return chunks[-1].usage.total_tokens - chunks[-1].usage.prompt_tokens


def test_completion_stream_matches_non_stream(client):
    kw = dict(model=TEXT, prompt="Our return policy is", max_tokens=6, temperature=0)
    whole = client.completions.create(**kw).choices[0].text
    parts = [c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices]
    assert "".join(parts) == whole


def test_chat_n_and_seed(client):
    kw = dict(model=CHAT, messages=HELLO, max_tokens=6, temperature=1.0, seed=42, n=3)
    a = client.chat.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    b = client.chat.completions.create(**kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1  # the n choices are distinct samples


def test_stop_strings(client):
    kw = dict(model=TEXT, prompt="List three colours: red, green,", max_tokens=10, temperature=0)
    full = client.completions.create(**kw).choices[0].text
    cut = full.strip()[:4][-2:]  # a piece of the greedy text, so the stop is certain to fire
    r = client.completions.create(stop=[cut, "zzzz"], **kw).choices[0]
    assert r.finish_reason == "stop" and cut not in r.text and full.startswith(r.text)
    none = client.completions.create(stop=None, **kw).choices[0]
    assert none.text == full


def test_completion_logprobs(client):
    r = client.completions.create(model=TEXT, prompt="Fast shipping and", max_tokens=4, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert len(lp.tokens) == r.usage.completion_tokens
    assert "".join(lp.tokens) == r.choices[0].text
    for tok, p, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert p <= 0 and len(top) <= 2 and max(top.values()) == pytest.approx(p, abs=1e-4)  # greedy: the top one
    assert lp.text_offset == sorted(lp.text_offset)


def test_echo_with_logprobs(client):
    prompt = "Fast shipping and"
    r = client.completions.create(model=TEXT, prompt=prompt, max_tokens=3, temperature=0, echo=True, logprobs=1)
    ch = r.choices[0]
    assert ch.text.startswith(prompt) and len(ch.text) > len(prompt)
    lp = ch.logprobs
    assert len(lp.tokens) == r.usage.prompt_tokens + r.usage.completion_tokens
    assert lp.token_logprobs[0] is None and all(p <= 0 for p in lp.token_logprobs[1:])
    assert "".join(lp.tokens) == ch.text and lp.text_offset[0] == 0


def test_logit_bias_string_keys(client):
    r = client.completions.create(model=TEXT, prompt="Hello", max_tokens=3, temperature=0, logprobs=0,
                                  logit_bias={"504": 100})
    toks = r.choices[0].logprobs.tokens
    assert len(toks) == 3 and len(set(toks)) == 1  # token 504, forced three times


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=4, temperature=0, logprobs=True,
                                       top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 3 and t.bytes == list(t.token.encode())
        assert t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-4)


def test_json_mode(client):
    msgs = [{"role": "user", "content": "Describe a red running shoe as a JSON object with keys name and colour."}]
    r = client.chat.completions.create(model=CHAT, messages=msgs, max_tokens=120, temperature=0.7, seed=1,
                                       response_format={"type": "json_object"})
    ch = r.choices[0]
    assert ch.finish_reason == "stop", ch.message.content
    assert isinstance(json.loads(ch.message.content), dict)


def test_embeddings(client):
    r = client.embeddings.create(model=EMBED, input=["red running shoes", "crimson jogging sneakers",
                                                     "the weather in Paris"])
    assert r.object == "list" and r.model == EMBED and [d.index for d in r.data] == [0, 1, 2]
    v = np.array([d.embedding for d in r.data], dtype=np.float64)
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1
    assert r.usage.prompt_tokens == r.usage.total_tokens > 6
    one = client.embeddings.create(model=EMBED, input="red running shoes")
    assert np.allclose(one.data[0].embedding, v[0], atol=1e-5)
    short = client.embeddings.create(model=EMBED, input="red running shoes", dimensions=64)
    assert len(short.data[0].embedding) == 64


def test_models(client):
    ids = [m.id for m in client.models.list()]
    for name in ("smollm2-135m-instruct", "all-minilm-l6-v2", "gpt-3.5-turbo", "text-davinci-002",
                 "text-embedding-ada-002", "gpt-4o-mini"):
        assert name in ids
    m = client.models.retrieve("gpt-4o-mini")
    assert m.id == "gpt-4o-mini" and m.object == "model"
    expect_error(lambda: client.models.retrieve("no-such-model"), 404, code="model_not_found")


@pytest.mark.parametrize("kw,status,param,code", [
    (dict(temperature=2.5), 400, "temperature", None),
    (dict(temperature=-0.1), 400, "temperature", None),
    (dict(top_p=1.5), 400, "top_p", None),
    (dict(n=0), 400, "n", None),
    (dict(max_tokens=0), 400, "max_tokens", None),
    (dict(presence_penalty=3.0), 400, "presence_penalty", None),
    (dict(logit_bias={"not-a-token": 5}), 400, "logit_bias", None),
    (dict(stop=["a", "b", "c", "d", "e"]), 400, "stop", None),
    (dict(model="no-such-model"), 404, "model", "model_not_found"),
    (dict(model="text-embedding-ada-002"), 400, "model", "invalid_model"),
    (dict(messages=[]), 400, "messages", "empty_array"),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0].role", None),
    (dict(messages=[{"role": "user", "content": 42}]), 400, "messages[0].content", None),
    (dict(messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}), 400,
     "messages", None),
    (dict(top_logprobs=3), 400, "top_logprobs", None),
    (dict(messages=[{"role": "user", "content": "hello " * 9000}]), 400, "messages", "context_length_exceeded"),
])
def test_chat_errors(client, kw, status, param, code):
    args = dict(model=CHAT, messages=HELLO, max_tokens=2)
    args.update(kw)
    expect_error(lambda: client.chat.completions.create(**args), status, param, code)


@pytest.mark.parametrize("kw,status,param,code", [
    (dict(temperature=3), 400, "temperature", None),
    (dict(prompt="hello " * 9000), 400, "prompt", "context_length_exceeded"),
    (dict(prompt="hi", max_tokens=9000), 400, "max_tokens", None),
    (dict(suffix="end"), 400, "suffix", "unsupported_parameter"),
    (dict(n=2, best_of=1), 400, "best_of", None),
    (dict(logprobs=6), 400, "logprobs", None),
    (dict(model="davinci-9000"), 404, "model", "model_not_found"),
])
def test_completion_errors(client, kw, status, param, code):
    args = dict(model=TEXT, prompt="hi", max_tokens=2)
    args.update(kw)
    expect_error(lambda: client.completions.create(**args), status, param, code)


def test_stream_errors_come_before_the_stream(client):
    """A streamed request with a bad argument fails as the call returns (HTTP
    400), never halfway through the events."""
    expect_error(lambda: client.chat.completions.create(model=CHAT, messages=HELLO, stream=True, temperature=5),
                 400, "temperature")
    expect_error(lambda: client.completions.create(model=TEXT, prompt="hello " * 9000, stream=True), 400,
                 "prompt", "context_length_exceeded")
    expect_error(lambda: client.chat.completions.create(model=CHAT, messages=HELLO, stream_options={
        "include_usage": True}), 400, "stream_options")


def test_embedding_errors(client):
    expect_error(lambda: client.embeddings.create(model=EMBED, input=""), 400, "input")
    expect_error(lambda: client.embeddings.create(model=CHAT, input="x"), 400, "model", "invalid_model")
    expect_error(lambda: client.embeddings.create(model="nope", input="x"), 404, "model")
