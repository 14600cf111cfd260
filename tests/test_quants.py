"""Quantised types: dequantisation bit-identical to the PyPI gguf package,
reference quantisers equal to gguf's (where it has them) with bounded error,
and ecomlm._core.matmul_quant against a float64 reference, across SIMD paths
and thread counts."""

import os
import subprocess
import sys

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402

from ecomlm import _core  # noqa: E402
from ecomlm.errors import BadRequestError  # noqa: E402

from gguf_files import smollm2_q4_1  # noqa: E402

ALL = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
GGUF_QUANTIZES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q8_0]  # types gguf.quants can quantise
# RMS error / RMS value of quantise -> dequantise on Gaussian data; llama.cpp's
# reference quantisers give about 0.004 (Q8_0), 0.1 (Q4_0), 0.085 (Q4_1),
# 0.075 (Q4_K), 0.037 (Q5_K), 0.018 (Q6_K): the bounds leave ~20% headroom.
RMS_BOUND = {T.F32: 0.0, T.F16: 5e-4, T.BF16: 4e-3, T.Q8_0: 0.006, T.Q4_0: 0.12, T.Q4_1: 0.1,
             T.Q4_K: 0.09, T.Q5_K: 0.045, T.Q6_K: 0.022}


def bits_equal(a, b):
    """Bitwise equality of float32 arrays, NaNs (any payload) matching NaNs."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    assert a.shape == b.shape
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b))
    np.testing.assert_array_equal(a.view(np.uint32)[~nan], b.view(np.uint32)[~nan])


def block_size(t):
    return gguf.GGML_QUANT_SIZES[t][0]


def quantize(x, t):
    return _core.quantize(np.ascontiguousarray(x, np.float32), int(t))


def dequantize(raw, t, shape):
    return _core.dequantize(raw, int(t), shape)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((16, 512)).astype(np.float32)
    x[3] *= 1e-3              # small scales
    x[4, :64] = 0.0           # all-zero blocks
    x[5] = np.abs(x[5])       # positive-only blocks (Q4_1 / K mins)
    x[6, ::7] *= 40.0         # outliers
    return x


@pytest.mark.parametrize("t", ALL, ids=lambda t: t.name)
def test_dequantize_bit_identical_to_gguf(t, data):
    raw = quantize(data, t)
    ref = gguf.quants.dequantize(raw, t)
    bits_equal(dequantize(raw, t, data.shape), ref)


@pytest.mark.filterwarnings("ignore:invalid value")
@pytest.mark.parametrize("t", [T.Q4_0, T.Q4_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K, T.BF16, T.F16],
                         ids=lambda t: t.name)
def test_dequantize_random_bytes_bit_identical(t):
    """Every bit pattern, not only what our quantiser makes (scales included)."""
    rng = np.random.default_rng(7)
    bs, bb = gguf.GGML_QUANT_SIZES[t]
    raw = rng.integers(0, 256, size=(8, 4 * bb), dtype=np.uint8)
    ref = gguf.quants.dequantize(raw, t)
    bits_equal(dequantize(raw, t, (8, 4 * bs)), ref)


@pytest.mark.parametrize("t", GGUF_QUANTIZES, ids=lambda t: t.name)
def test_quantize_equals_gguf_package(t, data):
    np.testing.assert_array_equal(quantize(data, t), gguf.quants.quantize(data, t).view(np.uint8))


@pytest.mark.parametrize("t", ALL, ids=lambda t: t.name)
def test_quantize_roundtrip_error(t):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    y = dequantize(quantize(x, t), t, x.shape)
    rel = np.sqrt(np.mean((y - x) ** 2) / np.mean(x ** 2))
    assert rel <= RMS_BOUND[t], f"{t.name}: relative RMS error {rel:.4f}"
    if t == T.Q8_0:
        # Per element: half a step of the block scale d, plus |q| <= 127 times the
        # fp16 rounding of d (relative 2^-11).
        d = np.abs(x.reshape(-1, 32)).max(1, keepdims=True) / 127
        assert np.all(np.abs(y - x).reshape(-1, 32) <= 0.5 * d + 127 * d * 2.0**-11 + 1e-7)


def test_quantize_errors():
    with pytest.raises(BadRequestError, match="multiple of"):
        _core.quantize(np.zeros((2, 100), np.float32), int(T.Q4_K))
    with pytest.raises(BadRequestError, match="unsupported"):
        _core.quantize(np.zeros(32, np.float32), 6)  # Q5_0: read-only type
    with pytest.raises(BadRequestError, match="bytes"):
        _core.dequantize(np.zeros(33, np.uint8), int(T.Q8_0), (32,))


# ------------------------------------------------------------ matmul_quant

def act_dequant(x, t):
    """The activations the kernels see: x quantised like the engine does, in float64."""
    x = x.astype(np.float32)
    if t in (T.F32, T.F16, T.BF16):
        return x.astype(np.float64)
    if t in (T.Q4_K, T.Q5_K, T.Q6_K):  # Q8_K, llama.cpp's reference
        b = x.reshape(-1, 256)
        idx = np.abs(b).argmax(1)
        mx = b[np.arange(len(b)), idx][:, None]
        with np.errstate(divide="ignore"):
            iscale = np.where(mx == 0, 0, np.float32(-127.0) / mx).astype(np.float32)
        q = np.minimum(127, np.rint(iscale * b))
        d = np.where(mx == 0, 0, 1 / iscale.astype(np.float32)).astype(np.float32)
        return (q.astype(np.float64) * d).reshape(x.shape)
    b = x.reshape(-1, 32)  # ecm_block_q8_a: d = amax/127, q = rint(x * 127/amax)
    amax = np.abs(b).max(1, keepdims=True)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, 0, np.float32(127.0) / amax).astype(np.float32)
    q = np.rint(b * inv)
    d = (amax / np.float32(127.0)).astype(np.float32)
    return (q.astype(np.float64) * d).reshape(x.shape)


def check_matmul(out, x, w, t):
    wd = w.astype(np.float64)
    xd = act_dequant(x, t)
    ref = xd @ wd.T
    # fp32 accumulation of K products: bound the error by eps * K-ish * sum|terms|.
    scale = np.abs(xd) @ np.abs(wd).T
    err = np.abs(out - ref)
    assert np.all(err <= 2e-6 * scale + 1e-30), f"max err/scale {(err / scale).max():.2e}"


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(5)
    out = {}
    for t in ALL:
        N, K = 48, 512
        w = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
        raw = quantize(w, t)
        out[t] = (raw, dequantize(raw, t, (N, K)), N, K)
    return out


@pytest.mark.parametrize("t", ALL, ids=lambda t: t.name)
@pytest.mark.parametrize("M", [1, 3, 4, 9, 70])
def test_matmul_quant_vs_float64(t, M, weights):
    raw, wd, N, K = weights[t]
    x = np.random.default_rng(M).standard_normal((M, K)).astype(np.float32)
    out = _core.matmul_quant(x, raw, int(t), N, K, n_threads=2)
    assert out.shape == (M, N)
    check_matmul(out, x, wd, t)


@pytest.mark.parametrize("t", ALL, ids=lambda t: t.name)
def test_matmul_quant_simd_matches_scalar_and_threads(t, weights):
    raw, wd, N, K = weights[t]
    x = np.random.default_rng(11).standard_normal((9, K)).astype(np.float32)
    level = _core.simd_level()
    try:
        _core.set_simd_level("scalar")
        ref = _core.matmul_quant(x, raw, int(t), N, K, n_threads=1)
    finally:
        _core.set_simd_level("avx512")  # capped at what the CPU has
    assert _core.simd_level() == level
    one = _core.matmul_quant(x, raw, int(t), N, K, n_threads=1)
    two = _core.matmul_quant(x, raw, int(t), N, K, n_threads=2)
    np.testing.assert_array_equal(one, two)  # a result depends on nothing but its inputs
    # Activations are quantised bit-identically on every path; the paths differ
    # only in the order fp32 partial sums are added.
    scale = np.abs(act_dequant(x, t)) @ np.abs(wd.astype(np.float64)).T
    assert np.all(np.abs(one - ref) <= 2e-6 * scale + 1e-30)
    check_matmul(ref, x, wd, t)


def test_matmul_quant_env_scalar_subprocess(weights):
    raw, wd, N, K = weights[T.Q4_1]
    x = np.random.default_rng(2).standard_normal((5, K)).astype(np.float32)
    code = ("import sys, numpy as np; from ecomlm import _core; "
            "x = np.load(sys.argv[1]); w = np.load(sys.argv[2]); "
            "print(_core.simd_level()); np.save(sys.argv[3], _core.matmul_quant(x, w, 3, %d, %d, n_threads=1))"
            % (N, K))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "w.npy"), raw)
        env = dict(os.environ, ECOMLM_SIMD="scalar")
        env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                             env.get("PYTHONPATH", "")])
        r = subprocess.run([sys.executable, "-c", code, *(os.path.join(d, f) for f in ("x.npy", "w.npy", "o.npy"))],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "scalar"
        ref = np.load(os.path.join(d, "o.npy"))
    out = _core.matmul_quant(x, raw, 3, N, K, n_threads=1)
    scale = np.abs(act_dequant(x, T.Q4_1)) @ np.abs(wd.astype(np.float64)).T
    assert np.all(np.abs(out - ref) <= 2e-6 * scale)


def test_matmul_quant_bad_arguments(weights):
    raw, wd, N, K = weights[T.Q8_0]
    x = np.zeros((2, K), np.float32)
    with pytest.raises(BadRequestError, match="multiple"):
        _core.matmul_quant(np.zeros((2, 48), np.float32), raw, 8, N, 48)
    with pytest.raises(BadRequestError, match="bytes"):
        _core.matmul_quant(x, raw[:-1], 8, N, K)
    with pytest.raises(BadRequestError, match="rows of"):
        _core.matmul_quant(np.zeros((2, K + 32), np.float32), raw, 8, N, K)
    with pytest.raises(BadRequestError):
        _core.matmul_quant(x, raw, 99, N, K)


def test_matmul_quant_inputs_unmodified(weights):
    raw, wd, N, K = weights[T.Q4_1]
    x = np.random.default_rng(0).standard_normal((6, K)).astype(np.float32)
    x0, raw0 = x.copy(), raw.copy()
    _core.matmul_quant(x, raw, 3, N, K)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(raw, raw0)


# ------------------------------------------- 8-row tiles (Q4_0, Q4_1, Q8_0)

TILED = [T.Q4_0, T.Q4_1, T.Q8_0]


@pytest.mark.parametrize("t", TILED, ids=lambda t: t.name)
@pytest.mark.parametrize("N", [1, 8, 13, 48])
def test_tiled_layout_dequantizes_bit_identical(t, N):
    rng = np.random.default_rng(N)
    raw = quantize((rng.standard_normal((N, 96)) * 0.1).astype(np.float32), t)
    tiles = _core.tile_weights(raw, int(t), N, 96)
    assert tiles.nbytes == -(-N // 8) * 8 * raw.nbytes // N  # rows padded to a multiple of 8, nothing else
    bits_equal(_core.tile_weights(tiles, int(t), N, 96, True), dequantize(raw, t, (N, 96)))


@pytest.mark.parametrize("t", TILED, ids=lambda t: t.name)
def test_tiled_matmul_batch_invariant_and_scalar_identical(t):
    """A row's result depends only on that row: not on M, on how rows group
    into kernel calls, on threads, or on the SIMD path (AVX2 == scalar, bit for bit)."""
    rng = np.random.default_rng(7)
    N, K, M = 21, 256, 11  # a partial last tile; 11 rows = groups of 4, 4, 3
    raw = quantize((rng.standard_normal((N, K)) * 0.05).astype(np.float32), t)
    tiles = _core.tile_weights(raw, int(t), N, K)
    x = rng.standard_normal((M, K)).astype(np.float32)
    full = _core.matmul_quant(x, tiles, int(t), N, K, n_threads=2, tiled=True)
    for m in range(M):
        one = _core.matmul_quant(x[m:m + 1], tiles, int(t), N, K, n_threads=1, tiled=True)
        np.testing.assert_array_equal(one[0], full[m])
    np.testing.assert_array_equal(_core.matmul_quant(x, raw, int(t), N, K), full)  # standard blocks in
    level = _core.simd_level()
    try:
        _core.set_simd_level("scalar")
        ref = _core.matmul_quant(x, tiles, int(t), N, K, n_threads=1, tiled=True)
    finally:
        _core.set_simd_level("avx512")
    assert _core.simd_level() == level
    np.testing.assert_array_equal(ref, full)
    check_matmul(full, x, dequantize(raw, t, (N, K)), t)


def test_tiled_bad_arguments():
    raw = quantize(np.zeros((8, 64), np.float32), T.Q4_1)
    with pytest.raises(BadRequestError, match="no tiled layout"):
        _core.tile_weights(quantize(np.zeros((8, 256), np.float32), T.Q4_K), int(T.Q4_K), 8, 256)
    with pytest.raises(BadRequestError, match="bytes"):
        _core.tile_weights(raw[:-1], int(T.Q4_1), 8, 64)
    with pytest.raises(BadRequestError, match="tiled layout"):
        _core.matmul_quant(np.zeros((1, 256), np.float32), quantize(np.zeros((8, 256), np.float32), T.Q4_K),
                           int(T.Q4_K), 8, 256, tiled=True)
    raw5 = quantize(np.zeros((5, 64), np.float32), T.Q4_1)  # standard blocks are not the 8-row tiles
    with pytest.raises(BadRequestError, match="bytes"):
        _core.matmul_quant(np.zeros((1, 64), np.float32), raw5, int(T.Q4_1), 5, 64, tiled=True)


# --------------------------------------------------------- the real model file

@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_q4_1()
    if path is None:
        pytest.skip("SmolLM2 Q4_1 GGUF not available (offline)")
    return path


def test_real_file_dequantize_bit_identical(smollm2):
    from ecomlm.engine.gguf import GGUFReader
    ours = GGUFReader(smollm2)
    theirs = gguf.GGUFReader(smollm2)
    seen = set()
    for t in theirs.tensors:
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        bits_equal(ours.dequantize(t.name), ref)
        seen.add(t.tensor_type)
    assert {T.Q4_1, T.Q8_0, T.F32} <= seen


def test_real_file_matmul(smollm2):
    from ecomlm.engine.gguf import GGUFReader
    r = GGUFReader(smollm2)
    for name in ("blk.0.ffn_down.weight", "blk.0.attn_q.weight", "token_embd.weight"):
        t = r.tensor(name)
        N, K = t.shape
        wd = r.dequantize(name)
        if N > 4096:  # the embedding: a slice of rows keeps the test quick
            N = 4096
            wd = wd[:N]
        raw = r.raw(name)[: N * _core.quant_row_bytes(t.type, K)]
        x = np.random.default_rng(0).standard_normal((5, K)).astype(np.float32)
        out = _core.matmul_quant(x, raw, t.type, N, K)
        check_matmul(out, x, wd, T(t.type))
