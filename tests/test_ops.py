"""Each kernel against its PyTorch twin, on every SIMD path.

Tolerances: the AVX2 exp is a degree-6 polynomial (~2 ulp); GELU-erf uses
Abramowitz & Stegun 7.1.26 (|erf error| <= 1.5e-7); everything else is
exact fp32 arithmetic up to summation order."""

import numpy as np
import pytest
import torch

import ecomlm._core as core
from test_matmul import levels

F = torch.nn.functional


def t(x):
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


@pytest.fixture(params=levels())
def level(request, simd_reset):
    core.set_simd_level(request.param)
    return request.param


def awkward(rng, *shape, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    x.flat[:4] = [0.0, -0.0, 1e-30, -50.0][: x.size]
    return x


@pytest.mark.parametrize("n", [1, 7, 8, 33, 40000])
def test_exp(level, n, rng):
    # up to 88.3: float32's exp overflows at 88.72, the SIMD path clamps at 88.38
    x = rng.uniform(-100, 88.3, size=n).astype(np.float32)
    x[: min(n, 3)] = [-np.inf, 0.0, 88.0][: min(n, 3)]
    ref = np.exp(x.astype(np.float64))
    out = core.op("exp", x)
    assert np.all(np.isfinite(out[np.isfinite(ref) & (ref < 3e38)]))
    big = ref > 1e-37
    assert np.abs(out[big] / ref[big] - 1).max(initial=0) <= 5e-7
    assert np.abs(out[~big]).max(initial=0) <= 1.2e-37


@pytest.mark.parametrize("name,ref,atol", [
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), 2e-6),
    ("gelu_erf", lambda x: F.gelu(x), 2e-6),
    ("silu", F.silu, 2e-6),
])
def test_activations(level, name, ref, atol, rng):
    x = awkward(rng, 50001)
    out = core.op(name, x)
    expect = ref(t(x)).numpy()
    assert np.abs(out - expect).max() <= atol * (1 + np.abs(x).max())


def test_swiglu(level, rng):
    x = awkward(rng, 9, 2 * 37)
    gate, up = t(x[:, :37]), t(x[:, 37:])
    np.testing.assert_allclose(core.op("swiglu", x), (F.silu(gate) * up).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("C", [1, 7, 384, 1001])
def test_layernorm_rmsnorm(level, C, rng):
    x = awkward(rng, 13, C) + 5.0
    w, b = rng.standard_normal(C).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    ref = F.layer_norm(t(x), (C,), t(w), t(b), eps=1e-5).numpy()
    np.testing.assert_allclose(core.op("layernorm", x, w, b, eps=1e-5), ref, rtol=1e-4, atol=1e-4)
    rms = (t(x) * torch.rsqrt(t(x).pow(2).mean(-1, keepdim=True) + 1e-6) * t(w)).numpy()
    np.testing.assert_allclose(core.op("rmsnorm", x, w, eps=1e-6), rms, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 300])
def test_softmax(level, n, rng):
    x = awkward(rng, 17, n, scale=20.0)
    x[3, :] = -np.inf  # a fully masked row gives zeros, not NaN
    x[4, 1:] = -np.inf
    out = core.op("softmax", x)
    ref = torch.softmax(t(x), dim=-1).numpy()
    ref[3] = 0.0
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=1e-7)


def test_rope_matches_transformers(rng):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    T, H, D = 11, 3, 16
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    pos = rng.integers(0, 5000, size=T).astype(np.int32)
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = t(pos)[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], dim=-1)
    q = t(x).transpose(0, 1)[None]  # (1, H, T, D)
    ref, _ = apply_rotary_pos_emb(q, q, emb.cos()[None], emb.sin()[None])
    out = core.op("rope", x, pos, eps=10000.0)
    np.testing.assert_allclose(out, ref[0].transpose(0, 1).numpy(), rtol=1e-4, atol=2e-5)


def test_ops_reject_bad_input():
    from ecomlm.errors import BadRequestError

    with pytest.raises(BadRequestError, match="unknown op"):
        core.op("nope", np.zeros(3, np.float32))
    with pytest.raises(BadRequestError, match="weight"):
        core.op("layernorm", np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(BadRequestError, match="swiglu"):
        core.op("swiglu", np.zeros((2, 3), np.float32))
