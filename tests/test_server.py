"""`ecomlm serve` over HTTP on 127.0.0.1: the official `openai` v1 SDK, pointed
at it by base_url, runs the same suite as the in-process client
(tests/api_suite.py); then the server's own duties: API key, SSE framing,
limits, 1,000 malformed requests answered with 4xx (a bounded loop on
loopback) with correct service afterwards, batching of concurrent requests,
and a clean exit on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from api_suite import *  # noqa: E402,F401,F403  (the shared v1 suite)
from api_suite import CHAT, HELLO, TEXT  # noqa: E402
from helpers import wait_for_server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-ecomlm-test-key"
MAX_BODY = 256 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = open(log_path, "w+")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ECOMLM_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "ecomlm", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--api-key", KEY, "--max-body-bytes", str(MAX_BODY), "--max-tokens", "512",
                             "--preload", CHAT, "--preload", "text-embedding-ada-002", "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_server(proc, url, log, 120, poll=0.3)
    yield proc, url, log_path
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[1] + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server[1], headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
        yield c


def test_api_key_required(server, http):
    bad = openai.OpenAI(base_url=server[1] + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.models.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
    r = httpx.post(server[1] + "/v1/chat/completions", json={"model": CHAT, "messages": HELLO})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server[1] + "/health").json()["status"] == "ok"  # health needs no key


def test_sse_framing(http):
    with http.stream("POST", "/v1/chat/completions", json=dict(model=CHAT, messages=HELLO, max_tokens=3,
                                                               stream=True)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = "".join(r.iter_text())
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    for ev in events[:-2]:
        assert ev.startswith("data: ")
        assert json.loads(ev[6:])["object"] == "chat.completion.chunk"


def test_error_bodies_and_limits(http):
    r = http.post("/v1/chat/completions", content=b'{"model": "gpt-3.5-turbo", "messages": [')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = http.post("/v1/completions", content=b"x" * (MAX_BODY + 1))
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]
    r = http.post("/v1/completions", json=dict(model=TEXT, prompt="hi", max_tokens=513))
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = http.get("/v1/no-such-endpoint")
    assert r.status_code == 404 and "error" in r.json()


def _malformed(i: int):
    """(method, path, body bytes) of the i-th malformed request: a cycle of
    broken JSON, wrong types, out-of-range values, unknown names and roles."""
    chat = lambda **kw: json.dumps(dict(dict(model=CHAT, messages=HELLO, max_tokens=2), **kw)).encode()  # noqa: E731
    comp = lambda **kw: json.dumps(dict(dict(model=TEXT, prompt="hi", max_tokens=2), **kw)).encode()  # noqa: E731
    cases = [
        ("POST", "/v1/chat/completions", b"{"),
        ("POST", "/v1/chat/completions", b"\xff\xfe\x00garbage"),
        ("POST", "/v1/completions", b"[1, 2, 3]"),
        ("POST", "/v1/completions", b"null"),
        ("POST", "/v1/completions", b'"just a string"'),
        ("POST", "/v1/chat/completions", b"[" * 50000 + b"]" * 50000),
        ("POST", "/v1/chat/completions", chat(messages="hello")),
        ("POST", "/v1/chat/completions", chat(messages=[])),
        ("POST", "/v1/chat/completions", chat(messages=[{"role": "hacker", "content": "x"}])),
        ("POST", "/v1/chat/completions", chat(messages=[{"content": "no role"}])),
        ("POST", "/v1/chat/completions", chat(messages=[{"role": "user", "content": {"a": 1}}])),
        ("POST", "/v1/chat/completions", chat(messages=[None])),
        ("POST", "/v1/chat/completions", chat(temperature="hot")),
        ("POST", "/v1/chat/completions", b'{"model": "gpt-3.5-turbo", "messages": [], "temperature": NaN}'),
        ("POST", "/v1/chat/completions", chat(temperature=1e308 * 10 if False else 99)),
        ("POST", "/v1/chat/completions", chat(top_p=-1)),
        ("POST", "/v1/chat/completions", chat(n=10 ** 30)),
        ("POST", "/v1/chat/completions", chat(n=-(i % 7))),
        ("POST", "/v1/chat/completions", chat(max_tokens=10 ** 9)),
        ("POST", "/v1/chat/completions", chat(max_tokens="many")),
        ("POST", "/v1/chat/completions", chat(stop=12)),
        ("POST", "/v1/chat/completions", chat(logit_bias=[1, 2])),
        ("POST", "/v1/chat/completions", chat(logit_bias={"99999999": 1})),
        ("POST", "/v1/chat/completions", chat(seed="x")),
        ("POST", "/v1/chat/completions", chat(stream="yes")),
        ("POST", "/v1/chat/completions", chat(stream_options={"include_usage": True})),
        ("POST", "/v1/chat/completions", chat(model=f"no-such-model-{i}")),
        ("POST", "/v1/chat/completions", chat(model=12)),
        ("POST", "/v1/chat/completions", chat(model="/etc/passwd")),
        ("POST", "/v1/chat/completions", chat(**{f"bogus_{i}": 1})),
        ("POST", "/v1/chat/completions", chat(response_format={"type": "xml"})),
        ("POST", "/v1/chat/completions", chat(tools=[{"type": "function"}])),
        ("POST", "/v1/completions", comp(prompt=None)),
        ("POST", "/v1/completions", comp(prompt=[])),
        ("POST", "/v1/completions", comp(prompt=[-1, 5])),
        ("POST", "/v1/completions", comp(prompt=[[1], "mixed"])),
        ("POST", "/v1/completions", comp(logprobs=99)),
        ("POST", "/v1/completions", comp(echo="no")),
        ("POST", "/v1/completions", comp(best_of=0)),
        ("POST", "/v1/completions", comp(suffix="x")),
        ("POST", "/v1/embeddings", json.dumps({"model": "text-embedding-ada-002", "input": [1.5]}).encode()),
        ("POST", "/v1/embeddings", json.dumps({"model": "text-embedding-ada-002", "input": ""}).encode()),
        ("POST", "/v1/embeddings", json.dumps({"model": "text-embedding-ada-002", "input": "x",
                                               "encoding_format": "hex"}).encode()),
        ("POST", "/v1/embeddings", json.dumps({"model": CHAT, "input": "x"}).encode()),
        ("GET", "/v1/chat/completions", None),
        ("GET", f"/v1/models/unknown-{i}", None),
        ("DELETE", "/v1/models", None),
    ]
    return cases[i % len(cases)]


def test_thousand_malformed_requests_then_correct_service(http):
    statuses = {}
    for i in range(1000):  # bounded: exactly 1,000 requests on loopback
        method, path, body = _malformed(i)
        r = http.request(method, path, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (i, method, path, body[:200] if body else None, r.status_code, r.text)
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["type"]
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert set(statuses) <= {400, 404, 405, 413}
    r = http.post("/v1/chat/completions", json=dict(model=CHAT, messages=HELLO, max_tokens=4, temperature=0))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert http.get("/health").status_code == 200


def test_concurrent_requests(client):
    """Eight callers at once, decoded in one batch by the engine's scheduler.

    (Their seeded texts are not compared with the same requests made alone:
    the Q4_1 model's batched matmul groups rows by four (dot4) and its sums
    differ from the one-row kernel's, so a sample can change with its batch
    company. fp32 models are batch-invariant; see tests/test_generate.py.)"""
    kw = dict(model=CHAT, max_tokens=6, temperature=0.8)
    prompts = [[{"role": "user", "content": f"Name a product for customer {i}."}] for i in range(8)]
    out = [None] * 8

    def call(i):
        out[i] = client.chat.completions.create(messages=prompts[i], seed=i, **kw).choices[0].message.content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(isinstance(x, str) and x for x in out)


def test_same_seed_same_text_in_process_and_over_http(client):
    import ecomlm

    kw = dict(model=CHAT, messages=HELLO, max_tokens=6, temperature=1.0, seed=7)
    assert (client.chat.completions.create(**kw).choices[0].message.content
            == ecomlm.OpenAI().chat.completions.create(**kw).choices[0].message.content)


def test_client_gone_mid_stream_stops_generation(http):
    with http.stream("POST", "/v1/chat/completions", json=dict(model=CHAT, messages=HELLO, max_tokens=500,
                                                               stream=True)) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break
        assert http.get("/health").json()["streams"] == 1
    deadline = time.time() + 20  # the server notices at its next token
    while http.get("/health").json()["streams"] and time.time() < deadline:
        time.sleep(0.1)
    assert http.get("/health").json()["streams"] == 0


def test_zz_clean_shutdown_on_sigterm(server, client):
    """SIGTERM with a stream in flight: uvicorn stops accepting, lets the
    request end, runs the app's shutdown (models closed), then exits by the
    signal it caught, as uvicorn does (a -15 status, or 0)."""
    proc, _, log_path = server
    stream = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=400, stream=True)
    next(iter(stream))
    proc.send_signal(signal.SIGTERM)
    stream.close()
    assert proc.wait(30) in (0, -signal.SIGTERM)
    assert "ecomlm serve: stopped; models closed" in log_path.read_text()
