"""Hugging Face model directories (llama, gpt2) to GGUF, the way llama.cpp's
``convert_hf_to_gguf.py`` writes them, so the files load in ecomlm and in
llama.cpp alike.

- llama: ``attn_q`` / ``attn_k`` rows are permuted from Hugging Face's
  rotate-half layout to the adjacent-pair layout of llama.cpp's RoPE; gate and
  up stay separate tensors; a tied lm_head is not written (``output.weight``
  only when untied).
- gpt2: Conv1D weights are transposed to (out, in) rows.
- The tokenizer goes into ``tokenizer.ggml.*`` from tokenizer.json (byte-level
  BPE: tokens, token types, merges, the pre-tokenizer name, special ids, the
  chat template from tokenizer_config.json). When the directory has no
  tokenizer ecomlm can read, the file holds the model only, and a warning
  says so.

Policy (which tensors get the requested type) is ``quantize._target_type``:
matrices in the type, 1-D tensors in F32.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Callable, List, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError
from .gguf import GGMLType, GGUFWriter, ValueType
from .hf import TensorStore, _strip_prefix, engine_config, read_config, safetensors_files

__all__ = ["hf_to_gguf", "permute_qk"]

# ecomlm's (pre-tokenizer, split digits) -> a tokenizer.ggml.pre name llama.cpp knows
_PRE_NAME = {("gpt2", False): "gpt2", ("gpt2", True): "smollm", ("llama3", False): "llama-bpe",
             ("qwen2", False): "qwen2"}
_TOKEN_NORMAL, _TOKEN_CONTROL, _TOKEN_USER_DEFINED = 1, 3, 4


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter: Hugging Face rotate-half rows -> adjacent-pair rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_plan(family: str, cfg: dict, ecfg: dict, store: TensorStore) -> List[Tuple[str, Callable]]:
    """(GGUF tensor name, loader of its fp32 array in GGUF row layout)."""
    L = ecfg["n_layer"]
    plan: List[Tuple[str, Callable]] = []
    if family == "gpt2":
        t = _strip_prefix(store, ("transformer.",))
        plan += [("token_embd.weight", lambda: store.f32(t("wte.weight"))),
                 ("position_embd.weight", lambda: store.f32(t("wpe.weight")))]
        for i in range(L):
            h, b = f"h.{i}.", f"blk.{i}."
            for src, dst, tr in (("ln_1", "attn_norm", False), ("attn.c_attn", "attn_qkv", True),
                                 ("attn.c_proj", "attn_output", True), ("ln_2", "ffn_norm", False),
                                 ("mlp.c_fc", "ffn_up", True), ("mlp.c_proj", "ffn_down", True)):
                plan.append((b + dst + ".weight",
                             lambda n=t(h + src + ".weight"), tr=tr: store.f32(n).T if tr else store.f32(n)))
                plan.append((b + dst + ".bias", lambda n=t(h + src + ".bias"): store.f32(n)))
        plan += [("output_norm.weight", lambda: store.f32(t("ln_f.weight"))),
                 ("output_norm.bias", lambda: store.f32(t("ln_f.bias")))]
        return plan
    t = _strip_prefix(store, ("model.",))
    nh, nkv = ecfg["n_head"], ecfg["n_kv_head"]
    plan.append(("token_embd.weight", lambda: store.f32(t("embed_tokens.weight"))))
    for i in range(L):
        p, b = f"layers.{i}.", f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", lambda p=p: store.f32(t(p + "input_layernorm.weight"))),
            (b + "attn_q.weight", lambda p=p: permute_qk(store.f32(t(p + "self_attn.q_proj.weight")), nh)),
            (b + "attn_k.weight", lambda p=p: permute_qk(store.f32(t(p + "self_attn.k_proj.weight")), nkv)),
            (b + "attn_v.weight", lambda p=p: store.f32(t(p + "self_attn.v_proj.weight"))),
            (b + "attn_output.weight", lambda p=p: store.f32(t(p + "self_attn.o_proj.weight"))),
            (b + "ffn_norm.weight", lambda p=p: store.f32(t(p + "post_attention_layernorm.weight"))),
            (b + "ffn_gate.weight", lambda p=p: store.f32(t(p + "mlp.gate_proj.weight"))),
            (b + "ffn_up.weight", lambda p=p: store.f32(t(p + "mlp.up_proj.weight"))),
            (b + "ffn_down.weight", lambda p=p: store.f32(t(p + "mlp.down_proj.weight"))),
        ]
    plan.append(("output_norm.weight", lambda: store.f32(t("norm.weight"))))
    tied = cfg.get("tie_word_embeddings", False) or not store.has("lm_head.weight")
    if not tied:
        plan.append(("output.weight", lambda: store.f32("lm_head.weight")))
    return plan


def _hparams(w: GGUFWriter, family: str, cfg: dict, ecfg: dict) -> None:
    u32 = ValueType.UINT32
    w.add("general.architecture", family)
    name = cfg.get("_name_or_path") or cfg.get("name")
    if isinstance(name, str) and name:
        w.add("general.name", os.path.basename(name.rstrip("/")))
    a = family
    w.add(f"{a}.block_count", ecfg["n_layer"], u32)
    w.add(f"{a}.context_length", ecfg["max_pos"], u32)
    w.add(f"{a}.embedding_length", ecfg["d_model"], u32)
    w.add(f"{a}.feed_forward_length", ecfg["d_ff"], u32)
    w.add(f"{a}.attention.head_count", ecfg["n_head"], u32)
    if family == "gpt2":
        w.add("gpt2.attention.layer_norm_epsilon", float(ecfg["norm_eps"]), ValueType.FLOAT32)
        return
    w.add("llama.attention.head_count_kv", ecfg["n_kv_head"], u32)
    w.add("llama.vocab_size", ecfg["vocab"], u32)
    w.add("llama.rope.dimension_count", ecfg["head_dim"], u32)
    if ecfg["head_dim"] != ecfg["d_model"] // ecfg["n_head"]:
        w.add("llama.attention.key_length", ecfg["head_dim"], u32)
        w.add("llama.attention.value_length", ecfg["head_dim"], u32)
    w.add("llama.rope.freq_base", float(ecfg["rope_theta"]), ValueType.FLOAT32)
    w.add("llama.attention.layer_norm_rms_epsilon", float(ecfg["norm_eps"]), ValueType.FLOAT32)
    if ecfg.get("rope_scaling") == _core.ROPE_LINEAR:
        w.add("llama.rope.scaling.type", "linear")
        w.add("llama.rope.scaling.factor", float(ecfg["rope_factor"]), ValueType.FLOAT32)


def _tokenizer_metadata(w: GGUFWriter, model_dir: str, vocab_size: int) -> bool:
    """tokenizer.ggml.* from tokenizer.json; False when there is none we can convert."""
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.isfile(path):
        return False
    from .tokenizer import Tokenizer

    tok = Tokenizer.from_file(model_dir)
    if tok.model_type != "bpe" or not tok.config.get("byte_level", 1):
        return False
    pre = _PRE_NAME.get((tok.config["pre"], bool(tok.config["split_digits"])))
    if pre is None:
        return False
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    model = data["model"]
    n = max(vocab_size, max(model["vocab"].values()) + 1,
            max((a["id"] for a in data.get("added_tokens") or []), default=-1) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]  # llama.cpp's filler for ids the tokenizer lacks
    types = [_TOKEN_USER_DEFINED] * n
    for t, i in model["vocab"].items():
        tokens[i], types[i] = t, _TOKEN_NORMAL
    for a in data.get("added_tokens") or []:
        tokens[a["id"]] = a["content"]
        types[a["id"]] = _TOKEN_CONTROL if a.get("special") else _TOKEN_USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", pre)
    w.add("tokenizer.ggml.tokens", tokens, ValueType.ARRAY, ValueType.STRING)
    w.add("tokenizer.ggml.token_type", types, ValueType.ARRAY, ValueType.INT32)
    w.add("tokenizer.ggml.merges", merges, ValueType.ARRAY, ValueType.STRING)
    for key, val in (("bos_token_id", tok.bos_id), ("eos_token_id", tok.eos_id), ("unknown_token_id", tok.unk_id),
                     ("padding_token_id", tok.pad_id)):
        if val is not None:
            w.add(f"tokenizer.ggml.{key}", int(val), ValueType.UINT32)
    w.add("tokenizer.ggml.add_bos_token", bool(tok.add_bos), ValueType.BOOL)
    w.add("tokenizer.ggml.add_eos_token", bool(tok.add_eos), ValueType.BOOL)
    if tok.chat_template:
        w.add("tokenizer.chat_template", tok.chat_template)
    return True


def hf_to_gguf(model_dir: str, out_path: str, qtype: int, progress=None) -> dict:
    """Write the Hugging Face llama or gpt2 directory ``model_dir`` as a GGUF
    file with its matrices in ``qtype``. Returns {tensor name: type name}."""
    from .quantize import _FILE_TYPE, _target_type

    cfg = read_config(model_dir)
    family, ecfg = engine_config(cfg)
    if family not in ("llama", "gpt2"):
        raise BadRequestError(f"converting {family} models to GGUF is not supported (llama, gpt2)", param="model")
    if family == "llama" and (ecfg.get("attn_bias") or ecfg.get("proj_bias") or ecfg.get("mlp_bias")):
        raise BadRequestError("llama models with biases cannot be converted to GGUF yet", param="model")
    if family == "llama" and ecfg.get("rope_scaling") not in (None, _core.ROPE_LINEAR):
        raise BadRequestError("only linear rope scaling can be written to GGUF", param="model")
    store = TensorStore(safetensors_files(model_dir))
    w = GGUFWriter(out_path)
    _hparams(w, family, cfg, ecfg)
    w.add("general.file_type", _FILE_TYPE.get(qtype, 0), ValueType.UINT32)
    if not _tokenizer_metadata(w, model_dir, ecfg["vocab"]):
        warnings.warn(f"{model_dir}: no byte-level BPE tokenizer.json; the GGUF holds the model only",
                      stacklevel=2)
    plan = _tensor_plan(family, cfg, ecfg, store)
    written = {}
    for i, (name, load) in enumerate(plan):
        arr = np.ascontiguousarray(load(), dtype=np.float32)
        target = _target_type(arr.shape, qtype)
        if target == GGMLType.F32:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, _core.quantize(arr, target), target, shape=arr.shape)
        written[name] = _core.type_info(target)[0]
        if progress is not None:
            progress(i + 1, len(plan))
    w.write()
    return written
