"""Helpers for tests: build a random-initialised Hugging Face model, save it,
and compare ecomlm's outputs with the reference."""

from __future__ import annotations

import os

import numpy as np


def save_hf(model, path, dtype=None):
    import torch

    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path, safe_serialization=True)
    return path


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor(np.asarray(ids))[None]).logits[0].float().numpy()


def rel_err(out, ref):
    """max |out - ref| relative to the reference's range (the issue's measure)."""
    return float(np.abs(out - ref).max() / (ref.max() - ref.min()))


def tiny_gpt2(**kw):
    import torch
    import transformers

    torch.manual_seed(kw.pop("seed", 0))
    cfg = dict(n_layer=2, n_embd=40, n_head=4, vocab_size=1001, n_positions=320)
    cfg.update(kw)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**cfg)).eval()


def tiny_llama(**kw):
    import torch
    import transformers

    torch.manual_seed(kw.pop("seed", 0))
    cfg = dict(num_hidden_layers=2, hidden_size=90, num_attention_heads=9, num_key_value_heads=3,
               intermediate_size=100, vocab_size=1001, max_position_embeddings=512, rms_norm_eps=1e-5)
    cfg.update(kw)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()


def tiny_bert(**kw):
    import torch
    import transformers

    torch.manual_seed(kw.pop("seed", 0))
    cfg = dict(num_hidden_layers=2, hidden_size=36, num_attention_heads=3, intermediate_size=70, vocab_size=1001,
               max_position_embeddings=320)
    cfg.update(kw)
    return transformers.BertModel(transformers.BertConfig(**cfg)).eval()


def bert_reference_embed(model, ids, mask):
    """Mean pooling over the mask and L2 normalisation, as sentence-transformers does."""
    import torch

    with torch.no_grad():
        h = model(torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
        m = torch.tensor(mask)[..., None].float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


def save_with_smollm2_tokenizer(model, path):
    """Save a random-initialised model (vocab 49152) with SmolLM2's real
    tokenizer and chat template, so text goes in and out."""
    import json

    import tok_refs

    meta = tok_refs.smollm2_meta()
    if meta is None:
        import pytest

        pytest.skip("SmolLM2 tokenizer files not available")
    save_hf(model, path)
    tok_refs.smollm2_hf().save(os.path.join(path, "tokenizer.json"))
    tokens = meta["tokenizer.ggml.tokens"]
    cfg = {"chat_template": meta.get("tokenizer.chat_template"),
           "eos_token": tokens[meta["tokenizer.ggml.eos_token_id"]],
           "bos_token": tokens[meta["tokenizer.ggml.bos_token_id"]], "add_bos_token": False}
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return path


def wait_for_server(proc, url, log, timeout, poll=0.2):
    """Poll url + /health until `ecomlm serve` (proc) answers 200; fail the test
    with the tail of its log if it exits or the timeout passes."""
    import time

    import httpx
    import pytest

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail("ecomlm serve did not start:\n" + log.read()[-3000:])
        time.sleep(poll)
