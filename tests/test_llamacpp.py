"""ecomlm against llama.cpp (llama-cpp-python) on the shipped SmolLM2-135M-Instruct
Q4_1 file: greedy continuations and logits.

Both engines get the same token ids (ecomlm's tokenizer and chat template).
They cannot agree bit for bit: llama.cpp keeps the KV cache in fp16 and
multiplies attention in fp16, and stores the 8-bit activation blocks' scale
and sum in fp16, where ecomlm keeps fp32. The fp16 KV cache and attention
alone rule out identical logits, so ecomlm keeps its more accurate fp32
activation scales rather than copying llama.cpp's fp16 rounding. Both are 8-bit-activation engines and land about
as far from the exact fp32 computation on the dequantised weights (measured
max |logit error| 2.3 for ecomlm, 2.6 for llama.cpp on a chat prompt), so the
tests bound how far apart they are, and check that greedy decoding parts
only where the model itself is undecided.
"""

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import ecomlm  # noqa: E402

PROMPTS = [
    ("chat", "How long do I have to return a pair of shoes I bought online?"),
    ("chat", "My order #4521 has not arrived yet. What should I do?"),
    ("chat", "Do you ship to Canada, and how much does shipping cost?"),
    ("chat", "Can you recommend a waterproof jacket for hiking under 100 dollars?"),
    ("text", "Product description: The TrailRunner 2 is a lightweight running shoe with"),
    ("text", "Customer review: I bought this blender last month and"),
    ("text", "def total_price(items, tax_rate):\n    \"\"\"Return the total price of the items including tax.\"\"\"\n"),
    ("text", "SELECT product_id, SUM(quantity) AS sold\nFROM order_items\n"),
    ("chat", "请问这件衣服有红色的吗？"),
    ("text", "这款手机的电池续航时间"),
]
N_NEW = 64

# A greedy divergence is explained when, where the engines first part, each
# engine's pick is the other's runner-up and the two engines' top-2 margins
# add up to at most MARGIN_SUM logits. The engines swap two tokens exactly
# when they disagree on the gap between them by more than that sum. At the
# steps where both engines had seen the same tokens, their disagreement on
# the top-1 - top-2 gap measured mean 0.12, p99 0.46, max 0.74 logit (308
# steps over the 10 prompts); MARGIN_SUM = 0.5 is that p99, so a divergence
# passes only where the model's own choice is closer than the engines'
# ordinary disagreement. Measured divergences: margin sums 0.07 to 0.34.
MARGIN_SUM = 0.5
GAP_P99_MAX = 0.75  # the calibration above must keep holding
LOGIT_TOL = 0.04  # max |ecomlm - llama.cpp| as a fraction of the logits' range


@pytest.fixture(scope="module")
def engines():
    from ecomlm.engine import registry

    try:
        path = registry.pull("smollm2-135m-instruct", progress=False)
    except Exception as e:  # offline
        pytest.skip(f"SmolLM2 not available: {e}")
    m = ecomlm.load(path, n_threads=2)
    llm = llama_cpp.Llama(path, n_threads=2, n_threads_batch=2, n_ctx=512, n_batch=512, logits_all=True,
                          verbose=False)
    return m, llm


def prompt_ids(m, kind, text):
    if kind == "chat":
        return m.apply_chat_template([{"role": "user", "content": text}])
    return m.tokenize(text)


def llama_greedy(llm, ids, n):
    """Greedy tokens and the logits each was picked from."""
    llm.reset()
    llm.eval(ids)
    out, rows = [], []
    for _ in range(n):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tok = int(row.argmax())
        out.append(tok)
        rows.append(row)
        llm.eval([tok])
    return out, rows


def ecomlm_greedy(m, ids, n):
    """The same loop on ecomlm: prompt, then one token at a time."""
    cache = m.new_cache(len(ids) + n + 1)
    row = m.forward(ids, cache)[-1]
    out, rows = [], []
    for _ in range(n):
        tok = int(row.argmax())
        out.append(tok)
        rows.append(row)
        row = m.forward([tok], cache)[-1]
    return out, rows


def top2(row):
    i = np.argsort(row)[::-1][:2]
    return int(i[0]), int(i[1]), float(row[i[0]] - row[i[1]])


def test_greedy_continuations_agree(engines):
    m, llm = engines
    report, gap_diffs = [], []
    for kind, text in PROMPTS:
        ids = prompt_ids(m, kind, text)
        ours = m.complete(ids, max_tokens=N_NEW, temperature=0, stop_token_ids=(-1,))[0][0].token_ids
        ours2, our_rows = ecomlm_greedy(m, ids, N_NEW)
        assert ours2 == ours
        theirs, rows = llama_greedy(llm, ids, N_NEW)
        assert len(ours) == len(theirs) == N_NEW
        for k in range(N_NEW):  # where both engines saw the same tokens
            if ours[:k] != theirs[:k]:
                break
            t1, t2, gap = top2(rows[k])
            gap_diffs.append(abs(gap - (our_rows[k][t1] - our_rows[k][t2])))
        if ours == theirs:
            report.append((text[:30], "identical"))
            continue
        i = next(k for k in range(N_NEW) if ours[k] != theirs[k])
        our_row = ecomlm_greedy(m, ids, i + 1)[1][i]
        e1, l1 = ours[i], theirs[i]
        # the divergence is a near-tie between the two chosen tokens in BOTH
        # engines: how far each engine's pick leads the other's pick
        e_margin = float(our_row[e1] - our_row[l1])
        l_margin = float(rows[i][l1] - rows[i][e1])
        report.append((text[:30], f"parts at {i}: ecomlm {e1} leads {l1} by {e_margin:.3f}, llama.cpp {l1} "
                                  f"leads {e1} by {l_margin:.3f}"))
        assert int(np.argmax(our_row)) == e1 and int(np.argmax(rows[i])) == l1
        assert e_margin + l_margin <= MARGIN_SUM, f"{text!r}: at token {i} margins {e_margin}, {l_margin}"
    print("\n" + "\n".join(f"{t!r}: {r}" for t, r in report))
    g = np.array(gap_diffs)
    print(f"top-2 gap disagreement over {g.size} shared steps: mean {g.mean():.3f}, p99 {np.quantile(g, 0.99):.3f}, "
          f"max {g.max():.3f}")
    assert np.quantile(g, 0.99) <= GAP_P99_MAX


def test_logits_agree(engines):
    """Logits at every position of a prompt within LOGIT_TOL (4%) of the
    range. Measured: 2.9% (2.0 logits) at worst on a chat prompt, where
    ecomlm and llama.cpp are each 2.3-2.6 logits (~3.5%) from the exact fp32
    computation on the dequantised weights, in different directions: two
    engines each within test_gguf_model's bound for 8-bit activations cannot
    be held closer than that. The mean difference is small (~0.2 logit), and
    the top token matches at nearly every position."""
    m, llm = engines
    for kind, text in PROMPTS[:3] + PROMPTS[6:7] + PROMPTS[8:9]:
        ids = prompt_ids(m, kind, text)
        ours = m.logits(ids)
        llm.reset()
        llm.eval(ids)
        theirs = np.array(llm.scores[:len(ids)], dtype=np.float32)
        d = np.abs(ours - theirs)
        rng = float(theirs.max() - theirs.min())
        assert d.max() / rng <= LOGIT_TOL, (text, d.max(), rng)
        assert d.mean() <= 0.5, (text, d.mean())
        assert (ours.argmax(1) == theirs.argmax(1)).mean() >= 0.95
