"""The OpenAI surface in process: 2022-style module-level calls exactly as old
code writes them, and the v1 client suite (tests/api_suite.py) against
``ecomlm.OpenAI()``."""

import asyncio
import json

import pytest

import ecomlm
import ecomlm as openai
from api_suite import *  # noqa: F401,F403  (the shared v1 suite)
from api_suite import CHAT, HELLO


@pytest.fixture(scope="module")
def client():
    return ecomlm.OpenAI()


def test_legacy_completion_as_2022_code_writes_it():
    openai.api_key = "sk-not-needed-locally"
    response = openai.Completion.create(engine="text-davinci-002", prompt="Write a tagline for running shoes:",
                                        max_tokens=12, n=1, stop=None, temperature=0.5)
    text = response.choices[0].text.strip()
    assert text and response.choices[0].text == response["choices"][0]["text"]
    assert response["usage"]["total_tokens"] == response.usage.total_tokens
    assert isinstance(response, openai.Completion)
    body = json.loads(json.dumps(response))  # serialises to OpenAI's JSON
    assert set(body) == {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
    assert set(body["choices"][0]) == {"text", "index", "logprobs", "finish_reason"}
    assert response.to_dict() == body and response.model_dump() == body


def test_legacy_chat_embedding_and_models():
    openai.api_base = "https://api.openai.com/v1"  # ignored locally
    r = openai.ChatCompletion.create(model="gpt-3.5-turbo", messages=HELLO, max_tokens=5, temperature=0)
    assert r["choices"][0]["message"]["content"] == r.choices[0].message.content
    assert r["choices"][0]["message"]["role"] == "assistant"
    e = openai.Embedding.create(engine="text-embedding-ada-002", input=["red shoes"])
    assert len(e["data"][0]["embedding"]) == 384
    names = [m["id"] for m in openai.Model.list()["data"]]
    assert "text-davinci-002" in names and openai.Model.retrieve("gpt-4").id == "gpt-4"
    try:
        openai.ChatCompletion.create(model="gpt-3.5-turbo", messages=[{"role": "robot", "content": "x"}])
    except openai.error.InvalidRequestError as err:  # 0.x code catches it by this name
        assert err.param == "messages[0].role" and err.http_status == 400
    else:
        raise AssertionError("a wrong role must raise")


def test_legacy_stream():
    chunks = list(openai.Completion.create(engine="text-davinci-002", prompt="Shoes:", max_tokens=4,
                                           temperature=0, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c["object"] == "text_completion" for c in chunks)


def test_engine_model_class_still_the_engine():
    from ecomlm.api.models import get_model

    m, local = get_model(CHAT)
    assert isinstance(m, ecomlm.Model) and local == "smollm2-135m-instruct"
    assert callable(ecomlm.load) and callable(ecomlm.Model.list)


def test_response_objects():
    o = ecomlm.OpenAIObject({"a": {"b": [{"c": 1}]}})
    assert o.a.b[0].c == 1 and o["a"]["b"][0]["c"] == 1
    o.d = {"e": 2}
    assert o.d.e == 2 and o["d"]["e"] == 2
    with pytest.raises(AttributeError):
        o.missing
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(o)) == o and copy.deepcopy(o) == o


def test_unknown_argument_is_named():
    with pytest.raises(ecomlm.BadRequestError) as e:
        ecomlm.OpenAI().chat.completions.create(model=CHAT, messages=HELLO, temprature=0.5)
    assert e.value.param == "temprature" and e.value.code == "unknown_parameter"


def test_registered_model_name():
    from ecomlm.api.models import get_model

    m, _ = get_model("smollm2-135m-instruct")
    ecomlm.api.register_model("shop-bot", m)
    try:
        r = ecomlm.OpenAI().chat.completions.create(model="shop-bot", messages=HELLO, max_tokens=2)
        assert r.model == "shop-bot" and "shop-bot" in [x.id for x in ecomlm.OpenAI().models.list()]
    finally:
        ecomlm.api.unregister_model("shop-bot")


def test_async_client():
    async def main():
        client = ecomlm.AsyncOpenAI()
        r, s = await asyncio.gather(
            client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=4, temperature=0),
            client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=4, temperature=0, stream=True))
        parts = [c.choices[0].delta.content or "" async for c in s if c.choices]
        return r, "".join(parts)

    r, streamed = asyncio.run(main())
    assert r.choices[0].message.content == streamed


def test_abandoned_stream_is_cancelled():
    s = ecomlm.OpenAI().completions.create(model="text-davinci-002", prompt="Once", max_tokens=500, stream=True)
    next(s)
    s.close()  # the engine frees the sequence; the next call is not held up behind 500 tokens
    r = ecomlm.OpenAI().completions.create(model="text-davinci-002", prompt="Once", max_tokens=2)
    assert r.choices[0].text


def test_readme_alias_table_lists_every_alias():
    import os

    from ecomlm.engine import registry

    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    table = readme[readme.index("| OpenAI name | served by |"):]
    table = table[:table.index("\n\n")]
    for alias, target in registry.ALIASES.items():
        line = next((ln for ln in table.splitlines() if f"`{alias}`" in ln), None)
        assert line is not None and f"`{target}`" in line, alias
