"""PyTorch references for the training tests: gradients of every engine
tensor from autograd, in the engine's names and layouts (reusing hf.weight_plan
on a store of gradients)."""

from __future__ import annotations

import numpy as np


class DictStore:
    """hf.TensorStore's interface over a {hf name: array} dict."""

    def __init__(self, d):
        self.d = d

    def names(self):
        return list(self.d)

    def has(self, name):
        return name in self.d

    def f32(self, name):
        return np.asarray(self.d[name], dtype=np.float32)


def engine_view(model, family, which="grad"):
    """{engine slot: array} of the HF model's parameters or gradients."""
    from ecomlm.engine import hf

    d = {}
    for n, p in model.named_parameters():
        t = p.grad if which == "grad" else p.data
        d[n] = np.zeros(tuple(p.shape), np.float32) if t is None else t.detach().float().numpy()
    cfg = model.config.to_dict()
    _, ecfg = hf.engine_config(cfg)
    store = DictStore(d)
    plan, _ = hf.weight_plan(family, cfg, ecfg, store)
    out = {}
    for slot, fetch, transposed in plan:
        a = fetch()
        out[slot] = np.ascontiguousarray(a.T) if transposed else a
    return out


def torch_loss(model, ids, targets, mask):
    import torch

    logits = model(torch.tensor(ids, dtype=torch.long)).logits
    V = logits.shape[-1]
    m = torch.tensor(mask.astype(bool) & (targets >= 0))
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V)[m.reshape(-1)],
                                             torch.tensor(targets, dtype=torch.long).reshape(-1)[m.reshape(-1)])


def rel(a, b):
    """max |a - b| relative to max |b| (gradients are centred on zero)."""
    scale = float(np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a).max())
