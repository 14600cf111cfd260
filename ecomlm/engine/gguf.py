"""GGUF files: a validating, memory-mapped reader and a NumPy writer.

The reader wraps ``ecomlm._core.GGUFFile``, whose C parser checks every count,
length, offset and the alignment against the file size before use, so a corrupt
or hostile file raises :class:`ecomlm.errors.ModelFormatError` instead of
crashing. Tensor bytes come back as zero-copy read-only views of the mapping.

The writer produces GGUF version 3 files (little-endian) that both this reader
and the PyPI ``gguf`` package read back identically.

Shapes are in PyTorch order (rows first): a weight of ``[N, K]`` has ggml
``ne = [K, N]`` and is stored as N rows of K elements.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .. import _core
from ..errors import ModelFormatError

__all__ = ["GGMLType", "ValueType", "GGUFReader", "GGUFWriter", "GGUFTensor", "type_id", "type_name"]


class GGMLType:
    """GGML tensor type ids (the numbers stored in GGUF files)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    BF16 = 30


class ValueType:
    """GGUF metadata value type ids."""

    UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)


_SCALAR_FMT = {
    ValueType.UINT8: "<B", ValueType.INT8: "<b", ValueType.UINT16: "<H", ValueType.INT16: "<h",
    ValueType.UINT32: "<I", ValueType.INT32: "<i", ValueType.FLOAT32: "<f", ValueType.BOOL: "<?",
    ValueType.UINT64: "<Q", ValueType.INT64: "<q", ValueType.FLOAT64: "<d",
}


def type_id(t: int | str) -> int:
    """A ggml type id from an id or a name such as ``"q4_k"``."""
    if isinstance(t, str):
        v = getattr(GGMLType, t.upper(), None)
        if v is None:
            raise ValueError(f"unknown ggml type {t!r}")
        return v
    return int(t)


def type_name(t: int) -> str:
    return _core.type_info(int(t))[0]


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    type: int                 # ggml type id
    shape: tuple              # PyTorch order (reversed ggml ne)
    offset: int               # from the start of the data section
    nbytes: int

    @property
    def type_name(self) -> str:
        return type_name(self.type)


class GGUFReader:
    """A GGUF file (versions 2 and 3), mapped read-only and validated on open.

    >>> r = GGUFReader("model.gguf")
    >>> r.metadata["general.architecture"], r.tensors[0].shape
    >>> w = r.dequantize("blk.0.attn_q.weight")   # float32 [N, K]
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = _core.GGUFFile(self.path)
        self.version: int = self._file.version
        self.alignment: int = self._file.alignment
        self.data_offset: int = self._file.data_offset
        self._metadata: dict | None = None
        self._types: dict | None = None
        self.tensors: list[GGUFTensor] = [GGUFTensor(*t) for t in self._file.tensors()]
        self._by_name = {t.name: t for t in self.tensors}

    @property
    def metadata(self) -> dict[str, Any]:
        """Every key: ints, floats, bools, str (bytes if not UTF-8), lists for arrays."""
        if self._metadata is None:
            self._metadata = self._file.metadata()
        return self._metadata

    @property
    def metadata_types(self) -> dict[str, tuple]:
        """{key: (value type,) or (ValueType.ARRAY, element type)}."""
        if self._types is None:
            self._types = self._file.metadata_types()
        return self._types

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def tensor(self, name: str) -> GGUFTensor:
        try:
            return self._by_name[name]
        except KeyError:
            from ..errors import NotFoundError
            raise NotFoundError(f"no tensor named {name!r} in {self.path}") from None

    def raw(self, name: str) -> np.ndarray:
        """The tensor's bytes: a read-only uint8 view that keeps the file mapped."""
        return self._file.tensor_data(name)

    def dequantize(self, name: str) -> np.ndarray:
        """The tensor as float32 in its PyTorch shape (exactly as gguf.quants.dequantize)."""
        t = self.tensor(name)
        return _core.dequantize(self.raw(name), t.type, t.shape)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __repr__(self) -> str:
        return (f"GGUFReader({self.path!r}, version={self.version}, {len(self.metadata)} keys, "
                f"{len(self.tensors)} tensors)")


# ----------------------------------------------------------------------- writer

def _infer_type(value: Any) -> int:
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, (int, np.integer)):
        return ValueType.INT32 if -2**31 <= int(value) < 2**31 else ValueType.INT64
    if isinstance(value, (float, np.floating)):
        return ValueType.FLOAT32
    if isinstance(value, (str, bytes, bytearray)):
        return ValueType.STRING
    if isinstance(value, (list, tuple)):
        return ValueType.ARRAY
    raise TypeError(f"cannot store a {type(value).__name__} in GGUF metadata")


def _pack_string(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(value: Any, vtype: int, elem_type: int | None = None) -> bytes:
    if vtype == ValueType.STRING:
        return _pack_string(value)
    if vtype == ValueType.ARRAY:
        items = list(value)
        if elem_type is None:
            elem_type = _infer_type(items[0]) if items else ValueType.INT32
            if elem_type == ValueType.INT32 and any(_infer_type(v) == ValueType.INT64 for v in items):
                elem_type = ValueType.INT64
        head = struct.pack("<IQ", elem_type, len(items))
        if elem_type in _SCALAR_FMT and elem_type != ValueType.BOOL:
            dt = np.dtype(_SCALAR_FMT[elem_type])
            return head + np.asarray(items, dtype=dt).tobytes()
        return head + b"".join(_pack_value(v, elem_type) for v in items)
    if vtype not in _SCALAR_FMT:
        raise ValueError(f"unknown GGUF value type {vtype}")
    return struct.pack(_SCALAR_FMT[vtype], value)


class GGUFWriter:
    """Write a GGUF v3 file: metadata first, then tensors, then :meth:`write`.

    >>> w = GGUFWriter("out.gguf")
    >>> w.add("general.architecture", "llama")
    >>> w.add("llama.block_count", 2, ValueType.UINT32)
    >>> w.add_tensor("tok.weight", raw_uint8_or_float_array, GGMLType.Q8_0, shape=(N, K))
    >>> w.write()
    """

    def __init__(self, path: str | os.PathLike, alignment: int = 32):
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a power of two, got {alignment}")
        self.path = os.fspath(path)
        self.alignment = alignment
        self._kv: dict[str, tuple] = {}
        self._tensors: list[tuple[str, int, tuple, np.ndarray]] = []
        if alignment != 32:
            self.add("general.alignment", alignment, ValueType.UINT32)

    def add(self, key: str, value: Any, vtype: int | None = None, elem_type: int | None = None) -> None:
        """Add a metadata key; the type is inferred when not given (int -> INT32/INT64,
        float -> FLOAT32, list -> ARRAY of the first element's type)."""
        if key in self._kv:
            raise ValueError(f"duplicate metadata key {key!r}")
        self._kv[key] = (value, _infer_type(value) if vtype is None else int(vtype), elem_type)

    def add_tensor(self, name: str, data: np.ndarray, qtype: int | str | None = None,
                   shape: Iterable[int] | None = None) -> None:
        """Add a tensor. ``data`` is either an array of F32/F16 values (stored as such
        when qtype is None) or the raw uint8 bytes of ``qtype`` with ``shape`` given in
        PyTorch order."""
        if any(t[0] == name for t in self._tensors):
            raise ValueError(f"duplicate tensor name {name!r}")
        data = np.ascontiguousarray(data)
        if qtype is None:
            qtype = {np.dtype(np.float32): GGMLType.F32, np.dtype(np.float16): GGMLType.F16}.get(data.dtype)
            if qtype is None:
                raise TypeError(f"tensor {name!r}: give qtype for {data.dtype} data")
            shape = data.shape if shape is None else tuple(shape)
            raw = data.view(np.uint8).reshape(-1)
        else:
            qtype = type_id(qtype)
            shape = tuple(int(s) for s in (data.shape if shape is None else shape))
            raw = data.view(np.uint8).reshape(-1)
        n = int(np.prod(shape)) if shape else 1
        _, bs, bb, _ = _core.type_info(qtype)
        if not shape or shape[-1] % bs or n // bs * bb != raw.nbytes:
            raise ValueError(f"tensor {name!r}: {raw.nbytes} bytes do not hold {shape} of {type_name(qtype)}")
        self._tensors.append((name, qtype, shape, raw))

    def write(self) -> None:
        header = [struct.pack("<IIQQ", 0x46554747, 3, len(self._tensors), len(self._kv))]
        for key, (value, vtype, elem_type) in self._kv.items():
            header.append(_pack_string(key) + struct.pack("<I", vtype) + _pack_value(value, vtype, elem_type))
        offset = 0
        offsets = []
        for name, qtype, shape, raw in self._tensors:
            ne = tuple(reversed(shape))
            header.append(_pack_string(name) + struct.pack("<I", len(ne)) +
                          struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", qtype, offset))
            offsets.append(offset)
            offset += -(-raw.nbytes // self.alignment) * self.alignment
        blob = b"".join(header)
        pad = -len(blob) % self.alignment
        with open(self.path, "wb") as f:
            f.write(blob + b"\0" * pad)
            for (name, qtype, shape, raw), off in zip(self._tensors, offsets):
                f.write(raw.tobytes())
                f.write(b"\0" * (-raw.nbytes % self.alignment))


def copy_metadata(reader: GGUFReader, writer: GGUFWriter, skip: Iterable[str] = ()) -> None:
    """Copy every metadata key of ``reader`` into ``writer`` with its exact types."""
    skip = set(skip) | {"general.alignment"}
    types = reader.metadata_types
    for key, value in reader.metadata.items():
        if key in skip:
            continue
        t = types[key]
        writer.add(key, value, t[0], t[1] if len(t) > 1 else None)
