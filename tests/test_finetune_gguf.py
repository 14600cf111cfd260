"""Fine-tuning from the shipped GGUF SmolLM2 (Q4_1): the trainer's forward on
the dequantised, q/k-un-permuted weights against the inference engine on the
same file, a few LoRA steps on shop dialogues, and the exports (safetensors,
GGUF re-quantised to the source types or F32, the adapter loaded at run time)
reloaded and checked against the fine-tuned weights and against transformers."""

import json
import os

import numpy as np
import pytest

import ecomlm
import ecomlm.data
from ecomlm.engine import finetune as ft
from ecomlm.engine.gguf import GGMLType, GGUFReader
from ecomlm.engine.gguf_model import load_gguf
from helpers import hf_logits, rel_err

TEXT = "Brightcart: most items can be returned within 30 days; orders over $50 ship free."
LORA = dict(rank=4, alpha=8.0, dropout=0.0, targets=list(ft.LORA_TARGETS), seed=0)


@pytest.fixture(scope="module")
def smollm2_path():
    from ecomlm.engine import registry

    return registry.pull("smollm2-135m-instruct", progress=False)


def test_trainer_on_gguf_matches_the_engine(smollm2_path):
    """Per-position losses of Trainer.forward on the GGUF base (a LoRA with B = 0
    computes the base) equal -log_softmax of the inference engine's logits on
    the same file loaded with dequantize=True; the engine model built from the
    trainer's weights gives the same logits."""
    tr, family, cfg, ecfg = ft.build_trainer("smollm2-135m-instruct", lora=LORA, n_threads=2)
    assert family == "llama" and "rope_interleaved" not in ecfg and cfg["tie_word_embeddings"]
    ref = load_gguf(smollm2_path, 2, dequantize=True)
    ids = np.array(ref.tokenizer.encode(TEXT)[:13], dtype=np.int32)
    T = len(ids) - 1
    lg = ref.logits(ids[:-1]).astype(np.float64)
    m = lg.max(-1, keepdims=True)
    nll = (np.log(np.exp(lg - m).sum(-1)) + m[:, 0]) - lg[np.arange(T), ids[1:]]
    mine = []
    for t in range(T):
        mask = np.zeros((1, T), np.uint8)
        mask[0, t] = 1
        mine.append(tr.forward(ids[None, :-1], ids[None, 1:], mask))
    assert np.abs(np.array(mine) - nll).max() <= 1e-4 * max(1.0, nll.max())
    assert abs(tr.forward(ids[None, :-1], ids[None, 1:]) - nll.mean()) <= 1e-4
    core = ft.trainer_to_model(tr, ecfg, 2)
    got = ecomlm.engine.model.Model(core, family, cfg, ecfg, 0).logits(ids[:-1])
    assert rel_err(got, lg) <= 1e-5


def _shop_dialogues(n):
    with open(os.path.join(os.path.dirname(ecomlm.data.__file__), "support_dialogues.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(x) for x in f]
    return sorted(rows, key=lambda d: len(json.dumps(d)))[:n]  # the shortest: a cheap test


def test_lora_steps_on_gguf_lower_the_loss(tmp_path):
    """A few LoRA steps from the Q4_1 file on shop dialogues lower their loss;
    the merged export reloads with the fine-tuned model's logits."""
    data = _shop_dialogues(4)
    hist = ft.fine_tune("smollm2-135m-instruct", data, data, epochs=2, batch_size=2, seq_len=128, lr=2e-3,
                        lora_rank=8, lora_targets=ft.LORA_TARGETS, n_threads=2, progress=False,
                        eval_at_start=True, warmup=0)
    v0, v1 = hist[0]["val_loss"], hist[-1]["val_loss"]
    assert hist[0]["step"] == 0 and len(hist) >= 3 and v1 < 0.8 * v0, (v0, v1)
    ids = hist.model.tokenizer.encode("Hi! How long do I have to return a jacket?")
    m = ecomlm.load(ft.save_merged(hist, str(tmp_path / "merged")), 2)
    assert rel_err(m.logits(ids), hist.model.logits(ids)) <= 1e-5


def test_exports_of_a_gguf_lora(smollm2_path, tmp_path):
    """A LoRA over the GGUF base (random factors: a large, known change)
    exported as a safetensors directory (read by ecomlm and transformers), an
    adapter merged at load, an F32 GGUF and a GGUF re-quantised to the
    source's types."""
    tr, family, cfg, ecfg = ft.build_trainer(smollm2_path, lora=LORA, n_threads=2)
    rng = np.random.default_rng(0)
    for name, p in tr.parameters().items():
        if ".lora_" in name:
            p[...] = rng.standard_normal(p.shape).astype(np.float32) * (0.05 if name.endswith(".A") else 0.06)
    ref = load_gguf(smollm2_path, 2)
    ids = ref.tokenizer.encode("Hi! How long do I have to return a jacket?")
    want = ecomlm.engine.model.Model(ft.trainer_to_model(tr, ecfg, 2), family, cfg, ecfg, 0).logits(ids)
    base = ref.logits(ids)

    merged = ft.save_merged(tr, str(tmp_path / "merged"), smollm2_path, family, cfg)
    adapter = ft.save_adapter(tr, str(tmp_path / "adapter"), base_model=smollm2_path)
    f32, q = str(tmp_path / "tuned.F32.gguf"), str(tmp_path / "tuned.Q4_1.gguf")
    ft.save_gguf(tr, f32, "f32", src=smollm2_path)
    q8 = str(tmp_path / "tuned.Q8_0.gguf")
    ft.save_gguf(tr, q, src=smollm2_path)
    ft.save_gguf(tr, q8, "q8_0", src=smollm2_path)
    from ecomlm.engine.convert import permute_qk

    merged_q = permute_qk(tr.export("layers.0.qkv.weight", True)[:576], 9)  # attn_q, in llama.cpp's row order
    merged_down = tr.export("layers.7.down.weight", True)
    tr.close()
    for path in (merged, adapter, f32):
        m = ecomlm.load(path, 2)
        assert m.tokenizer.encode(TEXT + " 1234") == ref.tokenizer.encode(TEXT + " 1234")
        assert rel_err(m.logits(ids), want) <= 1e-5, path
        m.close()

    # re-quantised to the source's types: its metadata, names, types and shapes; the tensors LoRA
    # does not touch (token table, norms) byte for byte; every merged weight within half a Q4_1 step
    # of its block (the quantisation tolerance). Q4_1's step is coarser than a fine-tune's change, so
    # most of it rounds back to the base's grid; Q8_0 keeps it.
    src, out = GGUFReader(smollm2_path), GGUFReader(q)
    assert out.metadata == src.metadata
    assert [(t.name, t.type, t.shape) for t in out.tensors] == [(t.name, t.type, t.shape) for t in src.tensors]
    for name in ("token_embd.weight", "blk.0.attn_norm.weight", "output_norm.weight"):
        assert np.array_equal(out.raw(name), src.raw(name)), name
    for name, w in (("blk.0.attn_q.weight", merged_q), ("blk.7.ffn_down.weight", merged_down)):
        assert out.tensor(name).type == GGMLType.Q4_1
        blocks = w.reshape(-1, 32)
        step = (blocks.max(1) - blocks.min(1)) / 15
        err = np.abs(out.dequantize(name).reshape(-1, 32) - blocks)
        assert np.all(err <= 0.5 * step[:, None] * 1.01 + 1e-3 * np.abs(blocks).max(1)[:, None]), name
    got = ecomlm.load(q, 2).logits(ids)
    assert rel_err(got, want) <= 0.3
    got8 = ecomlm.load(q8, 2).logits(ids)
    assert rel_err(got8, want) < 0.4 * rel_err(base, want), (rel_err(got8, want), rel_err(base, want))

    # transformers reads the merged directory (config, tokenizer, rotate-half q/k rows) the same way
    import torch
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(merged, torch_dtype=torch.float32).eval()
    assert rel_err(hf_logits(hf, ids), want) <= 1e-4
    tok = transformers.AutoTokenizer.from_pretrained(merged)
    assert tok.encode(TEXT + " 1234", add_special_tokens=False) == ref.tokenizer.encode(TEXT + " 1234")
