"""Fine-tune all-MiniLM-L6-v2 as a review-sentiment classifier in the C
engine (ecomlm.engine.classify) on the shop's labelled reviews, and compare
held-out accuracy with the untrained head and with a logistic regression on
the frozen sentence embeddings (what ReviewAnalyzer's sentiment head does).

    python tools/eval_review_classifier.py [--task sentiment|aspects] [--epochs 3] [--lora-rank 0]
                                           [--dropout 0.1] [--threads 2]

Split: a seeded 70/30 shuffle of ecomlm/data/reviews.jsonl (English and
Chinese reviews; labels negative / neutral / positive).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ecomlm.engine import registry  # noqa: E402
from ecomlm.engine.classify import _encode, build_classifier_trainer, fine_tune_classifier  # noqa: E402


def accuracy(pred, gold):
    return float(np.mean(np.asarray(pred) == np.asarray(gold)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=None, help="default: fine_tune_classifier's (1e-4 full, 3e-3 LoRA)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=0.0, help="0.1: the checkpoint's, as transformers trains")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", choices=("sentiment", "aspects"), default="sentiment",
                    help="aspects: multi-label tagging of the aspects a review talks about")
    args = ap.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "ecomlm", "data", "reviews.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    random.Random(args.seed).shuffle(rows)
    cut = int(0.7 * len(rows))
    train, test = rows[:cut], rows[cut:]
    if args.task == "aspects":
        return aspects(args, train, test)
    tr_x, tr_y = [r["text"] for r in train], [r["sentiment"] for r in train]
    te_x, te_y = [r["text"] for r in test], [r["sentiment"] for r in test]
    classes = sorted(set(tr_y))
    print(f"{len(train)} training and {len(test)} held-out reviews; classes {classes}; "
          f"majority class share in the held-out set {max(te_y.count(c) for c in classes) / len(te_y):.3f}")
    path = registry.resolve("all-minilm-l6-v2", pull_if_missing=False)

    # untrained head: the checkpoint's pooler and a freshly initialised classifier
    tr, _, _ = build_classifier_trainer(path, len(classes), n_threads=args.threads, seed=args.seed)
    from ecomlm.engine.tokenizer import Tokenizer

    tok = Tokenizer.from_file(path)
    pred = []
    for i in range(0, len(te_x), 64):
        ids, mask, types = _encode(tok, te_x[i:i + 64], args.max_length)
        tr.forward(ids, None, mask, types)
        pred += [classes[j] for j in tr.logits().argmax(1)]
    before = accuracy(pred, te_y)
    tr.close()
    del tr

    # frozen embeddings + logistic regression (the ReviewAnalyzer way)
    import ecomlm

    emb = ecomlm.load(path, n_threads=args.threads)
    emb.tokenizer = tok
    from sklearn.linear_model import LogisticRegression

    lr_clf = LogisticRegression(max_iter=2000, C=10.0).fit(emb.embed(tr_x), tr_y)
    frozen = accuracy(lr_clf.predict(emb.embed(te_x)), te_y)
    emb.close()

    t0 = time.perf_counter()
    clf, hist = fine_tune_classifier(path, tr_x, tr_y, validation=(te_x, te_y), epochs=args.epochs, lr=args.lr,
                                     batch_size=args.batch_size, max_length=args.max_length,
                                     lora_rank=args.lora_rank, dropout=args.dropout, n_threads=args.threads,
                                     seed=args.seed,
                                     progress=False)
    secs = time.perf_counter() - t0
    after = accuracy(clf.predict(te_x), te_y)
    en = [i for i, r in enumerate(test) if r["lang"] == "en"]
    p = clf.predict(te_x)
    after_en = accuracy([p[i] for i in en], [te_y[i] for i in en])
    print("epoch-end validation:", [(round(h["epoch"], 2), round(h["val_loss"], 4), round(h["val_accuracy"], 3))
                                    for h in hist if "val_loss" in h])
    rate = np.median([h["examples_per_s"] for h in hist])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kind = (f"LoRA rank {args.lora_rank}" if args.lora_rank else "full") + \
        f", dropout {args.dropout}"
    print(f"held-out accuracy: untrained head {before:.3f} | frozen embeddings + logistic regression {frozen:.3f} | "
          f"fine-tuned ({kind}, {args.epochs} epochs, {len(hist)} steps) {after:.3f} (English reviews only "
          f"{after_en:.3f})")
    print(f"fine-tuning took {secs:.0f} s on {args.threads} threads (median {rate:.1f} examples/s per step, "
          f"evaluations included in the total); peak RSS {rss:.0f} MiB")


def micro_f1(pred, gold):
    tp = float((pred & gold).sum())
    return 2 * tp / max(float(pred.sum() + gold.sum()), 1.0)


def aspects(args, train, test):
    """Multi-label: which of price / quality / shipping / size a review talks about."""
    from ecomlm.engine.tokenizer import Tokenizer

    def tags(r):
        return sorted({a["aspect"] for a in r["aspects"]})

    names = sorted({a for r in train for a in tags(r)})
    tr_x, tr_y = [r["text"] for r in train], [tags(r) for r in train]
    te_x, te_y = [r["text"] for r in test], [tags(r) for r in test]
    gold = np.array([[n in t for n in names] for t in te_y])
    print(f"{len(train)} training and {len(test)} held-out reviews; aspects {names}; "
          f"{gold.mean():.3f} of the (review, aspect) pairs are positive")
    path = registry.resolve("all-minilm-l6-v2", pull_if_missing=False)
    tok = Tokenizer.from_file(path)
    tr, _, _ = build_classifier_trainer(path, len(names), n_threads=args.threads, seed=args.seed, multi_label=True)
    z = []
    for i in range(0, len(te_x), 64):
        ids, mask, types = _encode(tok, te_x[i:i + 64], args.max_length)
        tr.forward(ids, None, mask, types)
        z.append(tr.logits())
    before = np.concatenate(z) >= 0
    tr.close()
    import ecomlm
    from sklearn.linear_model import LogisticRegression

    emb = ecomlm.load(path, n_threads=args.threads)
    emb.tokenizer = tok
    e_tr, e_te = emb.embed(tr_x), emb.embed(te_x)
    frozen = np.stack([LogisticRegression(max_iter=2000, C=10.0).fit(e_tr, [n in t for t in tr_y]).predict(e_te)
                       for n in names], axis=1).astype(bool)
    emb.close()
    t0 = time.perf_counter()
    clf, hist = fine_tune_classifier(path, tr_x, tr_y, problem_type="multi_label_classification",
                                     validation=(te_x, te_y), epochs=args.epochs, lr=args.lr,
                                     batch_size=args.batch_size, max_length=args.max_length,
                                     lora_rank=args.lora_rank, dropout=args.dropout, n_threads=args.threads,
                                     seed=args.seed, progress=False)
    secs = time.perf_counter() - t0
    after = clf.predict_proba(te_x) >= 0.5
    for what, pred in (("untrained head", before), ("frozen embeddings + logistic regression per aspect", frozen),
                       (f"fine-tuned ({'LoRA rank %d' % args.lora_rank if args.lora_rank else 'full'}, "
                        f"dropout {args.dropout}, {args.epochs} epochs, {len(hist)} steps)", after)):
        print(f"{what}: micro-F1 {micro_f1(pred, gold):.3f}, per-pair accuracy {(pred == gold).mean():.3f}, "
              f"exact match {(pred == gold).all(1).mean():.3f}")
    print(f"fine-tuning took {secs:.0f} s on {args.threads} threads")


if __name__ == "__main__":
    main()
