"""The packed GEMM against NumPy on awkward shapes, every SIMD path, 1 and 2 threads."""

import numpy as np
import pytest

import ecomlm._core as core
from ecomlm.errors import BadRequestError

SHAPES = [(1, 1, 1), (1, 777, 64), (300, 1, 33), (7, 13, 17), (13, 97, 101), (64, 16, 256),
          (6, 32, 257), (130, 200, 300), (1, 3072, 768), (37, 1001, 90)]


def levels():
    out = ["scalar"]
    det = core.simd_detected()
    if det in ("avx2", "avx512"):
        out.append("avx2")
    if det == "avx512":
        out.append("avx512")
    return out


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("level", levels())
@pytest.mark.parametrize("threads", [1, 2])
def test_matmul_matches_numpy(shape, level, threads, rng, simd_reset):
    M, N, K = shape
    core.set_simd_level(level)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((N, K)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    ref = a.astype(np.float64) @ b.T.astype(np.float64) + bias
    out = core.matmul(a, b, bias, n_threads=threads)
    # fp32 accumulation over K terms of unit variance: error ~ sqrt(K) * eps * |terms|
    tol = 1e-5 * np.sqrt(K) * (1 + np.abs(ref).max())
    assert out.shape == (M, N)
    assert np.abs(out - ref).max() <= tol


def test_thread_count_does_not_change_result(rng):
    a = rng.standard_normal((50, 300)).astype(np.float32)
    b = rng.standard_normal((513, 300)).astype(np.float32)
    assert np.array_equal(core.matmul(a, b, n_threads=1), core.matmul(a, b, n_threads=2))


def test_reference_kernel(rng):
    a = rng.standard_normal((5, 9)).astype(np.float32)
    b = rng.standard_normal((4, 9)).astype(np.float32)
    np.testing.assert_allclose(core.matmul(a, b, reference=True), a @ b.T, rtol=1e-5, atol=1e-5)


def test_inputs_unmodified(rng):
    a = rng.standard_normal((9, 31)).astype(np.float32)
    b = rng.standard_normal((17, 31)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    core.matmul(a, b)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


@pytest.mark.parametrize("a,b", [
    (np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32)),
    (np.zeros((0, 3), np.float32), np.zeros((4, 3), np.float32)),
    (np.zeros(3, np.float32), np.zeros((4, 3), np.float32)),
])
def test_bad_shapes_raise(a, b):
    with pytest.raises(BadRequestError):
        core.matmul(a, b)


@pytest.mark.parametrize("level", levels())
def test_row_result_does_not_depend_on_batch(level, rng, simd_reset):
    """Batched decoding must give the tokens a lone sequence gets: each row's
    result is bitwise the same whatever rows share the call."""
    core.set_simd_level(level)
    a = rng.standard_normal((13, 600)).astype(np.float32)
    b = rng.standard_normal((200, 600)).astype(np.float32)
    full = core.matmul(a, b)
    for i in (0, 5, 12):
        assert np.array_equal(core.matmul(a[i:i + 1], b), full[i:i + 1])
    assert np.array_equal(core.matmul(a[3:7], b), full[3:7])
