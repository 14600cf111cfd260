"""Read and write safetensors files.

Reading goes through the C engine (``_core.SafeTensors``), which memory-maps
the file and validates every header field against the file's size before a
tensor is handed out; tensors come back as zero-copy, read-only NumPy views.
Writing is plain Python: a JSON header and the raw little-endian bytes.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError

__all__ = ["SafeTensorsFile", "save_file", "load_file", "to_float32"]

_NP_TO_ST = {
    np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
}


def to_float32(array: np.ndarray, dtype: str) -> np.ndarray:
    """A float32 copy (or view, for F32) of a tensor read with dtype `dtype`."""
    if dtype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("F32", "F16", "F64"):
        return np.asarray(array, dtype=np.float32)
    raise BadRequestError(f"tensor of dtype {dtype} is not a floating-point weight")


class SafeTensorsFile:
    """A validated, memory-mapped safetensors file.

    >>> f = SafeTensorsFile("model.safetensors")
    >>> f.names()[:2], f.dtype("wte.weight"), f.shape("wte.weight")
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._f = _core.SafeTensors(self.path)

    def names(self) -> list:
        return self._f.names()

    def __contains__(self, name: str) -> bool:
        return name in set(self._f.names())

    def dtype(self, name: str) -> str:
        return self._f.info(name)[0]

    def shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self._f.info(name)[1])

    def raw(self, name: str) -> np.ndarray:
        """The tensor as stored (BF16 as uint16 bits), a read-only view."""
        return self._f.tensor(name)

    def get(self, name: str) -> np.ndarray:
        """The tensor in its NumPy dtype; BF16 is widened to float32."""
        dt = self.dtype(name)
        arr = self._f.tensor(name)
        return to_float32(arr, dt) if dt == "BF16" else arr

    def metadata(self) -> Optional[Dict[str, str]]:
        text = self._f.metadata_json()
        return None if text is None else json.loads(text)

    def items(self) -> Iterator[Tuple[str, np.ndarray]]:
        for name in self.names():
            yield name, self.get(name)


def load_file(path: str | os.PathLike) -> Dict[str, np.ndarray]:
    """All tensors of a file as a dict of arrays (views into the mapping)."""
    f = SafeTensorsFile(path)
    return dict(f.items())


def save_file(tensors: Mapping[str, np.ndarray], path: str | os.PathLike,
              metadata: Optional[Mapping[str, str]] = None, bf16: Tuple[str, ...] = ()) -> None:
    """Write `tensors` to `path` (atomically: a temporary file, then rename).

    Names listed in `bf16` are stored as BF16 (rounded to nearest even).
    """
    header: Dict[str, object] = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise BadRequestError("metadata must map str to str", param="metadata")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    # widest dtypes first keeps every tensor aligned to its element size
    # (the data section has no padding between tensors)
    def order(name):
        arr = tensors[name]
        return (-(2 if name in bf16 else np.asarray(arr).dtype.itemsize), name)

    for name in sorted(tensors, key=order):
        arr = np.ascontiguousarray(tensors[name])
        if name in bf16:
            bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
            rounded = bits + 0x7FFF + ((bits >> 16) & 1)
            data = (rounded >> 16).astype("<u2").tobytes()
            dt = "BF16"
        else:
            if arr.dtype not in _NP_TO_ST:
                raise BadRequestError(f"tensor '{name}' has unsupported dtype {arr.dtype}", param="tensors")
            dt = _NP_TO_ST[arr.dtype]
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the data section 8-byte aligned
    tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
