"""The files and fine-tuning jobs API, driven as OpenAI's users drive it: in
process through ``ecomlm.OpenAI()`` and the 0.x module-level classes, and over
HTTP by the official ``openai`` SDK against ``ecomlm serve``. A tiny
random-initialised llama with a small BPE tokenizer trains in about a second,
so every job runs for real: upload, validation with line numbers, queue,
training, events, the fine-tuned model answering (checked against
transformers on the merged weights), cancel, divergence, and a process
killed mid-job whose job resumes to the same weights and loss history as an
uninterrupted run."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import ecomlm
from ecomlm.errors import BadRequestError, NotFoundError, PermissionDeniedError
from helpers import save_hf, tiny_llama, wait_for_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL = ("succeeded", "failed", "cancelled")


def chat(q, a):
    return {"messages": [{"role": "system", "content": "You answer for the shop."},
                         {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


TRAIN = [chat(f"Return window for order {i}?", "Our return window is 30 days.") for i in range(12)] + \
        [chat(f"Shipping fee for order {i}?", "Free shipping over $50.") for i in range(12)]
VALID = [chat("How long can I return it?", "Our return window is 30 days."),
         chat("Is shipping free?", "Free shipping over $50.")]
QUESTION = [{"role": "system", "content": "You answer for the shop."},
            {"role": "user", "content": "Return window for order 3?"}]
# ecomlm's extras: full fine-tuning at a high base rate (a random model learns visibly in a few steps),
# rows of 64 tokens (one example each), 2 threads, a checkpoint per step
FAST = dict(learning_rate=3e-3, lora_rank=0, seq_len=64, n_threads=2, checkpoint_every=1)


def jsonl(rows) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def make_base(path):
    """A tiny llama (hidden 48, 2 layers) with a BPE tokenizer trained on the shop's phrases."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    corpus = [m["content"] for ex in TRAIN + VALID for m in ex["messages"]] * 5
    tk.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    save_hf(tiny_llama(max_position_embeddings=128, hidden_size=48, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=64, vocab_size=tk.get_vocab_size()), path)
    tk.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, f)
    return str(path)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    pytest.importorskip("tokenizers")
    return make_base(tmp_path_factory.mktemp("ftbase"))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """$ECOMLM_HOME for this module's in-process calls, restored afterwards."""
    old = os.environ.get("ECOMLM_HOME")
    h = str(tmp_path_factory.mktemp("fthome"))
    os.environ["ECOMLM_HOME"] = h
    yield h
    if old is None:
        os.environ.pop("ECOMLM_HOME", None)
    else:
        os.environ["ECOMLM_HOME"] = old


@pytest.fixture(scope="module")
def client(home):
    return ecomlm.OpenAI()


def wait(client, job_id, timeout=120):
    deadline = time.time() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in FINAL:
            return job
        assert time.time() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.05)


def metrics(client, job_id):
    evs = [e for e in client.fine_tuning.jobs.list_events(job_id, limit=10000) if e.type == "metrics"]
    return sorted((e.data for e in evs), key=lambda d: d["step"])


def hf_greedy(path, ids, n):
    import torch
    import transformers

    m = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        out = m.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                         pad_token_id=0, min_new_tokens=n)
        logits = m(out).logits[0].numpy()
    return out[0, len(ids):].tolist(), logits


# ------------------------------------------------------------------ files

def test_files_every_upload_form(client, base, tmp_path):
    data = jsonl(TRAIN[:3])
    p = tmp_path / "shop.jsonl"
    p.write_bytes(data)
    with open(p, "rb") as fh:
        made = [client.files.create(file=fh, purpose="fine-tune"),
                client.files.create(file=str(p), purpose="fine-tune"),
                client.files.create(file=data, purpose="fine-tune"),
                client.files.create(file=("named.jsonl", data, "application/jsonl"), purpose="fine-tune"),
                ecomlm.File.create(file=open(p, "rb"), purpose="fine-tune")]  # the 0.x SDK's call
    assert [f.filename for f in made] == ["shop.jsonl", "shop.jsonl", "upload", "named.jsonl", "shop.jsonl"]
    for f in made:
        assert f.object == "file" and f.id.startswith("file-") and f.bytes == len(data)
        assert f.purpose == "fine-tune" and f.status == "processed" and isinstance(f.created_at, int)
        assert client.files.retrieve(f.id) == f
        assert client.files.content(f.id).content == data
    assert ecomlm.File.download(made[0].id) == data
    ids = {f.id for f in made}
    listed = client.files.list(purpose="fine-tune", limit=2)
    assert len(listed.data) == 2 and listed.has_more
    walked = [f.id for f in listed]  # iterating follows the pages, as the SDK's cursor page does
    assert ids <= set(walked) and len(walked) == len(set(walked))
    async def walk():
        return [f.id async for f in await ecomlm.AsyncOpenAI().files.list(purpose="fine-tune", limit=2)]

    assert asyncio.run(walk()) == walked
    gone = client.files.delete(made[1].id)
    assert gone.deleted and gone.id == made[1].id
    with pytest.raises(NotFoundError):
        client.files.retrieve(made[1].id)
    assert made[1].id not in [f.id for f in client.files.list()]


@pytest.mark.parametrize("body, where", [
    (jsonl(TRAIN[:2]) + b'{"messages": [}\n', "line 3: invalid JSON"),
    (jsonl(TRAIN[:1]) + b'{"prompt": "a", "completion": "\xff"}\n', "line 2: invalid UTF-8"),
    (b'\n' + json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
     "line 2: message 0 has unknown role"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
     "line 1: the conversation has no assistant"),
    (jsonl([{"prompt": "a", "completion": ""}]), "line 1: empty completion"),
])
def test_bad_upload_names_the_line(client, body, where):
    with pytest.raises(BadRequestError) as e:
        client.files.create(file=("bad.jsonl", body), purpose="fine-tune")
    assert where in str(e.value) and e.value.param == "file"
    with pytest.raises(BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", jsonl(TRAIN[:1])), purpose="fine-tuning")


def test_job_refused_before_training(client, base):
    n_jobs = len(client.fine_tuning.jobs.list(limit=10000).data)
    long = client.files.create(file=("long.jsonl", jsonl(TRAIN[:2] + [chat("q " * 300, "a")])), purpose="fine-tune")
    with pytest.raises(BadRequestError) as e:
        client.fine_tuning.jobs.create(model=base, training_file=long.id)
    assert "line 3" in str(e.value) and "context length" in str(e.value) and e.value.param == "training_file"
    ok = client.files.create(file=("ok.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    for kw, param in [(dict(training_file="file-nope"), "training_file"),
                      (dict(training_file=ok.id, hyperparameters={"n_epochs": 0}), "n_epochs"),
                      (dict(training_file=ok.id, hyperparameters={"epochs": 2}), "hyperparameters.epochs"),
                      (dict(training_file=ok.id, suffix="a b"), "suffix"),
                      (dict(training_file=ok.id, validation_file=long.id), "validation_file"),
                      (dict(training_file=ok.id, lora_targets=["qq"]), "lora_targets")]:
        with pytest.raises(BadRequestError) as e:
            client.fine_tuning.jobs.create(model=base, **kw)
        assert e.value.param == param, (kw, e.value.param)
    with pytest.raises(NotFoundError):
        client.fine_tuning.jobs.create(model="no-such-model", training_file=ok.id)
    assert len(client.fine_tuning.jobs.list(limit=10000).data) == n_jobs  # a refused job leaves nothing


# ------------------------------------------------------------------- jobs

def test_job_trains_and_the_model_answers(client, base, home):
    train = client.files.create(file=("train.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", jsonl(VALID)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base, training_file=train.id, validation_file=valid.id,
                                         hyperparameters={"n_epochs": 4, "batch_size": 4}, suffix="shop", seed=3,
                                         **FAST)
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-") and job.status in ("queued", "running")
    assert job.hyperparameters == {"n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 1.0}
    assert job.training_file == train.id and job.validation_file == valid.id and job.seed == 3
    job = wait(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith(f"ft:{os.path.basename(base)}:shop:") and job.finished_at
    assert job.trained_tokens > 0 and job.error is None

    msgs = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=10000)][::-1]  # oldest first
    assert msgs[0].startswith("Validating training file") and "moving job to queued" in msgs[1]
    assert msgs[2] == "Fine-tuning job started" and msgs[-1] == "The job has successfully completed"
    m = metrics(client, job.id)
    assert [d["step"] for d in m] == list(range(1, len(m) + 1)) and m[-1]["epoch"] == 4
    assert all(d["tokens_per_s"] > 0 and np.isfinite(d["train_loss"]) for d in m)
    assert all(d["total_steps"] == len(m) for d in m)
    assert job.trained_tokens == len(m) * 4 * FAST["seq_len"]  # batches of 4 rows of seq_len positions
    assert m[-1]["train_loss"] < 0.6 * m[0]["train_loss"]
    val = [d["valid_loss"] for d in m if d["valid_loss"] is not None]
    assert len(val) == 4 and val[-1] < val[0]  # once per epoch, and it fell
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more and page.data[0].message == msgs[-1]
    nxt = client.fine_tuning.jobs.list_events(job.id, limit=3, after=page.data[-1].id)
    assert nxt.data[0].message == msgs[-4]
    csv = client.files.content(job.result_files[0]).text.splitlines()
    assert csv[0].startswith("step,") and len(csv) == 1 + len(m)

    name = job.fine_tuned_model
    assert name in [x.id for x in client.models.list()]
    assert client.models.retrieve(name).owned_by == "user"
    r = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=6, temperature=0)
    assert r.model == name
    merged = os.path.join(home, "models", "fine-tuned", job.id)
    local = ecomlm.load(name)
    assert os.path.samefile(local.path, merged)
    ids = local.apply_chat_template(QUESTION)
    ref, ref_logits = hf_greedy(merged, ids, r.usage.completion_tokens)
    assert local.tokenizer.decode(ref) == r.choices[0].message.content
    ours = local.logits(ids + ref)
    np.testing.assert_allclose(ours, ref_logits, atol=2e-4 * np.ptp(ref_logits))
    local.close()
    c = client.completions.create(model=name, prompt=[ids], max_tokens=3, temperature=0)
    assert c.choices[0].text == local.tokenizer.decode(ref[:3])

    assert client.models.delete(name).deleted
    assert name not in [x.id for x in client.models.list()] and not os.path.exists(merged)
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model=name, messages=QUESTION, max_tokens=2)
    with pytest.raises(PermissionDeniedError):
        client.models.delete("gpt-3.5-turbo")


def test_cancel_at_a_step_boundary(client, base, home):
    f = client.files.create(file=("t.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base, training_file=f.id, hyperparameters={"n_epochs": 50}, **FAST)
    while not metrics(client, job.id):
        time.sleep(0.02)
    done = client.fine_tuning.jobs.cancel(job.id)
    assert done.status == "cancelled" and done.fine_tuned_model is None and done.finished_at
    last = metrics(client, job.id)[-1]["step"]
    assert last < 50 * 6
    time.sleep(0.3)
    assert metrics(client, job.id)[-1]["step"] == last  # it stopped
    with np.load(os.path.join(home, "fine_tuning", job.id, "checkpoints", "checkpoint.npz")) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        assert meta["step"] in (last - 1, last) and all(np.isfinite(z[k]).all() for k in z.files if k != "meta")
    with pytest.raises(BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    # a queued job is cancelled before it starts
    first = client.fine_tuning.jobs.create(model=base, training_file=f.id, hyperparameters={"n_epochs": 50},
                                           **FAST)
    queued = client.fine_tuning.jobs.create(model=base, training_file=f.id, **FAST)
    assert client.fine_tuning.jobs.cancel(queued.id).status == "cancelled"
    assert client.fine_tuning.jobs.cancel(first.id).status == "cancelled"
    assert not metrics(client, queued.id)


def test_diverging_loss_fails_the_job(client, base, home):
    f = client.files.create(file=("t.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base, training_file=f.id,
                                         hyperparameters={"learning_rate_multiplier": 1e30}, lora_rank=0,
                                         n_threads=2, checkpoint_every=1)
    job = wait(client, job.id)
    assert job.status == "failed" and job.fine_tuned_model is None
    assert job.error.code == "training_diverged" and "loss became" in job.error.message
    errs = [e for e in client.fine_tuning.jobs.list_events(job.id) if e.level == "error"]
    assert len(errs) == 1 and "loss became" in errs[0].message
    with np.load(os.path.join(home, "fine_tuning", job.id, "checkpoints", "checkpoint.npz")) as z:
        assert all(np.isfinite(z[k]).all() for k in z.files if k != "meta")


def test_jobs_list_pages_and_legacy_calls(client, base):
    f = ecomlm.File.create(file=("legacy.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    ft = ecomlm.FineTune.create(training_file=f.id, model=base, n_epochs=1, learning_rate=3e-3, max_steps=2,
                                n_threads=2)
    assert ft.object == "fine-tune" and ft.status in ("pending", "running") and ft.training_files[0].id == f.id
    assert ft.hyperparams.n_epochs == 1 and ft.events[0].object == "fine-tune-event"
    job = ecomlm.FineTuningJob.create(training_file=f.id, model=base, hyperparameters={"n_epochs": 1},
                                      learning_rate=3e-3, max_steps=2, n_threads=2)
    assert isinstance(job, ecomlm.FineTuningJob) and job.object == "fine_tuning.job"
    assert wait(client, ft.id).status == "succeeded" and wait(client, job.id).status == "succeeded"
    old = ecomlm.FineTune.retrieve(id=ft.id)
    assert old.status == "succeeded" and old.fine_tuned_model and old.result_files[0].purpose == "fine-tune-results"
    assert [e.message for e in ecomlm.FineTune.list_events(ft.id).data][-1] == "The job has successfully completed"
    ev = ecomlm.FineTuningJob.list_events(id=job.id, limit=2)
    assert len(ev.data) == 2 and ev.data[0].message == "The job has successfully completed"
    assert ecomlm.FineTuningJob.retrieve(job.id).fine_tuned_model
    every = [j.id for j in client.fine_tuning.jobs.list(limit=10000)]
    assert every[:2] == [job.id, ft.id]  # newest first
    page = client.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in page.data] == every[:2] and page.has_more
    assert [j.id for j in page] == every  # iteration follows `after` to the end
    assert [j.id for j in client.fine_tuning.jobs.list(limit=2, after=every[1]).data] == every[2:4]


# ---------------------------------------------------- kill and resume

KILLED = """
import json, os, sys, time
sys.path.insert(0, {root!r})
import ecomlm
c = ecomlm.OpenAI()
f = c.files.create(file={data!r}, purpose="fine-tune")
job = c.fine_tuning.jobs.create(model={base!r}, training_file=f.id, seed=11, **{kw!r})
print(job.id, flush=True)
time.sleep(600)
"""


def test_killed_job_resumes_without_losing_or_repeating_steps(base, tmp_path):
    """A process dies mid-job (SIGKILL, at step >= 5 of 18, checkpoints every 2
    steps); the next process resumes the job from its checkpoint. Its loss
    history and merged weights equal those of the same job run uninterrupted."""
    from ecomlm.engine.safetensors import load_file

    kw = dict(FAST, hyperparameters={"n_epochs": 3, "batch_size": 4}, checkpoint_every=2)
    killed_home, ref_home = str(tmp_path / "killed"), str(tmp_path / "ref")
    env = dict(os.environ, ECOMLM_HOME=killed_home)
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(root=ROOT, data=jsonl(TRAIN), base=base, kw=kw)],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id.startswith("ftjob-"), job_id
        events = os.path.join(killed_home, "fine_tuning", job_id, "events.jsonl")
        deadline = time.time() + 60
        while time.time() < deadline:
            steps = [json.loads(x)["data"]["step"] for x in open(events) if '"metrics"' in x]
            if steps and steps[-1] >= 5:
                break
            time.sleep(0.01)
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(os.path.join(killed_home, "fine_tuning", job_id, "job.json")) as fh:
            assert json.load(fh)["status"] == "running"  # killed mid-job
    finally:
        proc.kill()
        proc.wait()
    old = os.environ.get("ECOMLM_HOME")
    try:
        os.environ["ECOMLM_HOME"] = killed_home
        client = ecomlm.OpenAI()
        assert client.fine_tuning.jobs.retrieve(job_id).status in ("queued", "running")  # adopted
        job = wait(client, job_id)
        assert job.status == "succeeded", job.error
        resumed = metrics(client, job_id)
        msgs = [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=1000)]
        (at,) = [int(m.split()[-1]) for m in msgs if "resumed from the checkpoint after step" in m]
        os.environ["ECOMLM_HOME"] = ref_home
        f = client.files.create(file=jsonl(TRAIN), purpose="fine-tune")
        ref = wait(client, client.fine_tuning.jobs.create(model=base, training_file=f.id, seed=11, **kw).id)
        full = metrics(client, ref.id)
    finally:
        if old is None:
            os.environ.pop("ECOMLM_HOME", None)
        else:
            os.environ["ECOMLM_HOME"] = old
    assert 4 <= at < len(full) and at % 2 == 0
    assert [d["step"] for d in resumed] == list(range(1, len(full) + 1))  # each step once
    assert [d["train_loss"] for d in resumed] == [d["train_loss"] for d in full]
    assert [d["valid_loss"] for d in resumed] == [d["valid_loss"] for d in full]
    a = load_file(os.path.join(killed_home, "models", "fine-tuned", job_id, "model.safetensors"))
    b = load_file(os.path.join(ref_home, "models", "fine-tuned", ref.id, "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ HTTP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base, home):
    """`ecomlm serve` on a free port with ECOMLM_HOME=home and, unless base is
    None, the tiny model as "tiny"."""
    port = _free_port()
    log = open(os.path.join(home, f"serve-{port}.log"), "w+")
    env = dict(os.environ, ECOMLM_HOME=home, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    models = [] if base is None else ["--model", f"tiny={base}"]
    proc = subprocess.Popen([sys.executable, "-m", "ecomlm", "serve", "--port", str(port), "--api-key", "sk-ft",
                             *models, "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_for_server(proc, url, log, 60)
    return proc, url


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    home = str(tmp_path_factory.mktemp("serverhome"))
    procs = []
    proc, url = start_server(base, home)
    procs.append(proc)
    yield url, home, procs
    for p in procs:
        p.kill()
        p.wait(10)


@pytest.fixture(scope="module")
def sdk(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="sk-ft", max_retries=0, timeout=60)


def test_over_http_with_the_openai_sdk(sdk, server, base, tmp_path):
    import openai

    p = tmp_path / "shop.jsonl"
    p.write_bytes(jsonl(TRAIN))
    f = sdk.files.create(file=open(p, "rb"), purpose="fine-tune")
    assert f.filename == "shop.jsonl" and f.bytes == p.stat().st_size and f.status == "processed"
    assert sdk.files.content(f.id).content == p.read_bytes()
    assert f.id in [x.id for x in sdk.files.list(purpose="fine-tune")]
    with pytest.raises(openai.BadRequestError) as e:
        sdk.files.create(file=("bad.jsonl", jsonl(TRAIN[:4]) + b"{oops\n"), purpose="fine-tune")
    assert "line 5: invalid JSON" in e.value.message and e.value.body["param"] == "file"
    with pytest.raises(openai.NotFoundError):  # no paths over HTTP: only served names
        sdk.fine_tuning.jobs.create(model=base, training_file=f.id)
    job = sdk.fine_tuning.jobs.create(model="tiny", training_file=f.id, suffix="web", seed=3,
                                      hyperparameters={"n_epochs": 2, "batch_size": 4},
                                      extra_body=dict(FAST, lora_rank=4, learning_rate=1e-2, checkpoint_every=3))
    assert job.status in ("queued", "running") and job.model == "tiny"
    deadline = time.time() + 120
    while job.status not in FINAL:
        assert time.time() < deadline
        time.sleep(0.1)
        job = sdk.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    events = list(sdk.fine_tuning.jobs.list_events(job.id, limit=5))  # the SDK walks the pages
    m = sorted((e.data for e in events if e.type == "metrics"), key=lambda d: d["step"])
    assert [d["step"] for d in m] == list(range(1, len(m) + 1)) and m[-1]["epoch"] == 2
    assert m[-1]["train_loss"] < m[0]["train_loss"] and m[-1]["valid_loss"] is not None
    assert job.id in [j.id for j in sdk.fine_tuning.jobs.list(limit=1)]
    name = job.fine_tuned_model
    assert name.startswith("ft:tiny:web:") and name in [m.id for m in sdk.models.list()]
    r = sdk.chat.completions.create(model=name, messages=QUESTION, max_tokens=6, temperature=0)
    merged = os.path.join(server[1], "models", "fine-tuned", job.id)
    local = ecomlm.load(merged)
    ids = local.apply_chat_template(QUESTION)
    ref, _ = hf_greedy(merged, ids, r.usage.completion_tokens)
    assert r.choices[0].message.content == local.tokenizer.decode(ref)
    local.close()
    # cancel over HTTP
    long = sdk.fine_tuning.jobs.create(model="tiny", training_file=f.id, hyperparameters={"n_epochs": 50},
                                       extra_body=FAST)
    assert sdk.fine_tuning.jobs.cancel(long.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        sdk.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert sdk.models.delete(name).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(name)

    # the server dies mid-job; the next server on the same home resumes the job at start
    job = sdk.fine_tuning.jobs.create(model="tiny", training_file=f.id, hyperparameters={"n_epochs": 6},
                                      extra_body=dict(FAST, checkpoint_every=2))
    while not any(e.type == "metrics" and e.data["step"] >= 4 for e in sdk.fine_tuning.jobs.list_events(job.id)):
        time.sleep(0.02)
    server[2][0].kill()
    server[2][0].wait()
    proc, url = start_server(base, server[1])
    server[2].append(proc)
    sdk2 = openai.OpenAI(base_url=url + "/v1", api_key="sk-ft", max_retries=0, timeout=60)
    deadline = time.time() + 120
    while job.status not in FINAL:
        assert time.time() < deadline
        time.sleep(0.1)
        job = sdk2.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded", job.error
    events = list(sdk2.fine_tuning.jobs.list_events(job.id, limit=100))
    assert any("resumed from the checkpoint" in e.message for e in events)
    steps = sorted(e.data["step"] for e in events if e.type == "metrics")
    assert steps == list(range(1, len(steps) + 1)) and len(steps) == 6 * 6  # 22 examples in batches of 4
    assert sdk2.files.delete(f.id).deleted
