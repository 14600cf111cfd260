"""Hugging Face model directories: config.json and *.safetensors to an engine
configuration and the engine's weight slots.

This is policy, so it lives in Python: which config keys mean what for each
family, how checkpoint tensor names map to the engine's slots, and where q/k/v
and gate/up are fused. The C engine checks every shape again when a tensor is
set.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError, NotFoundError
from .safetensors import SafeTensorsFile, to_float32

ARCHS = {"gpt2": _core.ARCH_GPT2, "llama": _core.ARCH_LLAMA, "bert": _core.ARCH_BERT}
_LLAMA_TYPES = ("llama", "mistral", "qwen2", "smollm3")


class TensorStore:
    """The tensors of one or more safetensors shards, looked up by name."""

    def __init__(self, files: List[str]):
        self.files = [SafeTensorsFile(f) for f in files]
        self.where: Dict[str, SafeTensorsFile] = {}
        for f in self.files:
            for name in f.names():
                if name in self.where:
                    raise ModelFormatError(f"tensor '{name}' appears in two shards ({f.path})")
                self.where[name] = f

    def names(self) -> List[str]:
        return list(self.where)

    def has(self, name: str) -> bool:
        return name in self.where

    def f32(self, name: str) -> np.ndarray:
        f = self.where.get(name)
        if f is None:
            raise ModelFormatError(f"missing tensor '{name}' in the checkpoint", param=name)
        return to_float32(f.raw(name), f.dtype(name))

    def numel(self, name: str) -> int:
        return int(np.prod(self.where[name].shape(name), dtype=np.int64))


def read_config(model_dir: str) -> dict:
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise NotFoundError(f"no config.json in {model_dir}", param="model")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise ModelFormatError(f"cannot read {path}: {e}") from None
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{path} is not a JSON object")
    return cfg


def safetensors_files(model_dir: str) -> List[str]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
            shards = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelFormatError(f"malformed {index}: {e}") from None
        for s in shards:
            if os.path.basename(s) != s:
                raise ModelFormatError(f"shard name '{s}' in {index} is not a plain file name")
        return [os.path.join(model_dir, s) for s in shards]
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    if not files:
        raise NotFoundError(f"no *.safetensors weights in {model_dir}", param="model")
    return [os.path.join(model_dir, f) for f in files]


def _need(cfg: dict, *keys, default=None, kind=int):
    for k in keys:
        if k in cfg and cfg[k] is not None:
            v = cfg[k]
            if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
                raise ModelFormatError(f"config.json: '{k}' must be an integer, got {v!r}", param=k)
            if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ModelFormatError(f"config.json: '{k}' must be a number, got {v!r}", param=k)
            return v
    if default is not None:
        return default
    raise ModelFormatError(f"config.json: missing '{keys[0]}'", param=keys[0])


def engine_config(cfg: dict) -> Tuple[str, dict]:
    """(family, engine config dict) for a Hugging Face config.json."""
    mt = cfg.get("model_type")
    if mt == "gpt2":
        if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn"):
            raise BadRequestError("gpt2 variants with scale_attn_by_inverse_layer_idx or "
                                  "reorder_and_upcast_attn are not supported", param="model")
        act = cfg.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh"):
            raise BadRequestError(f"gpt2 activation '{act}' is not supported (gelu_new)", param="model")
        C = _need(cfg, "n_embd", "hidden_size")
        inner = cfg.get("n_inner")
        return "gpt2", dict(
            arch=ARCHS["gpt2"], n_layer=_need(cfg, "n_layer", "num_hidden_layers"), d_model=C,
            n_head=_need(cfg, "n_head", "num_attention_heads"), d_ff=inner if inner else 4 * C,
            vocab=_need(cfg, "vocab_size"), max_pos=_need(cfg, "n_positions", "max_position_embeddings"),
            norm_eps=_need(cfg, "layer_norm_epsilon", default=1e-5, kind=float))
    if mt in _LLAMA_TYPES:
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise BadRequestError(f"llama activation '{act}' is not supported (silu)", param="model")
        C = _need(cfg, "hidden_size")
        nh = _need(cfg, "num_attention_heads")
        rope = dict(cfg.get("rope_parameters") or {})
        rope.update(cfg.get("rope_scaling") or {})
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        rtype = rope.get("rope_type", rope.get("type", "default"))
        out = dict(
            arch=ARCHS["llama"], n_layer=_need(cfg, "num_hidden_layers"), d_model=C, n_head=nh,
            n_kv_head=_need(cfg, "num_key_value_heads", default=nh),
            head_dim=_need(cfg, "head_dim", default=C // nh if nh else 0),
            d_ff=_need(cfg, "intermediate_size"), vocab=_need(cfg, "vocab_size"),
            max_pos=_need(cfg, "max_position_embeddings", default=2048),
            norm_eps=_need(cfg, "rms_norm_eps", default=1e-6, kind=float), rope_theta=float(theta),
            attn_bias=bool(cfg.get("attention_bias", mt == "qwen2")),
            proj_bias=bool(cfg.get("attention_bias", False)) and mt != "qwen2",
            mlp_bias=bool(cfg.get("mlp_bias", False)))
        if rtype in (None, "default"):
            pass
        elif rtype == "linear":
            out.update(rope_scaling=_core.ROPE_LINEAR, rope_factor=float(rope["factor"]))
        elif rtype == "llama3":
            out.update(rope_scaling=_core.ROPE_LLAMA3, rope_factor=float(rope["factor"]),
                       rope_low_freq_factor=float(rope["low_freq_factor"]),
                       rope_high_freq_factor=float(rope["high_freq_factor"]),
                       rope_original_max_pos=int(rope["original_max_position_embeddings"]))
        else:
            raise BadRequestError(f"rope scaling '{rtype}' is not supported (linear, llama3)", param="model")
        return "llama", out
    if mt == "bert":
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise BadRequestError("only absolute position embeddings are supported for bert", param="model")
        act = cfg.get("hidden_act", "gelu")
        if act != "gelu":
            raise BadRequestError(f"bert activation '{act}' is not supported (gelu)", param="model")
        return "bert", dict(
            arch=ARCHS["bert"], n_layer=_need(cfg, "num_hidden_layers"), d_model=_need(cfg, "hidden_size"),
            n_head=_need(cfg, "num_attention_heads"), d_ff=_need(cfg, "intermediate_size"),
            vocab=_need(cfg, "vocab_size"), max_pos=_need(cfg, "max_position_embeddings"),
            type_vocab=_need(cfg, "type_vocab_size", default=2),
            norm_eps=_need(cfg, "layer_norm_eps", default=1e-12, kind=float))
    raise BadRequestError(f"model_type '{mt}' is not supported (gpt2, llama, bert)", param="model")


def _strip_prefix(store: TensorStore, prefixes: Tuple[str, ...]) -> Callable[[str], str]:
    """Checkpoints saved from a task model carry a prefix ('transformer.',
    'bert.', 'model.'); find the one in use."""
    names = store.names()
    for p in prefixes:
        if any(n.startswith(p) for n in names):
            return lambda n, p=p: p + n
    return lambda n: n


def weight_plan(family: str, cfg: dict, ecfg: dict, store: TensorStore):
    """Yield (slot, array, transposed) for every engine slot, and the set of
    checkpoint tensors used (for the parameter count)."""
    used = set()

    def get(name):
        used.add(name)
        return store.f32(name)

    L = ecfg["n_layer"]
    plan = []
    if family == "gpt2":
        t = _strip_prefix(store, ("transformer.",))
        plan += [("tok_embd", lambda: get(t("wte.weight")), False),
                 ("pos_embd", lambda: get(t("wpe.weight")), False)]
        for i in range(L):
            h = f"h.{i}."
            plan += [
                (f"layers.{i}.attn_norm.weight", lambda h=h: get(t(h + "ln_1.weight")), False),
                (f"layers.{i}.attn_norm.bias", lambda h=h: get(t(h + "ln_1.bias")), False),
                (f"layers.{i}.qkv.weight", lambda h=h: get(t(h + "attn.c_attn.weight")), True),
                (f"layers.{i}.qkv.bias", lambda h=h: get(t(h + "attn.c_attn.bias")), False),
                (f"layers.{i}.proj.weight", lambda h=h: get(t(h + "attn.c_proj.weight")), True),
                (f"layers.{i}.proj.bias", lambda h=h: get(t(h + "attn.c_proj.bias")), False),
                (f"layers.{i}.ffn_norm.weight", lambda h=h: get(t(h + "ln_2.weight")), False),
                (f"layers.{i}.ffn_norm.bias", lambda h=h: get(t(h + "ln_2.bias")), False),
                (f"layers.{i}.up.weight", lambda h=h: get(t(h + "mlp.c_fc.weight")), True),
                (f"layers.{i}.up.bias", lambda h=h: get(t(h + "mlp.c_fc.bias")), False),
                (f"layers.{i}.down.weight", lambda h=h: get(t(h + "mlp.c_proj.weight")), True),
                (f"layers.{i}.down.bias", lambda h=h: get(t(h + "mlp.c_proj.bias")), False),
            ]
        plan += [("norm.weight", lambda: get(t("ln_f.weight")), False),
                 ("norm.bias", lambda: get(t("ln_f.bias")), False)]
        tied = cfg.get("tie_word_embeddings", True) or not store.has("lm_head.weight")
        plan.append(("lm_head.weight", (lambda: get(t("wte.weight"))) if tied else (lambda: get("lm_head.weight")),
                     False))
    elif family == "llama":
        t = _strip_prefix(store, ("model.",))
        plan.append(("tok_embd", lambda: get(t("embed_tokens.weight")), False))
        for i in range(L):
            p = f"layers.{i}."

            def qkv(p=p, kind="weight"):
                return np.concatenate([get(t(p + f"self_attn.{x}_proj.{kind}")) for x in "qkv"], axis=0)

            def gate_up(p=p, kind="weight"):
                return np.concatenate([get(t(p + f"mlp.{x}_proj.{kind}")) for x in ("gate", "up")], axis=0)

            plan += [
                (f"layers.{i}.attn_norm.weight", lambda p=p: get(t(p + "input_layernorm.weight")), False),
                (f"layers.{i}.qkv.weight", qkv, False),
                (f"layers.{i}.proj.weight", lambda p=p: get(t(p + "self_attn.o_proj.weight")), False),
                (f"layers.{i}.ffn_norm.weight", lambda p=p: get(t(p + "post_attention_layernorm.weight")), False),
                (f"layers.{i}.up.weight", gate_up, False),
                (f"layers.{i}.down.weight", lambda p=p: get(t(p + "mlp.down_proj.weight")), False),
            ]
            if ecfg.get("attn_bias"):
                plan.append((f"layers.{i}.qkv.bias", lambda p=p: qkv(p, "bias"), False))
            if ecfg.get("proj_bias"):
                plan.append((f"layers.{i}.proj.bias", lambda p=p: get(t(p + "self_attn.o_proj.bias")), False))
            if ecfg.get("mlp_bias"):
                plan += [(f"layers.{i}.up.bias", lambda p=p: gate_up(p, "bias"), False),
                         (f"layers.{i}.down.bias", lambda p=p: get(t(p + "mlp.down_proj.bias")), False)]
        plan.append(("norm.weight", lambda: get(t("norm.weight")), False))
        tied = cfg.get("tie_word_embeddings", False) or not store.has("lm_head.weight")
        plan.append(("lm_head.weight",
                     (lambda: get(t("embed_tokens.weight"))) if tied else (lambda: get("lm_head.weight")), False))
    else:  # bert
        t = _strip_prefix(store, ("bert.",))

        def ln(prefix, kind):
            # old checkpoints call LayerNorm's parameters gamma / beta
            alt = {"weight": "gamma", "bias": "beta"}[kind]
            name = t(f"{prefix}LayerNorm.{kind}")
            return get(name if store.has(name) else t(f"{prefix}LayerNorm.{alt}"))

        plan += [("tok_embd", lambda: get(t("embeddings.word_embeddings.weight")), False),
                 ("pos_embd", lambda: get(t("embeddings.position_embeddings.weight")), False),
                 ("type_embd", lambda: get(t("embeddings.token_type_embeddings.weight")), False),
                 ("emb_norm.weight", lambda: ln("embeddings.", "weight"), False),
                 ("emb_norm.bias", lambda: ln("embeddings.", "bias"), False)]
        for i in range(L):
            p = f"encoder.layer.{i}."

            def qkv(p=p, kind="weight"):
                return np.concatenate([get(t(p + f"attention.self.{x}.{kind}")) for x in ("query", "key", "value")],
                                      axis=0)

            plan += [
                (f"layers.{i}.qkv.weight", qkv, False),
                (f"layers.{i}.qkv.bias", lambda p=p: qkv(p, "bias"), False),
                (f"layers.{i}.proj.weight", lambda p=p: get(t(p + "attention.output.dense.weight")), False),
                (f"layers.{i}.proj.bias", lambda p=p: get(t(p + "attention.output.dense.bias")), False),
                (f"layers.{i}.attn_out_norm.weight", lambda p=p: ln(p + "attention.output.", "weight"), False),
                (f"layers.{i}.attn_out_norm.bias", lambda p=p: ln(p + "attention.output.", "bias"), False),
                (f"layers.{i}.up.weight", lambda p=p: get(t(p + "intermediate.dense.weight")), False),
                (f"layers.{i}.up.bias", lambda p=p: get(t(p + "intermediate.dense.bias")), False),
                (f"layers.{i}.down.weight", lambda p=p: get(t(p + "output.dense.weight")), False),
                (f"layers.{i}.down.bias", lambda p=p: get(t(p + "output.dense.bias")), False),
                (f"layers.{i}.ffn_out_norm.weight", lambda p=p: ln(p + "output.", "weight"), False),
                (f"layers.{i}.ffn_out_norm.bias", lambda p=p: ln(p + "output.", "bias"), False),
            ]
    return plan, used
