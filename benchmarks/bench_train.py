"""Training throughput: ecomlm's C trainer vs PyTorch, side by side.

Same random-initialised fp32 model (built with transformers), same batch x
sequence, AdamW, same thread count, one process:

  - GPT-2-124M shape and SmolLM2-135M shape;
  - full fine-tuning, and LoRA (rank 8 on q, k, v, o over a frozen base;
    PyTorch gets the same adapters as plain modules).

A training step is forward + backward + gradient clipping + AdamW step.
Prints tokens/s (best of --repeat steps after one warm-up; the two engines
alternate step by step) and the ratio.

    python benchmarks/bench_train.py [--threads 2] [--batch 4] [--seq 256] [--repeat 3]
                                      [--only gpt2,smollm2] [--modes full,lora]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def gpt2_model():
    import transformers

    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(cfg)


def smollm2_model():
    import transformers

    cfg = transformers.LlamaConfig(num_hidden_layers=30, hidden_size=576, num_attention_heads=9,
                                   num_key_value_heads=3, intermediate_size=1536, vocab_size=49152,
                                   max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=100000.0,
                                   tie_word_embeddings=True)
    return transformers.LlamaForCausalLM(cfg)


class LoRA:
    """Adapters for the PyTorch side: out += s * (x @ A^T) @ B^T on a frozen layer."""

    @staticmethod
    def wrap(module, n_in, n_out, rank, alpha, conv1d):
        import torch

        A = torch.nn.Parameter(torch.randn(rank, n_in) / n_in ** 0.5)
        B = torch.nn.Parameter(torch.zeros(n_out, rank))
        s = alpha / rank
        fwd = module.forward

        def forward(x):
            return fwd(x) + s * ((x @ A.T) @ B.T)

        module.forward = forward
        module.lora_A, module.lora_B = A, B
        return [A, B]


def torch_setup(name, model, mode, rank):
    import torch

    params = list(model.parameters())
    if mode == "lora":
        for p in params:
            p.requires_grad_(False)
        params = []
        if name == "gpt2":
            C = model.config.n_embd
            for blk in model.transformer.h:
                params += LoRA.wrap(blk.attn.c_attn, C, 3 * C, rank, 2 * rank, True)
                params += LoRA.wrap(blk.attn.c_proj, C, C, rank, 2 * rank, True)
        else:
            for blk in model.model.layers:
                at = blk.self_attn
                for lin in (at.q_proj, at.k_proj, at.v_proj, at.o_proj):
                    params += LoRA.wrap(lin, lin.in_features, lin.out_features, rank, 2 * rank, False)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    return params, opt


def torch_step(model, params, opt, ids, tg):
    import torch

    logits = model(ids).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tg.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return float(loss.detach())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--only", default="gpt2,smollm2")
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()

    import torch

    from ecomlm.engine.finetune import build_trainer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    B, T = args.batch, args.seq
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only.split(","):
            model = gpt2_model() if name == "gpt2" else smollm2_model()
            path = os.path.join(tmp, name)
            model.save_pretrained(path, safe_serialization=True)
            V = model.config.vocab_size
            rng = np.random.default_rng(0)
            ids = rng.integers(0, V, (B, T + 1))
            for mode in args.modes.split(","):
                lora = dict(rank=args.rank, alpha=2.0 * args.rank, targets=["q", "k", "v", "o"]) \
                    if mode == "lora" else None
                tr, *_ = build_trainer(path, lora=lora, n_threads=args.threads)
                x, y = ids[:, :-1], ids[:, 1:]
                peer_step = None
                if not args.skip_torch:
                    tm = (gpt2_model() if name == "gpt2" else smollm2_model())
                    tm.load_state_dict(model.state_dict())
                    tm.train()
                    params, opt = torch_setup(name, tm, mode, args.rank)
                    tx, ty = torch.tensor(x), torch.tensor(y)

                    def peer_step():
                        torch_step(tm, params, opt, tx, ty)

                def our_step():
                    tr.zero_grad()
                    tr.forward_backward(x, y)
                    tr.step(1e-4, max_grad_norm=1.0)

                # alternate the two engines step by step, so that a machine
                # shared with other work slows both alike; best step of each
                ours_t, peer_t = [], []
                for r in range(args.repeat + 1):
                    t0 = time.perf_counter()
                    our_step()
                    ours_t.append(time.perf_counter() - t0)
                    if peer_step is not None:
                        t0 = time.perf_counter()
                        peer_step()
                        peer_t.append(time.perf_counter() - t0)
                ours = B * T / min(ours_t[1:])
                peer = B * T / min(peer_t[1:]) if peer_t else float("nan")
                peak = tr.state_bytes / 2 ** 20  # parameters, gradients, moments, activations, scratch
                tr.close()
                del tr
                if peer_step is not None:
                    del tm, opt, params, peer_step
                rows.append((f"{name} {mode}", ours, peer, peak))
                print(f"  {name} {mode}: ecomlm {ours:.0f} tok/s, torch {peer:.0f} tok/s, "
                      f"engine state {peak:.0f} MiB", file=sys.stderr, flush=True)
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the whole process (both engines, all models): {rss:.0f} MiB")
    print(f"\ntraining tokens/s, batch {B} x {T}, AdamW, {args.threads} threads, torch {torch.__version__}")
    print(f"{'model':18s} {'ecomlm':>10s} {'pytorch':>10s} {'ratio':>7s} {'state MiB':>10s}")
    for what, ours, peer, peak in rows:
        print(f"{what:18s} {ours:10.0f} {peer:10.0f} {ours / peer:7.2f} {peak:10.0f}")


if __name__ == "__main__":
    main()
