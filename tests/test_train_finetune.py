"""fine_tune(): JSONL validation with line numbers, loss masks from chat
templates, packing, the training loop, atomic checkpoints and resume, NaN
handling, export of merged weights and adapters, the CLI."""

import json
import os

import numpy as np
import pytest

import ecomlm
from ecomlm.engine import finetune as ft
from ecomlm.errors import BadRequestError
from helpers import save_hf, tiny_gpt2, tiny_llama


class ByteTokenizer:
    """A byte-level tokenizer with ChatML, enough to drive the data path on
    tiny random models (vocab 1001 > 256 + specials)."""

    eos_id = 300
    pad_id = 0
    specials = {"<|im_start|>": 301, "<|im_end|>": 302}

    def encode(self, text, add_special_tokens=False):
        out = []
        i = 0
        while i < len(text):
            for s, sid in self.specials.items():
                if text.startswith(s, i):
                    out.append(sid)
                    i += len(s)
                    break
            else:
                out += list(text[i].encode("utf-8"))
                i += 1
        return out

    def apply_chat_template(self, messages, add_generation_prompt=True):
        from ecomlm.engine.chat import render_chat_template

        return render_chat_template(None, messages, add_generation_prompt)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_hf(tiny_gpt2(n_positions=128), tmp_path_factory.mktemp("ftgpt2"))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_hf(tiny_llama(max_position_embeddings=128), tmp_path_factory.mktemp("ftllama"))


def chat(q, a):
    return {"messages": [{"role": "system", "content": "You are the shop's assistant."},
                         {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


SHOP = [chat(f"Return window #{i}?", f"{30 + i % 3} days.") for i in range(12)] + \
       [{"prompt": f"Free shipping over #{i}:", "completion": f" ${50 + i}"} for i in range(6)]


# ------------------------------------------------------------- validation

@pytest.mark.parametrize("line, msg", [
    (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n',
     "line 2: invalid JSON"),
    (b'\n\n{"messages": [{"content": "hi"}]}\n', "line 3: message 0 has no 'role'"),
    (b'{"messages": [{"role": "wizard", "content": "hi"}]}\n', "line 1: message 0 has unknown role 'wizard'"),
    (b'{"prompt": "a", "completion": "  "}\n', "line 1: empty completion"),
    (b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff\xfe", "completion": "b"}\n', "line 2: invalid UTF-8"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}\n', "line 1: the conversation has no assistant"),
    (b'[1, 2]\n', "line 1: expected a JSON object"),
    (b'{"text": "hi"}\n', "line 1: expected"),
    (b'{"messages": []}\n', "line 1: 'messages' must be a non-empty list"),
])
def test_bad_data_names_the_line(line, msg, tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(line)
    with pytest.raises(BadRequestError, match=msg):
        ft.read_jsonl(str(p))


def test_too_long_for_context(gpt2_dir, tmp_path):
    data = [chat("q", "a")] * 3 + [chat("x" * 500, "y")]
    with pytest.raises(BadRequestError, match="line 4: .* exceed the context length"):
        ecomlm.load(gpt2_dir).fine_tune(data, tokenizer=ByteTokenizer(), seq_len=120, progress=False)


def test_loss_mask_covers_assistant_and_completion_only():
    tok = ByteTokenizer()
    ids, mask = ft.tokenize_example(chat("Where is my order?", "On its way."), tok)
    text = bytes(i for i, m in zip(ids, mask) if m and i < 256).decode()
    assert text.startswith("On its way.")
    assert 302 in [i for i, m in zip(ids, mask) if m]  # <|im_end|> is learnt: the model learns to stop
    assert sum(mask) == len(tok.encode(tok.apply_chat_template(chat("q", "On its way.")["messages"][:3], False))) - \
        len(tok.encode(tok.apply_chat_template(chat("q", "x")["messages"][:2], True)))
    ids, mask = ft.tokenize_example({"prompt": "Q:", "completion": " A"}, tok, tok.eos_id)
    assert ids == [81, 58, 32, 65, 300] and mask == [0, 0, 1, 1, 1]
    # an assistant turn with weight 0 is context, not a target
    ex = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0},
                       {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    ids, mask = ft.tokenize_example(ex, tok)
    assert [i for i, m in zip(ids, mask) if m and i < 256] == [ord("d"), ord("\n")]


def test_packing_keeps_examples_whole():
    ex = [([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1]), ([6, 7, 8, 9], [0, 0, 1, 1])]
    ids, mask = ft.pack(ex, seq_len=5)
    assert ids.tolist() == [[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 0, 0]]
    assert mask.tolist() == [[0, 1, 1, 0, 1, 0], [0, 0, 1, 1, 0, 0]]


# ------------------------------------------------------------- training

@pytest.mark.parametrize("lora_rank", [0, 4])
def test_fine_tune_lowers_loss_and_updates_model(llama_dir, lora_rank):
    import pandas as pd

    m = ecomlm.load(llama_dir, n_threads=2)
    before = m.logits([301, 72, 105]).copy()
    hist = m.fine_tune(SHOP, tokenizer=ByteTokenizer(), epochs=4, batch_size=2, seq_len=120, lr=3e-3,
                       lora_rank=lora_rank, val_fraction=0.2, progress=False)
    df = pd.DataFrame(hist)
    assert list(df.columns[:7]) == ["step", "epoch", "loss", "val_loss", "lr", "grad_norm", "tokens_per_s"]
    assert df["loss"].iloc[-1] < df["loss"].iloc[0]
    vals = df["val_loss"].dropna()
    assert len(vals) == 4 and vals.iloc[-1] < vals.iloc[0]
    assert not np.allclose(m.logits([301, 72, 105]), before)  # the model now generates with the new weights
    assert hist.model is m


def test_resume_neither_loses_nor_repeats_steps(gpt2_dir, tmp_path):
    kw = dict(tokenizer=ByteTokenizer(), epochs=3, batch_size=2, seq_len=120, lr=1e-3, lora_rank=4,
              lora_dropout=0.1, progress=False, seed=5, checkpoint_every=2)
    full = ft.fine_tune(gpt2_dir, SHOP, checkpoint_dir=str(tmp_path / "a"), **kw)
    n = len(full)
    assert n > 4

    class Killed(Exception):
        pass

    def kill_at(rec):
        if rec["step"] == 5:
            raise Killed

    with pytest.raises(Killed):
        ft.fine_tune(gpt2_dir, SHOP, checkpoint_dir=str(tmp_path / "b"), callback=kill_at, **kw)
    assert json.loads(bytes(np.load(tmp_path / "b" / "checkpoint.npz")["meta"]).decode())["step"] == 4
    resumed = ft.fine_tune(gpt2_dir, SHOP, checkpoint_dir=str(tmp_path / "b"), **kw)
    assert [r["step"] for r in resumed] == list(range(1, n + 1))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    assert not [f for f in os.listdir(tmp_path / "b") if f.startswith(".checkpoint-")]


def test_nan_loss_stops_and_keeps_checkpoint(gpt2_dir, tmp_path):
    kw = dict(tokenizer=ByteTokenizer(), epochs=2, batch_size=2, seq_len=120, progress=False,
              checkpoint_dir=str(tmp_path), checkpoint_every=1)
    with pytest.raises(ft.TrainingDivergedError, match="loss became"):
        ft.fine_tune(gpt2_dir, SHOP, lr=1e30, **kw)  # the first step blows the weights up
    meta = json.loads(bytes(np.load(tmp_path / "checkpoint.npz")["meta"]).decode())
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert all(np.isfinite(z[k]).all() for k in z.files if k != "meta")
    assert meta["step"] >= 1


def test_export_merged_and_adapter(gpt2_dir, tmp_path):
    hist = ft.fine_tune(gpt2_dir, SHOP, tokenizer=ByteTokenizer(), epochs=1, batch_size=2, seq_len=120, lr=3e-3,
                        lora_rank=4, lora_targets=("q", "v", "up"), progress=False)
    out = ft.save_merged(hist, str(tmp_path / "merged"))
    again = ecomlm.load(out)
    ids = [301, 72, 105, 33]
    np.testing.assert_allclose(again.logits(ids), hist.model.logits(ids), rtol=0, atol=1e-4)
    ad = ft.save_adapter(hist, str(tmp_path / "adapter"))
    cfg = json.load(open(os.path.join(ad, "adapter_config.json")))
    assert cfg["rank"] == 4 and cfg["targets"] == ["q", "up", "v"]


def test_cli_finetune(gpt2_dir, tmp_path, capsys, monkeypatch):
    from ecomlm import cli

    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"input_ids": list(range(i, i + 20))}) for i in range(10)))
    assert cli.main(["finetune", str(p), "--model", str(gpt2_dir), "--epochs", "1", "--lora-rank", "2",
                     "--seq-len", "32", "--batch-size", "2", "--quiet", "--output", str(tmp_path / "out")]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["step"] >= 1 and np.isfinite(last["loss"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": ""}\n')
    assert cli.main(["finetune", str(bad), "--model", str(gpt2_dir), "--quiet"]) == 1
    assert "line 1: empty completion" in capsys.readouterr().err


def test_with_the_models_own_tokenizer(tmp_path):
    """The data path with ecomlm's Tokenizer (tokenizer.json + ChatML) attached
    by ecomlm.load: no tokenizer argument needed."""
    pytest.importorskip("tokenizers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    path = save_hf(tiny_llama(max_position_embeddings=128), tmp_path)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["Our return window is 30 days. Free shipping over $50."] * 20,
                           trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                                               "<|im_end|>"],
                                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tk.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, f)
    m = ecomlm.load(path, n_threads=2)
    assert m.tokenizer is not None
    ids, mask = ft.tokenize_example(chat("Return window?", "30 days."), m.tokenizer)
    learnt = [i for i, k in zip(ids, mask) if k]
    assert m.tokenizer.decode(learnt) == "30 days.<|im_end|>\n"
    hist = m.fine_tune(SHOP, epochs=3, batch_size=2, seq_len=100, lr=3e-3, lora_rank=4, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
