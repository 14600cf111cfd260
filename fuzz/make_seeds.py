"""Write small GGUF seed files for the fuzzer with the PyPI gguf package:
every metadata value type, nested arrays, and tensors of several ggml types."""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFValueType as V


def write(path, n_tensors, alignment=None):
    w = gguf.GGUFWriter(path, "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 7)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 700)
    w.add_int16("t.i16", -700)
    w.add_uint32("t.u32", 70000)
    w.add_int32("t.i32", -70000)
    w.add_float32("t.f32", 1.5)
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_array("t.arr_i32", [1, 2, 3])
    w.add_array("t.arr_str", ["a", "bc", ""])
    w.add_key_value("t.nested", [[1, 2], [3]], V.ARRAY, V.ARRAY)
    rng = np.random.default_rng(0)
    types = [T.F32, T.F16, T.Q8_0, T.Q4_0, T.Q4_1, T.BF16]
    for i in range(n_tensors):
        t = types[i % len(types)]
        x = rng.standard_normal((2, 64)).astype(np.float32)
        data = gguf.quants.quantize(x, t)
        w.add_tensor(f"blk.{i}.weight", data, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "seeds_gguf")
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "all_types.gguf"), 6)
    write(os.path.join(out, "aligned64.gguf"), 2, alignment=64)
    write(os.path.join(out, "no_tensors.gguf"), 0)
