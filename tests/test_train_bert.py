"""bert with a sequence-classification head, trained in the C engine, against
transformers' BertForSequenceClassification and PyTorch autograd (issue 6).

Bar: the gradient of every parameter matches autograd on random-initialised
tiny models with padding and token types (relative error <= 1e-4 in fp32, as
max |ours - torch| / max |torch|), LoRA included; 20 AdamW steps (weight
decay, clipping, warm-up + cosine) follow PyTorch's loss within 1e-3 at every
step; 1 and 2 threads give the same bits; bad input raises errors naming the
field."""

import os
import shutil

import numpy as np
import pytest

import ecomlm._core as core
from ecomlm.engine import hf
from ecomlm.engine.classify import TextClassifier, build_classifier_trainer, fine_tune_classifier
from ecomlm.errors import BadRequestError
from train_ref import DictStore, rel

TOL = 1e-4
CLIP = 0.5
HEAD = {"pooler.weight": "bert.pooler.dense.weight", "pooler.bias": "bert.pooler.dense.bias",
        "classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"}


@pytest.fixture(autouse=True, scope="module")
def _torch_threads():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cls(num_labels=3, seed=0, **kw):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = dict(num_hidden_layers=2, hidden_size=36, num_attention_heads=3, intermediate_size=70, vocab_size=1001,
               max_position_embeddings=64, type_vocab_size=3, num_labels=num_labels, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    cfg.update(kw)
    return transformers.BertForSequenceClassification(transformers.BertConfig(**cfg)).eval()


def batch(seed=0, B=5, T=19, V=1001, num_labels=3, types=3):
    """Right-padded rows of different lengths (one full, one of 2 tokens)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, T))
    lens = np.concatenate([[T, 2], rng.integers(1, T + 1, B - 2)])
    mask = (np.arange(T)[None] < lens[:, None]).astype(np.uint8)
    ids[mask == 0] = 0  # the pad token, as a tokenizer writes it
    tt = rng.integers(0, types, (B, T)) * mask
    labels = rng.normal(size=B).astype(np.float32) if num_labels == 1 else rng.integers(0, num_labels, B)
    return ids, mask, tt, labels


def torch_out(m, ids, mask, tt, labels):
    import torch

    lab = torch.tensor(labels)
    return m(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask).long(),
             token_type_ids=torch.tensor(tt), labels=lab)


def engine_grads(m):
    """{engine slot: gradient} of the torch model, in the engine's layout."""
    d = {n: (p.grad if p.grad is not None else p.detach() * 0).numpy() for n, p in m.named_parameters()}
    cfg = m.config.to_dict()
    _, ecfg = hf.engine_config(cfg)
    plan, _ = hf.weight_plan("bert", cfg, ecfg, DictStore(d))
    out = {slot: (np.ascontiguousarray(f().T) if t else f()) for slot, f, t in plan}
    out.update({slot: d[name] for slot, name in HEAD.items()})
    return out


@pytest.fixture(scope="module", params=[3, 2, 1], ids=["3-labels", "2-labels", "regression"])
def model_dir(request, tmp_path_factory):
    m = tiny_cls(request.param)
    path = tmp_path_factory.mktemp(f"bertcls{request.param}")
    m.save_pretrained(path, safe_serialization=True)
    return request.param, m, str(path)


def test_gradients_match_autograd(model_dir):
    nl, m, path = model_dir
    tr, *_ = build_classifier_trainer(path, nl, n_threads=2)
    assert tr.num_labels == nl
    ids, mask, tt, labels = batch(num_labels=nl)
    loss = tr.forward_backward(ids, labels, mask, tt)
    m.zero_grad()
    out = torch_out(m, ids, mask, tt, labels)
    out.loss.backward()
    assert abs(loss - out.loss.item()) <= 1e-5 * abs(out.loss.item())
    assert rel(tr.logits(), out.logits.detach().numpy()) <= 1e-5
    expected = engine_grads(m)
    grads = tr.gradients()
    assert set(grads) == set(n for n, _ in tr.slots()) == set(expected)
    errs = {n: rel(g, expected[n]) for n, g in grads.items()}
    assert max(errs.values()) <= TOL, sorted(errs.items(), key=lambda kv: -kv[1])[:5]
    print(f"\nbert classifier, {nl} label(s): max gradient error {max(errs.values()):.1e} over {len(errs)} tensors")
    # a forward without labels gives the logits and no loss, and no backward
    assert tr.forward(ids, None, mask, tt) is None
    assert rel(tr.logits(), out.logits.detach().numpy()) <= 1e-5
    with pytest.raises(BadRequestError, match="forward"):
        tr.backward()


def test_multi_label_gradients_match_autograd(tmp_path):
    """problem_type multi_label_classification: one sigmoid per label,
    BCEWithLogitsLoss averaged over examples and labels (soft targets too)."""
    nl = 4
    m = tiny_cls(nl, seed=13, problem_type="multi_label_classification")
    m.save_pretrained(tmp_path, safe_serialization=True)
    tr, *_ = build_classifier_trainer(str(tmp_path), nl, n_threads=2, multi_label=True)
    assert tr.multi_label
    ids, mask, tt, _ = batch(14)
    y = (np.random.default_rng(14).random((len(ids), nl)) < 0.4).astype(np.float32)
    y[0, 1] = 0.3  # a soft target
    loss = tr.forward_backward(ids, y, mask, tt)
    out = torch_out(m, ids, mask, tt, y)
    out.loss.backward()
    assert abs(loss - out.loss.item()) <= 1e-5 * abs(out.loss.item())
    expected = engine_grads(m)
    errs = {n: rel(g, expected[n]) for n, g in tr.gradients().items()}
    assert max(errs.values()) <= TOL, sorted(errs.items(), key=lambda kv: -kv[1])[:5]
    print(f"\nbert classifier, multi-label: max gradient error {max(errs.values()):.1e} over {len(errs)} tensors")
    with pytest.raises(BadRequestError, match="shape"):
        tr.forward_backward(ids, y[:, :2], mask, tt)
    with pytest.raises(BadRequestError, match=r"not in \[0, 1\]"):
        tr.forward_backward(ids, y + 1, mask, tt)


def engine_dropout_mask(stream, n, p):
    """The engine's dropout mask (ecm_dropout_apply), rebuilt in NumPy: keep
    element i when splitmix64's finaliser of stream + golden * (i + 1) >= p 2^64."""
    M = np.uint64(0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = (np.uint64(stream) + np.uint64(0x9e3779b97f4a7c15) * np.arange(1, n + 1, dtype=np.uint64)) & M
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        z = z ^ (z >> np.uint64(31))
    keep = z >= np.uint64(int(p * 2.0 ** 64))
    return keep.astype(np.float32) * np.float32(1.0 / np.float32(1.0 - np.float32(p)))


def test_dropout_matches_torch_with_the_same_masks(tmp_path):
    """Hidden dropout at BertForSequenceClassification's sites (embeddings,
    attention and MLP outputs, pooled output; attention probabilities aside):
    torch runs with the engine's masks, rebuilt from their documented streams."""
    import torch

    nl, p = 3, 0.3
    m = tiny_cls(nl, seed=9).train()
    m.save_pretrained(tmp_path, safe_serialization=True)
    tr, *_ = build_classifier_trainer(str(tmp_path), nl, n_threads=2)
    tr.dropout = p
    ids, mask, tt, labels = batch(12, num_labels=nl)
    B, T = ids.shape
    L = m.config.num_hidden_layers
    f = tr.forward_count + 1  # the forward pass about to run
    sites = {"bert.embeddings.dropout": 0, "dropout": 1 + 2 * L}
    for l in range(L):
        sites[f"bert.encoder.layer.{l}.attention.output.dropout"] = 1 + 2 * l
        sites[f"bert.encoder.layer.{l}.output.dropout"] = 2 + 2 * l
    mods = dict(m.named_modules())
    M64 = (1 << 64) - 1
    for name, site in sites.items():
        stream = (f * 0x9e3779b97f4a7c15 + (site + 1) * 0xbf58476d1ce4e5b9) & M64

        def fwd(x, stream=stream):
            return x * torch.tensor(engine_dropout_mask(stream, x.numel(), p)).reshape(x.shape)

        mods[name].forward = fwd
    loss = tr.forward_backward(ids, labels, mask, tt)
    out = torch_out(m, ids, mask, tt, labels)
    out.loss.backward()
    assert abs(loss - out.loss.item()) <= 1e-5 * abs(out.loss.item())
    assert rel(tr.logits(), out.logits.detach().numpy()) <= 1e-5
    expected = engine_grads(m)
    errs = {n: rel(g, expected[n]) for n, g in tr.gradients().items()}
    assert max(errs.values()) <= TOL, sorted(errs.items(), key=lambda kv: -kv[1])[:5]
    # forwards without labels (evaluation) never drop
    m.eval()
    for name in sites:
        del mods[name].forward  # back to nn.Dropout, inactive in eval mode
    tr.forward(ids, None, mask, tt)
    with torch.no_grad():
        ref = torch_out(m, ids, mask, tt, labels).logits.numpy()
    assert rel(tr.logits(), ref) <= 1e-5
    with pytest.raises(BadRequestError, match=r"dropout must be in \[0, 1\), got 1\.5$"):
        tr.dropout = 1.5                   # the value in the message (Python 3.12 has no %g in its formatter)


def test_padding_is_invisible(model_dir):
    """More right padding changes no logit and no gradient beyond rounding."""
    nl, _, path = model_dir
    tr, *_ = build_classifier_trainer(path, nl, n_threads=1)
    ids, mask, tt, labels = batch(1, num_labels=nl)
    tr.forward_backward(ids, labels, mask, tt)
    z, g = tr.logits(), {n: x.copy() for n, x in tr.gradients().items()}
    pad = lambda a: np.concatenate([a, np.zeros((a.shape[0], 7), a.dtype)], axis=1)  # noqa: E731
    tr.zero_grad()
    tr.forward_backward(pad(ids), labels, pad(mask), pad(tt))
    assert rel(tr.logits(), z) <= 1e-5
    for n, x in tr.gradients().items():
        assert rel(x, g[n]) <= 1e-5, n
    # back to the first shape: the activations are carved anew in the grown slab, same bits
    tr.zero_grad()
    tr.forward_backward(ids, labels, mask, tt)
    assert np.array_equal(tr.logits(), z)
    for n, x in tr.gradients().items():
        assert np.array_equal(x, g[n]), n


def test_threads_give_identical_results(tmp_path):
    # large enough that every kernel takes its threaded path
    m = tiny_cls(2, hidden_size=64, num_attention_heads=4, intermediate_size=128, max_position_embeddings=80)
    m.save_pretrained(tmp_path, safe_serialization=True)
    ids, mask, tt, labels = batch(2, B=8, T=70, num_labels=2)
    out = []
    for nt in (1, 2):
        tr, *_ = build_classifier_trainer(str(tmp_path), 2, n_threads=nt)
        tr.dropout = 0.1
        loss = tr.forward_backward(ids, labels, mask, tt)
        tr.step(1e-3, weight_decay=0.1, max_grad_norm=1.0)
        out.append((loss, {n: g.copy() for n, g in tr.gradients().items()},
                    {n: p.copy() for n, p in tr.parameters().items()}))
    assert out[0][0] == out[1][0]
    for n in out[0][1]:
        assert np.array_equal(out[0][1][n], out[1][1][n]), n
        assert np.array_equal(out[0][2][n], out[1][2][n]), n


def lora_weight(m, layer, target):
    """(torch weight, row slice) of a LoRA target in engine layout (N, K)."""
    blk = m.bert.encoder.layer[layer]
    return {"q": blk.attention.self.query, "k": blk.attention.self.key, "v": blk.attention.self.value,
            "o": blk.attention.output.dense, "up": blk.intermediate.dense, "down": blk.output.dense}[target].weight


def test_lora_gradients_match_autograd(tmp_path):
    import torch

    m = tiny_cls(3, seed=4)
    m.save_pretrained(tmp_path, safe_serialization=True)
    targets = ["q", "k", "v", "o", "up", "down"]
    tr, *_ = build_classifier_trainer(str(tmp_path), 3, n_threads=2,
                                      lora=dict(rank=4, alpha=8.0, targets=targets, seed=3))
    s = tr.lora_scale
    rng = np.random.default_rng(5)
    params = tr.parameters()
    for n, p in params.items():
        if ".lora_" in n:
            p[...] = rng.normal(0, 0.1, p.shape)  # B starts at zero: make both factors live
    with torch.no_grad():
        for l in range(2):
            for t in targets:
                A, Bm = params[f"layers.{l}.lora_{t}.A"], params[f"layers.{l}.lora_{t}.B"]
                lora_weight(m, l, t).add_(torch.tensor(s * Bm @ A))
    ids, mask, tt, labels = batch(6)
    loss = tr.forward_backward(ids, labels, mask, tt)
    m.zero_grad()
    out = torch_out(m, ids, mask, tt, labels)
    out.loss.backward()
    assert abs(loss - out.loss.item()) <= 1e-5 * abs(out.loss.item())
    grads = tr.gradients()
    # adapters and the classifier train (PEFT's sequence classification); the rest is frozen
    assert set(grads) == {n for n in params if ".lora_" in n} | {"classifier.weight", "classifier.bias"}
    errs = {"classifier.weight": rel(grads["classifier.weight"], m.classifier.weight.grad.numpy()),
            "classifier.bias": rel(grads["classifier.bias"], m.classifier.bias.grad.numpy())}
    for l in range(2):
        for t in targets:
            dw = lora_weight(m, l, t).grad.numpy()
            A, Bm = params[f"layers.{l}.lora_{t}.A"], params[f"layers.{l}.lora_{t}.B"]
            errs[f"layers.{l}.lora_{t}.A"] = rel(grads[f"layers.{l}.lora_{t}.A"], s * Bm.T @ dw)
            errs[f"layers.{l}.lora_{t}.B"] = rel(grads[f"layers.{l}.lora_{t}.B"], s * dw @ A.T)
    assert max(errs.values()) <= TOL, sorted(errs.items(), key=lambda kv: -kv[1])[:5]
    print(f"\nbert classifier LoRA: max gradient error {max(errs.values()):.1e} over {len(errs)} tensors")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_adamw_follows_pytorch_loss_curve(tmp_path, lora):
    """20 AdamW steps (weight decay on matrices, clipping at 0.5, warm-up +
    cosine) track torch.optim.AdamW within 1e-3 at every step."""
    import torch
    from torch.func import functional_call

    m = tiny_cls(3, seed=7).train()
    m.save_pretrained(tmp_path, safe_serialization=True)
    lcfg = dict(rank=4, alpha=8.0, targets=["q", "v", "down"], seed=1) if lora else None
    tr, *_ = build_classifier_trainer(str(tmp_path), 3, n_threads=2, lora=lcfg)
    hp = dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    steps, warmup = 20, 4
    s = tr.lora_scale
    names = {id(p): n for n, p in m.named_parameters()}
    if lora:
        init = {n: p.copy() for n, p in tr.parameters().items() if ".lora_" in n}
        loras = []
        for l in range(2):
            for t in lcfg["targets"]:
                w = lora_weight(m, l, t)
                A = torch.nn.Parameter(torch.tensor(init[f"layers.{l}.lora_{t}.A"]))
                Bm = torch.nn.Parameter(torch.tensor(init[f"layers.{l}.lora_{t}.B"]))
                loras.append((names[id(w)], A, Bm, w.detach().clone()))
        for p in m.parameters():
            p.requires_grad_(False)
        head = [m.classifier.weight, m.classifier.bias]
        for p in head:
            p.requires_grad_(True)
        groups = [{"params": [p for x in loras for p in x[1:3]] + [head[0]], "weight_decay": hp["weight_decay"]},
                  {"params": [head[1]], "weight_decay": 0.0}]
    else:
        groups = [{"params": [p for p in m.parameters() if p.ndim >= 2], "weight_decay": hp["weight_decay"]},
                  {"params": [p for p in m.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=hp["betas"], eps=hp["eps"], foreach=False)
    devs, norms = [], []
    for step in range(steps):
        ids, mask, tt, labels = batch(100 + step, B=4, T=16)
        lr = core.lr_schedule(step, hp["lr"], 0.0, warmup, steps)
        tr.zero_grad()
        ours = tr.forward_backward(ids, labels, mask, tt)
        norm = tr.step(lr, hp["betas"][0], hp["betas"][1], hp["eps"], hp["weight_decay"], CLIP)
        opt.zero_grad()
        kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask).long(),
                  token_type_ids=torch.tensor(tt), labels=torch.tensor(labels))
        if lora:
            replace = {name: w0 + s * Bm @ A for name, A, Bm, w0 in loras}
            ref = functional_call(m, replace, (), kw, strict=False).loss
        else:
            ref = m(**kw).loss
        ref.backward()
        ref_norm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], CLIP)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        devs.append(abs(ours - ref.item()))
        norms.append(norm)
        assert abs(ours - ref.item()) <= 1e-3, (step, ours, ref.item())
        assert abs(norm - float(ref_norm)) <= 1e-3 * max(1.0, float(ref_norm)), (step, norm, float(ref_norm))
    print(f"\nbert classifier {'lora' if lora else 'full'}: 20 AdamW steps, max |loss - torch| = {max(devs):.2e}, "
          f"largest gradient norm {max(norms):.2f}")
    assert max(norms) > CLIP  # clipping was exercised


# ------------------------------------------------------------- bad input

def test_trainer_rejects_bad_batches(model_dir):
    nl, _, path = model_dir
    tr, *_ = build_classifier_trainer(path, nl, n_threads=1)
    ids, mask, tt, labels = batch(8, num_labels=nl)
    with pytest.raises(BadRequestError, match="labels"):
        tr.forward_backward(ids, labels[:-1], mask, tt)
    with pytest.raises(BadRequestError, match="input_ids.*out of range"):
        tr.forward_backward(ids + 5000, labels, mask, tt)
    with pytest.raises(BadRequestError, match="token_type_ids.*out of range"):
        tr.forward_backward(ids, labels, mask, tt + 3)
    with pytest.raises(BadRequestError, match="attention_mask: row 1"):
        bad = mask.copy()
        bad[1] = 0
        tr.forward_backward(ids, labels, bad, tt)
    with pytest.raises(BadRequestError, match="attention_mask.*right"):
        bad = mask.copy()
        bad[0, 0] = 0
        tr.forward_backward(ids, labels, bad, tt)
    with pytest.raises(BadRequestError, match="shape"):
        tr.forward_backward(ids, labels, mask[:, :-1], tt)
    with pytest.raises(BadRequestError, match="empty"):
        tr.forward_backward(np.zeros((0, 5), np.int32), labels[:0])
    with pytest.raises(BadRequestError, match="needs labels"):
        tr.forward_backward(ids, None, mask, tt)
    if nl > 1:
        with pytest.raises(BadRequestError, match=r"labels: label 7 of example 0 is out of range \[0, %d\)" % nl):
            tr.forward_backward(ids, np.where(np.arange(len(labels)) == 0, 7, labels), mask, tt)
        with pytest.raises(BadRequestError, match="integer class ids"):
            tr.forward_backward(ids, labels + 0.5, mask, tt)
    else:
        with pytest.raises(BadRequestError, match="not finite"):
            tr.forward_backward(ids, np.full(len(labels), np.nan, np.float32), mask, tt)


def test_trainer_head_configuration(model_dir):
    nl, _, path = model_dir
    _, ecfg = hf.engine_config(hf.read_config(path))
    with pytest.raises(BadRequestError, match="num_labels"):
        core.Trainer(ecfg, 1, False, None, 0)
    with pytest.raises(BadRequestError, match="gate"):
        core.Trainer(ecfg, 1, False, dict(rank=2, targets=["gate"]), 2)
    gcfg = dict(arch=core.ARCH_GPT2, n_layer=1, d_model=8, n_head=2, d_ff=16, vocab=10, max_pos=8)
    with pytest.raises(BadRequestError, match="num_labels applies to bert"):
        core.Trainer(gcfg, 1, False, None, 2)
    tr = core.Trainer(ecfg, 1, False, None, 2)
    with pytest.raises(BadRequestError, match="finalize|not all loaded"):
        tr.forward_backward(np.zeros((1, 4), np.int32), [0])


# ----------------------------------------------------- fine_tune_classifier

WORDS_POS = ["great", "love", "perfect", "excellent", "happy", "fast", "beautiful", "comfortable"]
WORDS_NEG = ["broken", "terrible", "refund", "late", "cheap", "awful", "small", "disappointed"]


def toy_reviews(n, seed):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        pos = i % 2 == 0
        words = rng.choice(WORDS_POS if pos else WORDS_NEG, 3)
        texts.append(f"the shoes were {words[0]} and {words[1]}, really {words[2]}")
        labels.append("positive" if pos else "negative")
    return texts, labels


@pytest.fixture(scope="module")
def tiny_with_tokenizer(tmp_path_factory):
    """A random tiny bert with all-MiniLM-L6-v2's real tokenizer (vocab 30522)."""
    from ecomlm.engine import registry

    src = registry.resolve("all-minilm-l6-v2", pull_if_missing=False)
    m = tiny_cls(2, vocab_size=30522, max_position_embeddings=128, type_vocab_size=2, seed=11)
    path = tmp_path_factory.mktemp("tinytok")
    m.save_pretrained(path, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if os.path.isfile(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(path, f))
    return str(path)


def test_fine_tune_classifier_learns_saves_and_loads(tiny_with_tokenizer, tmp_path):
    import torch
    import transformers

    texts, labels = toy_reviews(64, 0)
    val = toy_reviews(24, 1)
    clf, hist = fine_tune_classifier(tiny_with_tokenizer, texts, labels, validation=val, epochs=4, batch_size=8,
                                     lr=1e-2, max_length=32, n_threads=2, progress=False, seed=0)
    assert clf.labels == ["negative", "positive"]
    assert [h["step"] for h in hist] == list(range(1, 33))
    evals = [h for h in hist if "val_loss" in h]
    assert len(evals) == 4 and evals[0]["val_accuracy"] <= 0.6 and evals[-1]["val_accuracy"] >= 0.9, evals
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    probs = clf.predict_proba(val[0])
    assert probs.shape == (24, 2) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert np.mean(np.array(clf.predict(val[0])) == np.array(val[1])) == evals[-1]["val_accuracy"]
    # the history's accuracy came from the training path; predictions from the inference engine
    out = clf.save(tmp_path / "clf")
    again = TextClassifier.load(out, n_threads=1)
    assert again.labels == clf.labels and again.max_length == 32
    assert np.abs(again.predict_proba(val[0]) - probs).max() <= 1e-6
    # transformers reads the directory as BertForSequenceClassification
    hm = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    ht = transformers.AutoTokenizer.from_pretrained(out)
    enc = ht(val[0], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        ref = torch.softmax(hm(**enc).logits, -1).numpy()
    assert np.abs(ref - probs).max() <= 1e-5
    assert hm.config.id2label == {0: "negative", 1: "positive"}


def test_fine_tune_classifier_multi_label(tiny_with_tokenizer, tmp_path):
    import torch
    import transformers

    texts = ["great fit and fast delivery", "broken zipper", "fast delivery", "runs small, broken seam",
             "fits well", "slow delivery and it runs small", "nothing to say", "perfect fit"]
    tags = [["fit", "shipping"], ["quality"], ["shipping"], ["fit", "quality"], ["fit"], ["shipping", "fit"], [],
            ["fit"]]
    clf, hist = fine_tune_classifier(tiny_with_tokenizer, texts, tags, problem_type="multi_label_classification",
                                     epochs=20, batch_size=8, lr=1e-2, warmup=0, n_threads=1, progress=False,
                                     validation=(texts, tags))
    assert clf.labels == ["fit", "quality", "shipping"] and clf.problem_type == "multi_label_classification"
    assert hist[-1]["val_loss"] < 0.75 * hist[0]["val_loss"], [h["val_loss"] for h in hist]
    probs = clf.predict_proba(texts)
    assert probs.shape == (8, 3)
    y = np.zeros((8, 3))
    for i, t in enumerate(tags):
        y[i, [clf.labels.index(x) for x in t]] = 1
    assert hist[-1]["val_accuracy"] == np.mean((probs >= 0.5) == (y == 1))
    pred = clf.predict(texts)
    assert all(isinstance(p, list) for p in pred) and pred[1] == ["quality"]
    out = clf.save(tmp_path / "multi")
    hm = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    assert hm.config.problem_type == "multi_label_classification"
    enc = transformers.AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = torch.sigmoid(hm(**enc).logits).numpy()
    assert np.abs(ref - probs).max() <= 1e-5
    assert np.abs(TextClassifier.load(out).predict_proba(texts) - probs).max() <= 1e-6
    with pytest.raises(BadRequestError, match="list of labels") as e:
        fine_tune_classifier(tiny_with_tokenizer, texts, ["fit"] * 8, problem_type="multi_label_classification",
                             progress=False)
    assert e.value.param == "labels"


def test_fine_tune_classifier_lora_and_regression(tiny_with_tokenizer, tmp_path):
    """The LoRA and regression paths end to end, on one repeated batch (their
    gradients and steps are checked against torch above)."""
    import torch
    import transformers

    texts, labels = toy_reviews(8, 2)
    clf, hist = fine_tune_classifier(tiny_with_tokenizer, texts, labels, epochs=15, batch_size=8, lora_rank=4,
                                     lr=3e-2, warmup=0, n_threads=1, progress=False, dropout=0.1,
                                     validation=(texts, labels))
    assert len(hist) == 15 and hist[-1]["val_loss"] < hist[0]["val_loss"] - 0.01, [h["val_loss"] for h in hist]
    # validation runs without dropout: its accuracy is the inference engine's
    assert hist[-1]["val_accuracy"] == np.mean(np.array(clf.predict(texts)) == np.array(labels))
    probs = clf.predict_proba(texts)
    ce = -np.mean(np.log(probs[np.arange(8), [clf.labels.index(x) for x in labels]]))
    assert abs(hist[-1]["val_loss"] - ce) <= 1e-5 * ce
    # the adapters are merged into the saved encoder
    out = clf.save(tmp_path / "lora")
    hm = transformers.BertForSequenceClassification.from_pretrained(out).eval()
    enc = transformers.AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = torch.softmax(hm(**enc).logits, -1).numpy()
    assert np.abs(ref - clf.predict_proba(texts)).max() <= 1e-5
    stars = [5.0 if lab == "positive" else 1.0 for lab in labels]
    reg, hist = fine_tune_classifier(tiny_with_tokenizer, texts, stars, problem_type="regression", epochs=15,
                                     batch_size=8, lr=1e-2, warmup=0, n_threads=1, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"] / 2, [h["loss"] for h in hist]
    assert reg.predict(texts[:4]).shape == (4,) and reg.labels is None
    with pytest.raises(BadRequestError, match="regression"):
        reg.predict_proba(texts[:2])


@pytest.mark.parametrize("kwargs, param, match", [
    (dict(texts=["a", "b"], labels=["x"]), "labels", "1 entries for 2 texts"),
    (dict(texts=[], labels=[]), "texts", "empty"),
    (dict(texts=["a", 3], labels=["x", "y"]), "texts", r"texts\[1\]"),
    (dict(texts=["a", "b"], labels=["x", "x"]), "labels", "at least 2 classes"),
    (dict(texts=["a", "b"], labels=[0, 5], label_names=["x", "y"]), "labels", r"class id 5 is out of range \[0, 2\)"),
    (dict(texts=["a", "b"], labels=["x", "z"], label_names=["x", "y"]), "labels", "unknown label 'z'"),
    (dict(texts=["a", "b"], labels=[0, -1]), "labels", "negative"),
    (dict(texts=["a", "b"], labels=["x", 1]), "labels", "not a mix"),
    (dict(texts=["a", "b"], labels=["x", "y"], epochs=0), "epochs", ">= 1"),
    (dict(texts=["a", "b"], labels=["x", "y"], lora_rank=2, lora_targets=["gate"]), "lora_targets", "gate"),
    (dict(texts=["a", "b"], labels=["x", "y"], validation=1.5), "validation", r"\[0, 1\)"),
    (dict(texts=["a", "b"], labels=["x", "y"], validation=(["c"], ["x", "y"])), "validation", "2 entries"),
    (dict(texts=["a", "b"], labels=["x", "y"], problem_type="regression"), "labels", "numbers"),
    (dict(texts=["a", "b"], labels=["x", "y"], problem_type="multi"), "problem_type", "problem_type"),
    (dict(texts=["a", "b"], labels=["x", "y"], dropout=1.0), "dropout", r"\[0, 1\)"),
])
def test_fine_tune_classifier_bad_input(tiny_with_tokenizer, kwargs, param, match):
    texts, labels = kwargs.pop("texts"), kwargs.pop("labels")
    with pytest.raises(BadRequestError, match=match) as e:
        fine_tune_classifier(tiny_with_tokenizer, texts, labels, progress=False, **kwargs)
    assert e.value.param == param


def test_fine_tune_classifier_needs_bert(tmp_path):
    from helpers import save_hf, tiny_gpt2

    path = save_hf(tiny_gpt2(), tmp_path)
    with pytest.raises(BadRequestError, match="bert") as e:
        build_classifier_trainer(path, 2)
    assert e.value.param == "model"
