"""The GGUF reader and writer: agreement with the PyPI gguf package on the real
model file, writer round trips, and hostile files that must raise
ModelFormatError with a clear message, never crash."""

import os
import shutil
import struct
import subprocess

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from ecomlm import _core  # noqa: E402
from ecomlm.engine.gguf import GGMLType, GGUFReader, GGUFWriter, ValueType, copy_metadata  # noqa: E402
from ecomlm.errors import ModelFormatError, NotFoundError  # noqa: E402

from gguf_files import smollm2_q4_1  # noqa: E402

V = ValueType


# ----------------------------------------------------------- raw file builder

def s(b):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, payload):
    return s(key) + struct.pack("<I", vtype) + payload


def tinfo(name, ne, ttype, offset):
    return s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}q", *ne) + struct.pack("<IQ", ttype, offset)


def build(kvs=(), tensors=(), data=b"", version=3, n_kv=None, n_tensors=None, alignment=32, magic=b"GGUF"):
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + b"\0" * (-len(body) % alignment) + data


def valid_parts():
    """A small valid file: two F32 tensors of 8 elements, a few keys."""
    kvs = [kv("general.architecture", V.STRING, s("llama")),
           kv("llama.block_count", V.UINT32, struct.pack("<I", 2)),
           kv("tokens", V.ARRAY, struct.pack("<IQ", V.STRING, 2) + s("a") + s("bc"))]
    tensors = [tinfo("a", [8], GGMLType.F32, 0), tinfo("b", [8], GGMLType.F32, 32)]
    data = np.arange(8, dtype=np.float32).tobytes() + b"\0" * 0 + np.ones(8, np.float32).tobytes()
    return kvs, tensors, data


@pytest.fixture
def write(tmp_path):
    counter = [0]

    def _write(blob):
        counter[0] += 1
        p = tmp_path / f"f{counter[0]}.gguf"
        p.write_bytes(blob)
        return str(p)
    return _write


def test_valid_raw_file(write):
    r = GGUFReader(write(build(*valid_parts())))
    assert r.version == 3 and r.alignment == 32
    assert r.metadata == {"general.architecture": "llama", "llama.block_count": 2, "tokens": ["a", "bc"]}
    np.testing.assert_array_equal(r.dequantize("a"), np.arange(8, dtype=np.float32))
    assert r.raw("b").flags.writeable is False
    with pytest.raises(NotFoundError):
        r.raw("nope")


def expect_format_error(path, match):
    with pytest.raises(ModelFormatError, match=match):
        _core.GGUFFile(path)


HOSTILE = {
    "bad magic": (lambda: build(magic=b"GGUX"), "not a GGUF file"),
    "version 1": (lambda: build(version=1), "version 1"),
    "version 4": (lambda: build(version=4), "version 4"),
    "big-endian": (lambda: build(version=3 << 24), "big-endian"),
    "huge n_kv": (lambda: build(n_kv=2**62), "metadata entries cannot fit"),
    "huge n_tensors": (lambda: build(n_tensors=2**63 - 1), "tensors cannot fit"),
    "n_tensors past metadata": (lambda: build(kvs=[kv("k", V.UINT8, b"\1")] * 1, n_tensors=1), "cannot fit|past the end"),
    "key length past end": (lambda: build(kvs=[s("k")[:0] + struct.pack("<Q", 2**40) + b"abc"]), "string length"),
    "value string past end": (lambda: build(kvs=[kv("k", V.STRING, struct.pack("<Q", 1000) + b"xy")]),
                              "string length 1000"),
    "bad value type": (lambda: build(kvs=[kv("k", 13, b"\0" * 8)]), "unknown metadata value type 13"),
    "bad array elem type": (lambda: build(kvs=[kv("k", V.ARRAY, struct.pack("<IQ", 99, 1) + b"\0" * 8)]),
                            "unknown element type 99"),
    "huge array count": (lambda: build(kvs=[kv("k", V.ARRAY, struct.pack("<IQ", V.UINT32, 2**61))]),
                         "cannot fit"),
    "huge string array": (lambda: build(kvs=[kv("k", V.ARRAY, struct.pack("<IQ", V.STRING, 2**40) + s("a"))]),
                          "cannot fit"),
    "nested too deep": (lambda: build(kvs=[kv("k", V.ARRAY, struct.pack("<IQ", V.ARRAY, 1) * 9 +
                                                struct.pack("<IQ", V.UINT8, 0))]), "nested more than"),
    "bad bool": (lambda: build(kvs=[kv("k", V.BOOL, b"\2")]), "bool value 2"),
    "duplicate key": (lambda: build(kvs=[kv("k", V.UINT8, b"\1"), kv("k", V.UINT8, b"\2")]), "duplicate metadata key"),
    "empty key": (lambda: build(kvs=[kv("", V.UINT8, b"\1")]), "empty"),
    "alignment type": (lambda: build(kvs=[kv("general.alignment", V.UINT64, struct.pack("<Q", 32))]), "uint32"),
    "alignment zero": (lambda: build(kvs=[kv("general.alignment", V.UINT32, struct.pack("<I", 0))]), "power of two"),
    "alignment odd": (lambda: build(kvs=[kv("general.alignment", V.UINT32, struct.pack("<I", 48))]), "power of two"),
    "bad tensor type": (lambda: build(tensors=[tinfo("t", [32], 5, 0)], data=b"\0" * 64), "unknown ggml type id 5"),
    "huge tensor type": (lambda: build(tensors=[tinfo("t", [32], 2**31, 0)], data=b"\0" * 64), "unknown ggml type"),
    "zero dims": (lambda: build(tensors=[tinfo("t", [], 0, 0)], data=b"\0" * 64), "0 dimensions"),
    "five dims": (lambda: build(tensors=[tinfo("t", [1] * 5, 0, 0)], data=b"\0" * 64), "5 dimensions"),
    "negative dim": (lambda: build(tensors=[tinfo("t", [-1], 0, 0)], data=b"\0" * 64), "dimension 0 is -1"),
    "huge dims overflow": (lambda: build(tensors=[tinfo("t", [2**31 - 1] * 4, 0, 0)], data=b"\0" * 64),
                           "overflows|past the end"),
    "row not block multiple": (lambda: build(tensors=[tinfo("t", [31], GGMLType.Q8_0, 0)], data=b"\0" * 64),
                               "not a multiple of 32"),
    "tensor past end": (lambda: build(tensors=[tinfo("t", [64], 0, 0)], data=b"\0" * 128), "runs past the end"),
    "offset past end": (lambda: build(tensors=[tinfo("t", [8], 0, 2**62)], data=b"\0" * 32), "runs past the end"),
    "offset wraps": (lambda: build(tensors=[tinfo("t", [8], 0, 2**64 - 32)], data=b"\0" * 32), "runs past the end"),
    "misaligned": (lambda: build(tensors=[tinfo("t", [8], 0, 4)], data=b"\0" * 64), "not a multiple of the alignment"),
    "overlap": (lambda: build(tensors=[tinfo("a", [16], 0, 0), tinfo("b", [8], 0, 32)], data=b"\0" * 128), "overlap"),
    "duplicate tensor": (lambda: build(tensors=[tinfo("a", [8], 0, 0), tinfo("a", [8], 0, 32)], data=b"\0" * 64),
                         "duplicate tensor name"),
    "empty tensor name": (lambda: build(tensors=[tinfo("", [8], 0, 0)], data=b"\0" * 32), "name of 0 bytes"),
    "tensor name NUL": (lambda: build(tensors=[tinfo("a\0b", [8], 0, 0)], data=b"\0" * 32), "NUL"),
    "tensor name not UTF-8": (lambda: build(tensors=[tinfo(b"a\xdb", [8], 0, 0)], data=b"\0" * 32), "UTF-8"),
    "tensor name too long": (lambda: build(tensors=[tinfo("x" * 300, [8], 0, 0)], data=b"\0" * 32), "300 bytes"),
    "no data section": (lambda: build(tensors=[tinfo("t", [8], 0, 0)])[:-1], "past the end|before its tensor data"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file(case, write):
    make, match = HOSTILE[case]
    expect_format_error(write(make()), match)


def test_truncated_everywhere(write):
    blob = build(*valid_parts())
    end = len(blob)  # the last tensor ends exactly at the end of the file
    for n in range(end):
        with pytest.raises(ModelFormatError):
            _core.GGUFFile(write(blob[:n]))


def test_random_mutations_never_crash(write):
    """A cheap in-process fuzz: flipped bytes either parse or raise ModelFormatError."""
    blob = bytearray(build(*valid_parts()))
    rng = np.random.default_rng(0)
    ok = 0
    for _ in range(400):
        b = bytearray(blob)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        try:
            f = _core.GGUFFile(write(bytes(b)))
            f.metadata()
            for t in f.tensors():
                f.tensor_data(t[0])
            ok += 1
        except ModelFormatError as e:
            assert str(e)
    assert ok > 0


def test_not_found_and_empty(write, tmp_path):
    with pytest.raises(NotFoundError):
        _core.GGUFFile(str(tmp_path / "missing.gguf"))
    expect_format_error(write(b""), "too short")


# ---------------------------------------------------------------- writer

def test_writer_round_trip_all_types(tmp_path):
    path = str(tmp_path / "w.gguf")
    w = GGUFWriter(path, alignment=64)
    values = {
        "u8": (200, V.UINT8), "i8": (-100, V.INT8), "u16": (60000, V.UINT16), "i16": (-30000, V.INT16),
        "u32": (4000000000, V.UINT32), "i32": (-2000000000, V.INT32), "f32": (1.5, V.FLOAT32),
        "bool": (True, V.BOOL), "str": ("héllo wörld", V.STRING), "u64": (2**63 + 5, V.UINT64),
        "i64": (-(2**62), V.INT64), "f64": (0.1, V.FLOAT64),
    }
    for k, (v, t) in values.items():
        w.add(k, v, t)
    w.add("arr.i32", [1, -2, 3])
    w.add("arr.f32", [0.5, 0.25], V.ARRAY, V.FLOAT32)
    w.add("arr.str", ["a", "", "ü"])
    w.add("arr.bool", [True, False], V.ARRAY, V.BOOL)
    w.add("arr.nested", [[1, 2], [3], []], V.ARRAY, V.ARRAY)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, t, shape in [("f32", GGMLType.F32, (3, 5)), ("f16", GGMLType.F16, (4, 7)),
                           ("q8", GGMLType.Q8_0, (2, 64)), ("q41", GGMLType.Q4_1, (3, 32)),
                           ("q4k", GGMLType.Q4_K, (2, 256)), ("q6k", GGMLType.Q6_K, (1, 256)),
                           ("bf16", GGMLType.BF16, (9,))]:
        x = rng.standard_normal(shape).astype(np.float32)
        raw = _core.quantize(x, t)
        w.add_tensor(name, raw, t, shape)
        tensors[name] = (t, shape, raw)
    w.write()

    r = GGUFReader(path)
    assert r.version == 3 and r.alignment == 64
    md = r.metadata
    for k, (v, t) in values.items():
        assert md[k] == (np.float32(v) if t == V.FLOAT32 else v), k
        assert r.metadata_types[k] == (t,)
    assert md["arr.i32"] == [1, -2, 3] and md["arr.f32"] == [0.5, 0.25] and md["arr.str"] == ["a", "", "ü"]
    assert md["arr.bool"] == [True, False] and md["arr.nested"] == [[1, 2], [3], []]
    for name, (t, shape, raw) in tensors.items():
        info = r.tensor(name)
        assert (info.type, info.shape, info.nbytes) == (t, shape, raw.nbytes)
        np.testing.assert_array_equal(r.raw(name), raw.reshape(-1))

    g = gguf.GGUFReader(path)
    assert g.alignment == 64
    for k, (v, t) in values.items():
        c = g.fields[k].contents()
        assert (c == np.float32(v)) if t == V.FLOAT32 else (c == v), k
    assert g.fields["arr.str"].contents() == ["a", "", "ü"]
    assert g.fields["arr.i32"].contents() == [1, -2, 3]
    for t in g.tensors:
        tt, shape, raw = tensors[t.name]
        assert int(t.tensor_type) == tt
        assert tuple(int(n) for n in reversed(t.shape)) == shape
        np.testing.assert_array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), raw.reshape(-1))
        np.testing.assert_array_equal(gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape),
                                      r.dequantize(t.name))


def test_writer_rejects_bad_input(tmp_path):
    w = GGUFWriter(str(tmp_path / "x.gguf"))
    w.add("a", 1)
    with pytest.raises(ValueError):
        w.add("a", 2)
    with pytest.raises(ValueError):
        w.add_tensor("t", np.zeros(33, np.uint8), GGMLType.Q8_0, (32,))
    with pytest.raises(ValueError):
        GGUFWriter(str(tmp_path / "y.gguf"), alignment=48)


# --------------------------------------------------------- the real model file

@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_q4_1()
    if path is None:
        pytest.skip("SmolLM2 Q4_1 GGUF not available (offline)")
    return path


def test_real_file_metadata_and_tensors_match_gguf(smollm2):
    ours = GGUFReader(smollm2)
    theirs = gguf.GGUFReader(smollm2)
    md = ours.metadata
    keys = [k for k in theirs.fields if not k.startswith("GGUF.")]
    assert sorted(md) == sorted(keys)
    for k in keys:
        f = theirs.fields[k]
        assert md[k] == f.contents(), k
        assert ours.metadata_types[k][0] == int(f.types[0]), k
    assert ours.version == 3 and ours.alignment == theirs.alignment
    assert len(ours.tensors) == len(theirs.tensors) == 272
    for a, b in zip(ours.tensors, theirs.tensors):
        assert a.name == b.name and a.type == int(b.tensor_type)
        assert a.shape == tuple(int(n) for n in reversed(b.shape))
        assert ours.data_offset + a.offset == b.data_offset and a.nbytes == b.n_bytes
    assert md["general.architecture"] == "llama" and len(md["tokenizer.ggml.tokens"]) == 49152


def test_real_file_rewrite_identical(smollm2, tmp_path):
    """Copy every key (exact types) and tensor through the writer: the result reads back equal."""
    r = GGUFReader(smollm2)
    out = str(tmp_path / "copy.gguf")
    w = GGUFWriter(out)
    copy_metadata(r, w)
    for t in r.tensors:
        w.add_tensor(t.name, r.raw(t.name), t.type, t.shape)
    w.write()
    r2 = GGUFReader(out)
    assert r2.metadata == r.metadata and r2.metadata_types == r.metadata_types
    assert [(t.name, t.type, t.shape, t.nbytes) for t in r2.tensors] == \
        [(t.name, t.type, t.shape, t.nbytes) for t in r.tensors]
    assert os.path.getsize(out) == os.path.getsize(smollm2)
    with open(out, "rb") as a, open(smollm2, "rb") as b:
        assert a.read() == b.read()  # byte for byte: the same writer conventions as llama.cpp


# --------------------------------------------------------------- fuzz smoke

@pytest.mark.skipif(shutil.which("clang") is None, reason="clang (with libFuzzer) not installed")
def test_fuzz_smoke(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = str(tmp_path / "fuzz_gguf")
    build = subprocess.run(
        ["clang", "-g", "-O1", "-std=gnu11", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
         "-D__builtin_cpu_supports(f)=0", "-I" + os.path.join(root, "csrc"), os.path.join(root, "fuzz", "fuzz_gguf.c"),
         *(os.path.join(root, "csrc", f) for f in ("gguf.c", "quants.c", "quants_tiled.c", "common.c")), "-lm", "-o", exe],
        capture_output=True, text=True)
    if build.returncode != 0 and "fuzzer" in build.stderr:
        pytest.skip("clang has no libFuzzer runtime (libclang-rt-dev)")
    assert build.returncode == 0, build.stderr[-2000:]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # RSS limit: libFuzzer's and ASan's own memory (quarantine, coverage
    # tables) grows past the 2 GB default on a long run on a loaded machine
    # (seen once: 3.9 GB with no large allocation); a single allocation above
    # 1 GB still fails the run, which is what a forged size in a header would do
    run = subprocess.run([exe, "-max_total_time=30", "-max_len=4096", "-rss_limit_mb=6144", "-malloc_limit_mb=1024",
                          f"-artifact_prefix={tmp_path}/", str(corpus), os.path.join(root, "fuzz", "seeds_gguf")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


# ------------------------------------------------------------- quantize_file

@pytest.mark.parametrize("qtype,expect", [("q8_0", ("Q8_0", "Q8_0")), ("q4_0", ("Q4_0", "Q4_0")),
                                          ("q4_1", ("Q4_1", "Q4_1")), ("q4_k", ("Q4_K", "Q4_1")),
                                          ("q5_k", ("Q5_K", "Q8_0")), ("q6_k", ("Q6_K", "Q8_0"))])
def test_quantize_file(tmp_path, qtype, expect):
    from ecomlm.engine.quantize import quantize_file
    rng = np.random.default_rng(0)
    src = str(tmp_path / "f32.gguf")
    w = GGUFWriter(src)
    w.add("general.architecture", "llama")
    w.add("general.file_type", 0, V.UINT32)
    mats = {"blk.0.ffn_down.weight": rng.standard_normal((64, 512)).astype(np.float32),
            "blk.0.attn_q.weight": rng.standard_normal((96, 96)).astype(np.float32),
            "blk.0.attn_norm.weight": rng.standard_normal(96).astype(np.float32)}
    for name, x in mats.items():
        w.add_tensor(name, x)
    w.write()
    dst = str(tmp_path / f"{qtype}.gguf")
    written = quantize_file(src, dst, qtype)
    assert written == {"blk.0.ffn_down.weight": expect[0], "blk.0.attn_q.weight": expect[1],
                       "blk.0.attn_norm.weight": "F32"}
    r = GGUFReader(dst)
    assert r.metadata["general.architecture"] == "llama"
    np.testing.assert_array_equal(r.dequantize("blk.0.attn_norm.weight"), mats["blk.0.attn_norm.weight"])
    for name in ("blk.0.ffn_down.weight", "blk.0.attn_q.weight"):
        x, y = mats[name], r.dequantize(name)
        assert np.sqrt(np.mean((x - y) ** 2) / np.mean(x ** 2)) < 0.12
        raw = _core.quantize(x, r.tensor(name).type)  # exactly our reference quantiser's bytes
        np.testing.assert_array_equal(r.raw(name), raw.reshape(-1))
    gguf.GGUFReader(dst)  # the PyPI reader accepts it


def test_quantize_file_errors(tmp_path):
    from ecomlm.engine.quantize import quantize_file
    from ecomlm.errors import BadRequestError
    with pytest.raises(BadRequestError):
        quantize_file("a.gguf", "b.gguf", "q3_k")
    from ecomlm.errors import NotFoundError
    with pytest.raises(NotFoundError, match="config.json"):  # a directory is a Hugging Face model
        quantize_file(str(tmp_path), str(tmp_path / "o.gguf"), "q8_0")
