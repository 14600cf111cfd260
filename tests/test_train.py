"""Training in the C engine against PyTorch autograd (issue 6).

Bar: the gradient of every parameter matches autograd on random-initialised
tiny models (relative error <= 1e-4 in fp32, as max |ours - torch| / max
|torch|), LoRA included; 20 AdamW steps follow PyTorch's loss curve within
1e-3 at every step; results do not depend on the thread count."""

import numpy as np
import pytest

import ecomlm._core as core
from ecomlm.engine.finetune import build_trainer, trainer_to_model
from helpers import hf_logits, rel_err, save_hf, tiny_gpt2, tiny_llama
from train_ref import engine_view, rel, torch_loss

TOL = 1e-4
B, T = 3, 37


@pytest.fixture(autouse=True, scope="module")
def _torch_threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the references are tiny: threads only add contention
    yield
    torch.set_num_threads(n)


def batch(seed=0, V=1001, b=B, t=T, p_mask=0.7):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (b, t))
    targets = rng.integers(0, V, (b, t))
    mask = rng.random((b, t)) < p_mask
    return ids, targets, mask


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def family_dir(request, tmp_path_factory):
    # gpt2: hidden 40, 4 heads; llama: GQA 9/3 heads, hidden 90, head_dim 10, untied head
    hf = tiny_gpt2() if request.param == "gpt2" else tiny_llama()
    return request.param, hf, save_hf(hf, tmp_path_factory.mktemp(request.param))


def test_full_gradients_match_autograd(family_dir):
    family, hfm, path = family_dir
    tr, *_ = build_trainer(path, n_threads=2)
    ids, tg, mask = batch()
    loss = tr.forward_backward(ids, tg, mask)
    hfm.zero_grad()
    ref = torch_loss(hfm, ids, tg, mask)
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-5 * abs(ref.item())
    expected = engine_view(hfm, family)
    grads = tr.gradients()
    assert set(grads) == set(n for n, _ in tr.slots())
    errs = {n: rel(g, expected[n]) for n, g in grads.items()}
    assert max(errs.values()) <= TOL, sorted(errs.items(), key=lambda kv: -kv[1])[:5]


def test_tied_llama_gradients(tmp_path):
    hfm = tiny_llama(tie_word_embeddings=True, attention_bias=True, mlp_bias=True)
    tr, *_ = build_trainer(save_hf(hfm, tmp_path), n_threads=2)
    assert tr.tied
    ids, tg, mask = batch(1)
    tr.forward_backward(ids, tg, mask)
    torch_loss(hfm, ids, tg, mask).backward()
    expected = engine_view(hfm, "llama")
    for n, g in tr.gradients().items():
        assert rel(g, expected[n]) <= TOL, n


def test_threads_give_identical_results(family_dir):
    _, _, path = family_dir
    out = []
    for nt in (1, 2):
        tr, *_ = build_trainer(path, n_threads=nt)
        ids, tg, mask = batch(2)
        loss = tr.forward_backward(ids, tg, mask)
        tr.step(1e-3, weight_decay=0.1, max_grad_norm=1.0)
        out.append((loss, {n: g.copy() for n, g in tr.gradients().items()},
                    {n: p.copy() for n, p in tr.parameters().items()}))
    assert out[0][0] == out[1][0]
    for n in out[0][1]:
        assert np.array_equal(out[0][1][n], out[1][1][n]), n
        assert np.array_equal(out[0][2][n], out[1][2][n]), n


def test_loss_mask(family_dir):
    _, _, path = family_dir
    tr, *_ = build_trainer(path, n_threads=2)
    ids, tg, _ = batch(3)
    assert tr.forward_backward(ids, tg, np.zeros_like(ids, dtype=bool)) == 0.0
    assert all(not g.any() for g in tr.gradients().values())
    # a target of -1 is ignored like a masked position
    mask = np.ones_like(ids, dtype=bool)
    mask[:, :5] = False
    tg2 = tg.copy()
    tg2[:, :5] = -1
    tr.zero_grad()
    a = tr.forward_backward(ids, tg, mask)
    ga = {n: g.copy() for n, g in tr.gradients().items()}
    tr.zero_grad()
    b = tr.forward_backward(ids, tg2)
    assert a == b
    for n, g in tr.gradients().items():
        assert np.array_equal(g, ga[n])


def test_gradient_accumulation_adds(family_dir):
    _, _, path = family_dir
    tr, *_ = build_trainer(path, n_threads=2)
    ids, tg, mask = batch(4)
    tr.forward_backward(ids, tg, mask, grad_scale=0.5)
    tr.forward_backward(ids, tg, mask, grad_scale=0.5)
    acc = {n: g.copy() for n, g in tr.gradients().items()}
    tr.zero_grad()
    tr.forward_backward(ids, tg, mask)
    for n, g in tr.gradients().items():
        np.testing.assert_allclose(acc[n], g, rtol=1e-5, atol=1e-7 * float(np.abs(g).max() + 1e-30))


@pytest.mark.parametrize("M, N, K", [(1, 1, 1), (7, 33, 5), (37, 90, 40), (130, 17, 300)])
def test_training_gemms_match_numpy(M, N, K, rng):
    a = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((N, K), dtype=np.float32)
    ref = a.astype(np.float64) @ w.T.astype(np.float64)
    tol = 1e-5 * np.abs(ref).max() + 1e-6
    np.testing.assert_allclose(core.train_gemm(a, w), ref, atol=tol, rtol=0)
    np.testing.assert_allclose(core.train_gemm(a, np.ascontiguousarray(w.T), True), ref, atol=tol, rtol=0)
    out = np.ones((M, N), np.float32)
    core.train_gemm(a, w, out=out)
    np.testing.assert_allclose(out, ref + 1, atol=tol, rtol=0)
    dy = rng.standard_normal((M, N), dtype=np.float32)
    dw = np.ones((N, K), np.float32)
    core.train_gemm_tn(dy, a, dw)
    np.testing.assert_allclose(dw, 1 + dy.T.astype(np.float64) @ a, atol=1e-5 * np.abs(dw).max(), rtol=0)
    # the same bits for any thread count
    assert np.array_equal(core.train_gemm(a, w, n_threads=1), core.train_gemm(a, w, n_threads=2))


# ----------------------------------------------------------------- LoRA

def lora_sites(hfm, family, layer, target):
    """(torch parameter, row slice in engine layout, Conv1D-transposed) of a LoRA target."""
    if family == "llama":
        blk = hfm.model.layers[layer]
        p = {"q": blk.self_attn.q_proj, "k": blk.self_attn.k_proj, "v": blk.self_attn.v_proj,
             "o": blk.self_attn.o_proj, "gate": blk.mlp.gate_proj, "up": blk.mlp.up_proj,
             "down": blk.mlp.down_proj}[target].weight
        return p, slice(None), False
    blk = hfm.transformer.h[layer]
    C = hfm.config.n_embd
    if target in "qkv":
        i = "qkv".index(target)
        return blk.attn.c_attn.weight, slice(i * C, (i + 1) * C), True
    return {"o": blk.attn.c_proj, "up": blk.mlp.c_fc, "down": blk.mlp.c_proj}[target].weight, slice(None), True


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_lora_gradients_match_autograd(family, tmp_path):
    import torch

    hfm = tiny_gpt2() if family == "gpt2" else tiny_llama()
    path = save_hf(hfm, tmp_path)
    targets = ["q", "k", "v", "o", "up", "down"] + (["gate"] if family == "llama" else [])
    tr, *_ = build_trainer(path, n_threads=2, lora=dict(rank=4, alpha=8.0, targets=targets, seed=3))
    s = tr.lora_scale
    rng = np.random.default_rng(5)
    params = tr.parameters()
    for n, p in params.items():
        if ".lora_" in n:
            p[...] = rng.normal(0, 0.1, p.shape)  # B starts at zero: make both factors live
    # the reference: the same network with W + s B A as its weights
    L = hfm.config.num_hidden_layers
    with torch.no_grad():
        for l in range(L):
            for t in targets:
                A, Bm = params[f"layers.{l}.lora_{t}.A"], params[f"layers.{l}.lora_{t}.B"]
                w, rows, conv = lora_sites(hfm, family, l, t)
                delta = torch.tensor(s * Bm @ A)
                if conv:
                    w[:, rows] += delta.T
                else:
                    w[rows] += delta
    ids, tg, mask = batch(6)
    loss = tr.forward_backward(ids, tg, mask)
    ref = torch_loss(hfm, ids, tg, mask)
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-5 * abs(ref.item())
    grads = tr.gradients()
    assert all(".lora_" in n for n in grads)  # the base is frozen
    for l in range(L):
        for t in targets:
            w, rows, conv = lora_sites(hfm, family, l, t)
            dw = (w.grad.T if conv else w.grad)[rows].numpy()  # engine layout (n, K)
            A, Bm = params[f"layers.{l}.lora_{t}.A"], params[f"layers.{l}.lora_{t}.B"]
            assert rel(grads[f"layers.{l}.lora_{t}.A"], s * Bm.T @ dw) <= TOL, (l, t, "A")
            assert rel(grads[f"layers.{l}.lora_{t}.B"], s * dw @ A.T) <= TOL, (l, t, "B")
    # merged export: the inference model equals the reference network
    m = trainer_to_model(tr, tr_ecfg(path))
    cache = core.KVCache(m, T)
    assert rel_err(m.forward(ids[0], cache, True), hf_logits(hfm, ids[0])) <= TOL


def tr_ecfg(path):
    from ecomlm.engine import hf

    return hf.engine_config(hf.read_config(path))[1]


def test_lora_dropout_is_seeded_and_trains(tmp_path):
    hfm = tiny_llama()
    path = save_hf(hfm, tmp_path)
    ids, tg, mask = batch(7)
    res = []
    for nt in (1, 2):
        tr, *_ = build_trainer(path, n_threads=nt, lora=dict(rank=4, alpha=8, dropout=0.3, seed=11))
        losses = []
        for _ in range(3):
            tr.zero_grad()
            losses.append(tr.forward_backward(ids, tg, mask))
            tr.step(1e-2)
        res.append(losses)
    assert res[0] == res[1]
    assert res[0][-1] < res[0][0]


def test_bad_lora_and_batches(family_dir):
    family, _, path = family_dir
    from ecomlm.errors import BadRequestError

    with pytest.raises(BadRequestError, match="target"):
        build_trainer(path, lora=dict(rank=4, targets=["qq"]))
    with pytest.raises(BadRequestError, match="rank"):
        build_trainer(path, lora=dict(rank=0))
    tr, *_ = build_trainer(path, n_threads=1)
    ids, tg, mask = batch(8)
    with pytest.raises(BadRequestError, match="out of range"):
        tr.forward_backward(ids + 5000, tg)
    with pytest.raises(BadRequestError, match="shape"):
        tr.forward_backward(ids, tg[:, :-1])
    with pytest.raises(BadRequestError, match="forward"):
        tr.backward()


# ------------------------------------------------------------- optimizer

@pytest.mark.parametrize("lora", [False, True])
def test_adamw_follows_pytorch_loss_curve(family_dir, lora):
    """20 AdamW steps (weight decay on matrices, clipping at 1.0, warm-up +
    cosine schedule) track torch.optim.AdamW within 1e-3 at every step."""
    import torch

    family, hfm0, path = family_dir
    hfm = (tiny_gpt2() if family == "gpt2" else tiny_llama()).train()
    hfm.load_state_dict(hfm0.state_dict())
    for mod in hfm.modules():  # no dropout: the runs must be deterministic
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    lcfg = dict(rank=4, alpha=8.0, targets=["q", "v", "down"], seed=1) if lora else None
    tr, *_ = build_trainer(path, n_threads=2, lora=lcfg)
    hp = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    steps, warmup = 20, 4
    if lora:
        # reference LoRA factors with the engine's initial values; the model
        # runs on w0 + s B A through torch.func.functional_call
        init = {n: p.copy() for n, p in tr.parameters().items() if ".lora_" in n}
        names = {id(p): n for n, p in hfm.named_parameters()}
        loras = []
        for l in range(hfm.config.num_hidden_layers):
            for t in lcfg["targets"]:
                w, rows, conv = lora_sites(hfm, family, l, t)
                A = torch.nn.Parameter(torch.tensor(init[f"layers.{l}.lora_{t}.A"]))
                Bm = torch.nn.Parameter(torch.tensor(init[f"layers.{l}.lora_{t}.B"]))
                loras.append((names[id(w)], rows, conv, A, Bm, w.detach().clone()))
        groups = [{"params": [p for x in loras for p in x[3:5]], "weight_decay": hp["weight_decay"]}]
    else:
        groups = [{"params": [p for p in hfm.parameters() if p.ndim >= 2], "weight_decay": hp["weight_decay"]},
                  {"params": [p for p in hfm.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], foreach=False)
    s = tr.lora_scale
    devs, norms = [], []
    for step in range(steps):
        ids, tg, mask = batch(100 + step, b=2, t=24)
        lr = core.lr_schedule(step, hp["lr"], 0.0, warmup, steps)
        tr.zero_grad()
        ours = tr.forward_backward(ids, tg, mask)
        norm = tr.step(lr, hp["betas"][0], hp["betas"][1], hp["eps"], hp["weight_decay"], 1.0)
        opt.zero_grad()
        if lora:
            replace = {}
            for name, rows, conv, A, Bm, w0 in loras:
                full = torch.zeros(w0.T.shape if conv else w0.shape)
                full[rows] = s * Bm @ A
                replace[name] = replace.get(name, w0) + (full.T if conv else full)
            ref = _functional_loss(hfm, replace, ids, tg, mask)
        else:
            ref = torch_loss(hfm, ids, tg, mask)
        ref.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        devs.append(abs(ours - ref.item()))
        norms.append(norm)
        assert abs(ours - ref.item()) <= 1e-3, (step, ours, ref.item())
        assert abs(norm - float(ref_norm)) <= 1e-3 * max(1.0, float(ref_norm)), (step, norm, float(ref_norm))
    print(f"\n{family} {'lora' if lora else 'full'}: 20 AdamW steps, max |loss - torch| = {max(devs):.2e}, "
          f"largest gradient norm {max(norms):.2f} (clipped to 1.0)")
    if not lora:
        assert max(norms) > 1.0  # clipping was exercised


def _functional_loss(hfm, replace, ids, tg, mask):
    import torch
    from torch.func import functional_call

    logits = functional_call(hfm, replace, (torch.tensor(ids, dtype=torch.long),), strict=False).logits
    V = logits.shape[-1]
    m = torch.tensor(mask.astype(bool)).reshape(-1)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, V)[m], torch.tensor(tg).reshape(-1)[m])
