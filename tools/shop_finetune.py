"""Fine-tune SmolLM2-135M-Instruct on Brightcart's support dialogues and show
what it learnt: validation loss before and after, and the shop's policies
stated (or not) by the base and the fine-tuned model on held-out paraphrased
questions.

    OMP_WAIT_POLICY=passive python tools/shop_finetune.py --threads 2 --out /tmp/shopft \\
        --report docs/shop_finetune

Steps: (1) check the data: every policy quantity an assistant states in the
dialogues is in the knowledge base, answers to a knowledge-base question state
that entry's facts, and no held-out question (support_questions.jsonl) occurs
in any dialogue; (2) split the 360 dialogues into train / validation by a
seeded shuffle; (3) LoRA fine-tuning from the shipped GGUF (dequantised into
the trainer's fp32 slots), validation loss at step 0 and after each epoch;
(4) the adapter and the merged model (safetensors and GGUF) are written to
--out; (5) the base model (the same dequantised weights) and the fine-tuned
model (the adapter loaded at run time) answer the held-out questions, greedy,
with the chat template and the training data's system prompt, without the
policies; an answer scores when it states the question's fact.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ecomlm.data import __file__ as _data_init  # noqa: E402

DATA = os.path.dirname(_data_init)
QUANTITY = re.compile(r"\$\d+(?:\.\d+)?|\d+(?:-\d+)?\s*(?:business\s+)?(?:days?|hours?|minutes?|months?|years?)\b"
                      r"|\d+%|\d+-year")


def _jsonl(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9$%. -]+", " ", s.lower()).split()).strip(" .")


def states(answer: str, fact: str) -> bool:
    """Whether answer states fact (case-insensitive; '$50' does not match '$500', '30 days' not '130 days')."""
    a = answer.replace("\u2013", "-").replace("\u2011", "-")
    pat = re.escape(fact)
    if fact[:1].isdigit() or fact[:1] == "$":
        pat = r"(?<![\d.])" + pat
    if fact[-1:].isdigit():
        pat += r"(?![\d]|\.\d)"
    if re.search(pat, a, re.IGNORECASE):
        return True
    if any(c.isdigit() for c in fact):
        return False
    # a wordy fact ("never in the washing machine") may be stated with a word or two between its words
    # ("should never go in the washing machine"): its words in order, at most 2 extra words inside
    words = re.findall(r"[a-z0-9$%'-]+", fact.lower())
    text = re.findall(r"[a-z0-9$%'-]+", a.lower())
    for i, w in enumerate(text):
        if w != words[0]:
            continue
        j, k = i + 1, 1
        while k < len(words) and j < len(text) and j - i < len(words) + 2:
            if text[j] == words[k]:
                k += 1
            j += 1
        if k == len(words):
            return True
    return False


# ------------------------------------------------------------------- checks

def check_data(dialogues, kb, questions):
    """Consistency of the dialogues with the knowledge base, and the held-out
    questions' absence from the dialogues. Returns a report dict; raises on a
    failure."""
    en = [e for e in kb if e["lang"] == "en"]
    kb_text = " ".join(e["text"] for e in en)
    kb_quant = {_norm(q) for q in QUANTITY.findall(kb_text)}
    asks = [(_norm(q), e) for e in en for q in e["questions"]]
    bad_quant, bad_facts, unstated, matched, n_answers = [], [], [], 0, 0
    user_turns = []
    for li, d in enumerate(dialogues, 1):
        msgs = d["messages"]
        order = "Order lookup result" in msgs[0]["content"]
        for i, m in enumerate(msgs):
            if m["role"] == "user":
                user_turns.append((li, _norm(m["content"])))
            if m["role"] != "assistant":
                continue
            n_answers += 1
            if not order:
                for q in QUANTITY.findall(m["content"]):
                    if _norm(q) not in kb_quant:
                        bad_quant.append((li, q, m["content"]))
            prev = _norm(msgs[i - 1]["content"]) if i and msgs[i - 1]["role"] == "user" and not order else ""
            hits = [e for a, e in asks if a and a in prev]
            if hits:
                matched += 1
                e = max(hits, key=lambda e: max(len(a) for a, x in asks if x is e and a in prev))
                if not any(states(m["content"], f) for f in e["facts"]):
                    unstated.append((li, e["id"], m["content"]))
                for q in QUANTITY.findall(m["content"]):
                    if _norm(q) not in {_norm(x) for x in QUANTITY.findall(e["text"])}:
                        bad_facts.append((li, e["id"], f"{q!r} not in the entry: {m['content']}"))
    # headline policies: every statement of the general return window / free-shipping threshold agrees
    window = collections.Counter(re.findall(r"(\d+) days", " ".join(
        m["content"] for d in dialogues for m in d["messages"] if m["role"] == "assistant"
        and re.search(r"\bmost items\b|\breturn (?:most )?items within\b", m["content"], re.I))))
    threshold = collections.Counter(re.findall(r"(?:free (?:on|for) orders over|orders over) (\$\d+)", " ".join(
        m["content"] for d in dialogues for m in d["messages"] if m["role"] == "assistant"), re.I))
    leaks, nearest = [], []
    ask_set = {a for a, _ in asks}
    for q in questions:
        nq = _norm(q["question"])
        if nq in ask_set or any(nq in u for _, u in user_turns):
            leaks.append(q["qid"])
        wq = set(nq.split())
        best = max(len(wq & set(u.split())) / len(wq | set(u.split())) for _, u in user_turns)
        nearest.append(best)
    rep = dict(dialogues=len(dialogues), assistant_turns=n_answers, turns_answering_a_kb_question=matched,
               quantities_not_in_kb=bad_quant[:10], n_quantities_not_in_kb=len(bad_quant),
               quantities_not_in_the_answered_entry=bad_facts[:10], n_quantities_not_in_entry=len(bad_facts),
               answers_paraphrasing_their_entrys_fact=unstated[:10], n_answers_paraphrasing_fact=len(unstated),
               return_window_days_stated=dict(window), free_shipping_threshold_stated=dict(threshold),
               heldout_questions=len(questions), heldout_found_in_dialogues_or_kb=leaks,
               heldout_max_word_jaccard_to_a_dialogue_turn=round(max(nearest), 3),
               heldout_mean_nearest_jaccard=round(sum(nearest) / len(nearest), 3))
    return rep


# --------------------------------------------------------------- evaluation

def ask_all(model, questions, system, max_tokens):
    prompts = [model.apply_chat_template([{"role": "system", "content": system},
                                          {"role": "user", "content": q["question"]}]) for q in questions]
    out = model.complete(prompts, max_tokens=max_tokens, temperature=0.0)
    return [c[0].text.strip() for c in out]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--lora-targets", default="q,k,v,o,gate,up,down")
    ap.add_argument("--val", type=int, default=36, help="validation dialogues")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help="stop early (smoke runs)")
    ap.add_argument("--questions", type=int, default=None, help="ask only the first N held-out questions")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--out", default="shop_finetune_out", help="adapter, merged model and GGUF go here")
    ap.add_argument("--eval-gguf", default="Q8_0", choices=["Q8_0", "Q4_1"],
                    help="which merged GGUF export answers the questions too")
    ap.add_argument("--base-answers", default=None, help="a previous REPORT.json whose base answers to reuse")
    ap.add_argument("--report", default=None, help="write REPORT.json and REPORT.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import ecomlm
    from ecomlm.engine import finetune as ft

    t_start = time.time()
    dialogues = _jsonl("support_dialogues.jsonl")
    kb = _jsonl("knowledge_base.jsonl")
    qs = [q for q in _jsonl("support_questions.jsonl") if q["type"] == "in_scope"]
    checks = check_data(dialogues, kb, qs)
    print(json.dumps(checks, indent=1))
    if checks["heldout_found_in_dialogues_or_kb"] or checks["n_quantities_not_in_kb"] or \
            checks["n_quantities_not_in_entry"] or len(checks["return_window_days_stated"]) != 1 or \
            len(checks["free_shipping_threshold_stated"]) != 1:
        raise SystemExit("the data check failed (see above)")

    order = list(range(len(dialogues)))
    random.Random(args.seed).shuffle(order)
    val = [dialogues[i] for i in order[:args.val]]
    train = [dialogues[i] for i in order[args.val:]]
    systems = collections.Counter(m["content"] for d in train for m in d["messages"][:1]
                                  if "Order lookup" not in m["content"])
    system = systems.most_common(1)[0][0]
    if args.questions:
        qs = qs[:args.questions]
    print(f"train {len(train)} dialogues, validation {len(val)}; {len(qs)} held-out questions")

    t0 = time.time()
    before = None
    if args.base_answers:  # greedy answers are deterministic: reuse an earlier report's base column
        with open(args.base_answers, encoding="utf-8") as f:
            old = json.load(f)
        got = {r["qid"]: r for r in old["rows"]}
        if old["summary"]["system_prompt"] == system and old["summary"]["hyperparameters"]["model"] == args.model \
                and old["summary"]["hyperparameters"]["max_tokens"] == args.max_tokens and all(
                q["qid"] in got and got[q["qid"]]["question"] == q["question"] for q in qs):
            before = [got[q["qid"]]["base"] for q in qs]
            print(f"base answers reused from {args.base_answers}")
    if before is None:
        base = ecomlm.load(args.model, args.threads, dequantize=True)  # the weights the fine-tune starts from
        before = ask_all(base, qs, system, args.max_tokens)
        base.close()
        del base
    t_ask_base = time.time() - t0

    t0 = time.time()
    hist = ft.fine_tune(args.model, train, val, epochs=args.epochs, batch_size=args.batch_size, seq_len=args.seq_len,
                        lr=args.lr, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                        lora_targets=args.lora_targets.split(","), weight_decay=0.0, warmup=0.05, seed=args.seed,
                        n_threads=args.threads, max_steps=args.max_steps, eval_at_start=True, progress=True)
    t_train = time.time() - t0
    vals = [(r["step"], r["val_loss"]) for r in hist if r["val_loss"] is not None]
    v0, v1 = vals[0][1], vals[-1][1]
    os.makedirs(args.out, exist_ok=True)
    adapter = ft.save_adapter(hist, os.path.join(args.out, "adapter"), base_model=args.model)
    ft.save_merged(hist, os.path.join(args.out, "merged"))
    ft.save_gguf(hist, os.path.join(args.out, "shop-smollm2-135m.Q4_1.gguf"))  # the source's types
    ft.save_gguf(hist, os.path.join(args.out, "shop-smollm2-135m.Q8_0.gguf"), "q8_0")
    hist.model.close()
    hist.trainer.close()

    tuned = ecomlm.load(adapter, args.threads)  # base + adapter merged at load
    t0 = time.time()
    after = ask_all(tuned, qs, system, args.max_tokens)
    t_ask_tuned = time.time() - t0
    tuned.close()
    gg = ecomlm.load(os.path.join(args.out, f"shop-smollm2-135m.{args.eval_gguf}.gguf"), args.threads)
    after_q = ask_all(gg, qs, system, args.max_tokens)
    gg.close()

    rows = []
    for q, b, a, aq in zip(qs, before, after, after_q):
        rows.append(dict(qid=q["qid"], type=q["type"], kb_id=q["kb_id"], question=q["question"], fact=q["fact"],
                         base=b, base_ok=states(b, q["fact"]), tuned=a, tuned_ok=states(a, q["fact"]),
                         tuned_gguf=aq, tuned_gguf_ok=states(aq, q["fact"])))
    n = len(rows)
    nb, nt, nq = (sum(r[k] for r in rows) for k in ("base_ok", "tuned_ok", "tuned_gguf_ok"))
    gained = [r["qid"] for r in rows if r["tuned_ok"] and not r["base_ok"]]
    lost = [r["qid"] for r in rows if r["base_ok"] and not r["tuned_ok"]]
    headline = [r for r in rows if r["kb_id"] in ("returns-window", "shipping-fees")]
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = dict(model=args.model, hyperparameters={k: v for k, v in vars(args).items()
                                                      if k not in ("out", "report")},
                   train_dialogues=len(train), val_dialogues=len(val), steps=hist[-1]["step"],
                   val_loss_before=v0, val_loss_after=v1, val_loss_drop=1 - v1 / v0, val_curve=vals,
                   train_loss_first=hist[1]["loss"], train_loss_last=hist[-1]["loss"],
                   train_seconds=round(t_train, 1), total_seconds=round(time.time() - t_start, 1),
                   ask_seconds_base=round(t_ask_base, 1), ask_seconds_tuned=round(t_ask_tuned, 1),
                   tokens_per_s_median=sorted(r["tokens_per_s"] for r in hist if r["step"])[
                       sum(1 for r in hist if r["step"]) // 2],
                   peak_rss_mib=round(peak_rss), questions=n, base_states_fact=nb, tuned_states_fact=nt,
                   tuned_gguf_states_fact=nq, gguf_export=args.eval_gguf, gained=gained, lost=lost, threads=args.threads,
                   system_prompt=system, data_checks=checks)
    print()
    print(f"validation loss {v0:.4f} -> {v1:.4f} ({100 * (1 - v1 / v0):.1f} % lower) in {hist[-1]['step']} steps, "
          f"{t_train:.0f} s; peak RSS {peak_rss:.0f} MiB")
    print(f"held-out questions stating the fact: base {nb}/{n}, fine-tuned {nt}/{n} "
          f"(merged {args.eval_gguf} GGUF {nq}/{n}); gained {len(gained)}, lost {len(lost)}")
    print()
    md = [f"| qid | question | fact | base | fine-tuned |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        cell = lambda t, ok: ("**yes** " if ok else "no ") + t.replace("|", "/").replace("\n", " ")[:160]  # noqa
        md.append(f"| {r['qid']} | {r['question']} | {r['fact']} | {cell(r['base'], r['base_ok'])} | "
                  f"{cell(r['tuned'], r['tuned_ok'])} |")
    for r in headline:
        print(f"{r['qid']} {r['question']}\n  fact {r['fact']!r}\n  base  [{'x' if r['base_ok'] else ' '}] "
              f"{r['base'][:150]!r}\n  tuned [{'x' if r['tuned_ok'] else ' '}] {r['tuned'][:150]!r}")
    if args.report:
        os.makedirs(os.path.dirname(os.path.abspath(args.report)), exist_ok=True)
        with open(args.report + ".json", "w", encoding="utf-8") as f:
            json.dump(dict(summary=summary, rows=rows), f, indent=1, ensure_ascii=False)
        head = [f"# Brightcart fine-tune: before and after\n",
                f"`{' '.join(['python tools/shop_finetune.py'] + (argv if argv is not None else sys.argv[1:]))}`\n",
                f"- {len(train)} training dialogues, {len(val)} validation; LoRA rank {args.lora_rank} "
                f"(alpha {args.lora_alpha}) on {args.lora_targets}, lr {args.lr}, {args.epochs} epochs, "
                f"batch {args.batch_size} x {args.seq_len}, {hist[-1]['step']} steps, {args.threads} threads",
                f"- validation loss {v0:.4f} -> {v1:.4f}: **{100 * (1 - v1 / v0):.1f} % lower**",
                f"- held-out paraphrased questions whose answer states the fact: base **{nb}/{n}**, "
                f"fine-tuned **{nt}/{n}** (the merged model exported as {args.eval_gguf} GGUF: {nq}/{n}); "
                f"{len(gained)} gained, {len(lost)} lost",
                f"- training {t_train:.0f} s, whole run {time.time() - t_start:.0f} s, peak RSS {peak_rss:.0f} MiB",
                f"- system prompt (no policies in it): \"{system}\"\n"]
        with open(args.report + ".md", "w", encoding="utf-8") as f:
            f.write("\n".join(head + md) + "\n")
    return summary


if __name__ == "__main__":
    main()
