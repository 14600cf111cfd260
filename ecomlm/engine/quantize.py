"""Convert a GGUF model, or a Hugging Face llama / gpt2 directory of
safetensors, to a quantised GGUF (``ecomlm quantize IN OUT --type q4_k``).

Policy, like llama.cpp's: 2-D weight matrices are quantised to the requested
type; 1-D tensors (norms, biases) are stored as F32. When a matrix's row length
is not a multiple of the K-quant super-block (256), it falls back to a
32-block type of about the same size: Q4_K -> Q4_1, Q5_K and Q6_K -> Q8_0
(llama.cpp falls back to Q5_0 / Q5_1 / Q8_0; ecomlm computes with Q4_1 and
Q8_0 instead). Quantised inputs are dequantised first (requantising compounds
errors: start from an F32/F16/BF16 model when you can). The token embedding
is quantised too.
"""

from __future__ import annotations

import os

import numpy as np

from .. import _core
from ..errors import BadRequestError, NotFoundError
from .gguf import GGMLType, GGUFReader, GGUFWriter, ValueType, copy_metadata

__all__ = ["QUANT_TYPES", "quantize_file"]

QUANT_TYPES = {
    "f32": GGMLType.F32, "f16": GGMLType.F16, "bf16": GGMLType.BF16, "q8_0": GGMLType.Q8_0,
    "q4_0": GGMLType.Q4_0, "q4_1": GGMLType.Q4_1, "q4_k": GGMLType.Q4_K, "q5_k": GGMLType.Q5_K,
    "q6_k": GGMLType.Q6_K,
}
_FALLBACK = {GGMLType.Q4_K: GGMLType.Q4_1, GGMLType.Q5_K: GGMLType.Q8_0, GGMLType.Q6_K: GGMLType.Q8_0}
# llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) for a file of mostly this type.
_FILE_TYPE = {GGMLType.F32: 0, GGMLType.F16: 1, GGMLType.Q4_0: 2, GGMLType.Q4_1: 3, GGMLType.Q8_0: 7,
              GGMLType.Q4_K: 14, GGMLType.Q5_K: 16, GGMLType.Q6_K: 18, GGMLType.BF16: 32}


def _target_type(shape: tuple, qtype: int) -> int:
    if len(shape) != 2:
        return GGMLType.F32
    bs = _core.type_info(qtype)[1]
    if shape[-1] % bs == 0:
        return qtype
    fb = _FALLBACK.get(qtype, GGMLType.F16)
    return fb if shape[-1] % _core.type_info(fb)[1] == 0 else GGMLType.F16


def quantize_file(in_path: str | os.PathLike, out_path: str | os.PathLike, type: str | int = "q8_0",
                  progress=None) -> dict:
    """Write ``out_path``: the GGUF ``in_path`` with its weight matrices in ``type``.
    A directory ``in_path`` is a Hugging Face model (config.json, *.safetensors,
    tokenizer.json), converted as llama.cpp's converter does (see convert.py).

    Returns ``{tensor name: ggml type name}`` of what was written. ``progress``,
    if given, is called as ``progress(done, total)`` after each tensor.
    """
    qtype = QUANT_TYPES.get(type.lower()) if isinstance(type, str) else int(type)
    if qtype is None or qtype not in QUANT_TYPES.values():
        raise BadRequestError(f"unknown quantisation type {type!r}; choose from {', '.join(QUANT_TYPES)}",
                              param="type")
    in_path = os.fspath(in_path)
    if os.path.abspath(in_path) == os.path.abspath(os.fspath(out_path)):
        raise BadRequestError("the output must be a different file from the input", param="out_path")
    if os.path.isdir(in_path):
        from .convert import hf_to_gguf

        return hf_to_gguf(in_path, os.fspath(out_path), qtype, progress=progress)
    if not os.path.isfile(in_path):
        raise NotFoundError(f"no such file or directory: {in_path}", param="in_path")
    r = GGUFReader(in_path)
    w = GGUFWriter(out_path, alignment=r.alignment)
    copy_metadata(r, w, skip=["general.file_type"])
    w.add("general.file_type", _FILE_TYPE.get(qtype, 0), ValueType.UINT32)
    written = {}
    for i, t in enumerate(r.tensors):
        target = _target_type(t.shape, qtype)
        if t.type == target:
            raw = r.raw(t.name)
        else:
            x = r.dequantize(t.name)
            raw = _core.quantize(np.ascontiguousarray(x, np.float32), target)
        w.add_tensor(t.name, raw, target, t.shape)
        written[t.name] = _core.type_info(target)[0]
        if progress is not None:
            progress(i + 1, len(r.tensors))
    w.write()
    return written
