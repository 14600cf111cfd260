"""GGUF model files (llama and gpt2): metadata to an engine configuration,
tensors to the engine's weight slots, quantised weights kept quantised.

Quantised matrices stay in their GGML blocks and the engine multiplies on
them directly; norms and biases are F32. q/k/v (and gate/up) are fused by
concatenating their rows, which is exact for any block type; when the three
do not share one type they are dequantised and kept in fp32 instead.
llama.cpp's converter permutes the q/k rows of llama weights for its
adjacent-pair rotary embedding, so these models run with that convention
(rope_interleaved), not with Hugging Face's rotate-half.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError
from .gguf import GGMLType, GGUFReader

__all__ = ["load_gguf", "engine_config_from_gguf"]

_FLOAT_TYPES = (GGMLType.F32, GGMLType.F16, GGMLType.BF16)


def _meta(r: GGUFReader, key: str, kind=int, default=None):
    v = r.metadata.get(key, default)
    if v is None:
        raise ModelFormatError(f"{r.path}: GGUF metadata lacks '{key}'", param=key)
    if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise ModelFormatError(f"{r.path}: GGUF metadata '{key}' must be an integer, got {v!r}", param=key)
    if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise ModelFormatError(f"{r.path}: GGUF metadata '{key}' must be a number, got {v!r}", param=key)
    return v


def engine_config_from_gguf(r: GGUFReader) -> Tuple[str, dict]:
    arch = r.architecture
    if arch not in ("llama", "gpt2"):
        raise BadRequestError(f"GGUF architecture {arch!r} is not supported (llama, gpt2)", param="model")
    tokens = r.metadata.get("tokenizer.ggml.tokens")
    vocab = r.metadata.get(f"{arch}.vocab_size") or (len(tokens) if isinstance(tokens, list) else None)
    if vocab is None:
        emb = r.tensor("token_embd.weight") if "token_embd.weight" in r else None
        vocab = emb.shape[0] if emb is not None else None
    if not isinstance(vocab, int):
        raise ModelFormatError(f"{r.path}: cannot tell the vocabulary size", param="vocab_size")
    C = _meta(r, f"{arch}.embedding_length")
    nh = _meta(r, f"{arch}.attention.head_count")
    if arch == "gpt2":
        return "gpt2", dict(arch=_core.ARCH_GPT2, n_layer=_meta(r, "gpt2.block_count"), d_model=C, n_head=nh,
                            d_ff=_meta(r, "gpt2.feed_forward_length"), vocab=vocab,
                            max_pos=_meta(r, "gpt2.context_length"),
                            norm_eps=_meta(r, "gpt2.attention.layer_norm_epsilon", float, 1e-5))
    head_dim = r.metadata.get("llama.attention.key_length") or (C // nh if nh else 0)
    rope_dim = r.metadata.get("llama.rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise BadRequestError(f"partial rotary embeddings (rope dim {rope_dim} of {head_dim}) are not supported",
                              param="model")
    cfg = dict(arch=_core.ARCH_LLAMA, n_layer=_meta(r, "llama.block_count"), d_model=C, n_head=nh,
               n_kv_head=_meta(r, "llama.attention.head_count_kv", int, nh), head_dim=head_dim,
               d_ff=_meta(r, "llama.feed_forward_length"), vocab=vocab,
               max_pos=_meta(r, "llama.context_length", int, 2048),
               norm_eps=_meta(r, "llama.attention.layer_norm_rms_epsilon", float, 1e-5),
               rope_theta=float(_meta(r, "llama.rope.freq_base", float, 10000.0)), rope_interleaved=1)
    scaling = r.metadata.get("llama.rope.scaling.type")
    if scaling == "linear":
        cfg.update(rope_scaling=_core.ROPE_LINEAR, rope_factor=float(_meta(r, "llama.rope.scaling.factor", float)))
    elif scaling not in (None, "none"):
        raise BadRequestError(f"GGUF rope scaling {scaling!r} is not supported", param="model")
    return "llama", cfg


class _Plan:
    """Slot -> how to fill it from the file."""

    def __init__(self, r: GGUFReader):
        self.r = r
        self.items: List[Tuple[str, List[str]]] = []  # slot, source tensors (rows concatenated)

    def add(self, slot: str, *sources: str) -> None:
        for s in sources:
            if s not in self.r:
                raise ModelFormatError(f"{self.r.path}: missing tensor '{s}'", param=s)
        self.items.append((slot, list(sources)))

    def types(self) -> Dict[str, int]:
        """Linear slots whose sources share one quantised type keep it; so does
        the token table (the engine dequantises the rows it looks up)."""
        out = {}
        for slot, srcs in self.items:
            if not slot.endswith(".weight") and slot != "tok_embd":
                continue
            ts = {self.r.tensor(s).type for s in srcs}
            if len(ts) == 1 and (t := ts.pop()) not in _FLOAT_TYPES and len(self.r.tensor(srcs[0]).shape) == 2:
                out[slot] = t
        return out


def _plan(family: str, ecfg: dict, r: GGUFReader) -> _Plan:
    p = _Plan(r)
    L = ecfg["n_layer"]
    p.add("tok_embd", "token_embd.weight")
    if family == "gpt2":
        p.add("pos_embd", "position_embd.weight")
        for i in range(L):
            b = f"blk.{i}."
            for slot, src in (("attn_norm", "attn_norm"), ("qkv", "attn_qkv"), ("proj", "attn_output"),
                              ("ffn_norm", "ffn_norm"), ("up", "ffn_up"), ("down", "ffn_down")):
                p.add(f"layers.{i}.{slot}.weight", b + src + ".weight")
                p.add(f"layers.{i}.{slot}.bias", b + src + ".bias")
        p.add("norm.weight", "output_norm.weight")
        p.add("norm.bias", "output_norm.bias")
    else:
        for i in range(L):
            b = f"blk.{i}."
            p.add(f"layers.{i}.attn_norm.weight", b + "attn_norm.weight")
            p.add(f"layers.{i}.qkv.weight", b + "attn_q.weight", b + "attn_k.weight", b + "attn_v.weight")
            p.add(f"layers.{i}.proj.weight", b + "attn_output.weight")
            p.add(f"layers.{i}.ffn_norm.weight", b + "ffn_norm.weight")
            p.add(f"layers.{i}.up.weight", b + "ffn_gate.weight", b + "ffn_up.weight")
            p.add(f"layers.{i}.down.weight", b + "ffn_down.weight")
        p.add("norm.weight", "output_norm.weight")
    p.add("lm_head.weight", "output.weight" if "output.weight" in r else "token_embd.weight")
    return p


class _TensorBytes:
    """A quantised tensor's bytes read with pread into a buffer of its own, not
    through the file's mapping: the engine copies them into its weight slab,
    and pages of a mapping touched once would stay in this process's resident
    set (the whole file, ~100 MB for SmolLM2, on top of the slab) until the
    reader is collected."""

    def __init__(self, r: GGUFReader):
        self.r = r
        self.fd = os.open(r.path, os.O_RDONLY)

    def __call__(self, name: str) -> np.ndarray:
        t = self.r.tensor(name)  # offsets and sizes were checked against the file when it was opened
        buf = bytearray(t.nbytes)
        view, pos = memoryview(buf), self.r.data_offset + t.offset
        while view:
            n = os.preadv(self.fd, [view], pos)
            if n <= 0:
                raise ModelFormatError(f"{self.r.path}: short read in tensor '{name}'")
            view, pos = view[n:], pos + n
        return np.frombuffer(buf, dtype=np.uint8)

    def close(self) -> None:
        os.close(self.fd)


def _fill(core, plan: _Plan, r: GGUFReader, types: Dict[str, int], raw: _TensorBytes) -> None:
    for slot, srcs in plan.items:
        infos = [r.tensor(s) for s in srcs]
        if slot in types:
            data = raw(srcs[0]) if len(srcs) == 1 else np.concatenate([raw(s) for s in srcs])
            core.set_tensor(slot, data, qtype=types[slot])
        elif len(srcs) == 1 and infos[0].type not in _FLOAT_TYPES:
            core.set_tensor(slot, raw(srcs[0]), qtype=infos[0].type)  # dequantised by the engine
        else:
            arr = np.concatenate([r.dequantize(s) for s in srcs]) if len(srcs) > 1 else r.dequantize(srcs[0])
            core.set_tensor(slot, np.ascontiguousarray(arr, dtype=np.float32))


def load_gguf(path: str, n_threads: Optional[int] = None, dequantize: bool = False):
    """Load a llama or gpt2 GGUF file as an ecomlm Model (with its tokenizer).

    dequantize=True widens every weight to fp32 (exact float activations, 4-8x
    the memory); by default quantised weights stay in their blocks."""
    from .model import Model

    r = GGUFReader(path)
    family, ecfg = engine_config_from_gguf(r)
    plan = _plan(family, ecfg, r)
    types = {} if dequantize else plan.types()
    core = _core.Model(ecfg, n_threads, types)
    n_params = 0
    used = set()
    raw = _TensorBytes(r)
    try:
        _fill(core, plan, r, types, raw)
    finally:
        raw.close()
    for slot, srcs in plan.items:
        for s in srcs:
            if s not in used:
                used.add(s)
                n_params += int(np.prod(r.tensor(s).shape, dtype=np.int64))
    core.finalize()
    meta = {k: v for k, v in r.metadata.items() if not k.startswith("tokenizer.ggml.")}
    model = Model(core, family, meta, ecfg, n_params, path=path,
                  name=os.path.splitext(os.path.basename(path))[0])
    model.weight_types = {k: v for k, v in types.items()}
    if "tokenizer.ggml.model" in r.metadata:
        from .tokenizer import Tokenizer

        model.tokenizer = Tokenizer.from_gguf_metadata(r.metadata)
    return model
