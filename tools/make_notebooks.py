"""Write notebooks/*.ipynb (sources only, no outputs) from the cells below.

    python tools/make_notebooks.py

Each notebook reads ECOMLM_NOTEBOOK_FAST=1 (set by tests/test_notebooks.py)
and then runs on a small slice of the sample shop."""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = '''import os, sys
try:
    import ecomlm
except ImportError:                      # running from a checkout: the package is one level up
    sys.path.insert(0, os.path.abspath(".."))
    import ecomlm
FAST = os.environ.get("ECOMLM_NOTEBOOK_FAST") == "1"   # the test suite's small settings
import matplotlib
if FAST:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from ecomlm.ecommerce import sample_shop
shop = sample_shop()
shop'''

NOTEBOOKS = {
    "descriptions": [
        "# Product descriptions\n\n`DescriptionWriter` writes a description from a product's attributes with "
        "smollm2-135m-instruct, checks that every given value is stated and that no number is invented, "
        "regenerates with another seed when it is not, and finally repairs the text deterministically "
        "(drops sentences with invented numbers, appends the values still missing).",
        SETUP,
        '''from ecomlm.ecommerce import DescriptionWriter, check_description
writer = DescriptionWriter()            # smollm2-135m-instruct
row = shop.products.iloc[3]
d = writer.write(row, tone="friendly", length="short")
print(d.text)
print("missing:", d.missing, "invented:", d.invented, "tries:", d.tries, "repaired:", d.repaired)
print("the model's best try left out:", d.model_missing)''',
        "The check on its own, on a text with a made-up battery life:",
        '''check_description("The Lumetra Pulse E-Reader lasts 12 weeks on a charge.", shop.products.iloc[0])''',
        "## A catalog, resumable\n\n`write_catalog` appends one JSON line per product to `output` as it goes; "
        "a rerun skips the products already written.",
        '''import tempfile
n = 4 if FAST else 24
out = os.path.join(tempfile.mkdtemp(), "descriptions.jsonl")
catalog = writer.write_catalog(shop.products.head(n), output=out)
catalog[["product_id", "name", "description"]].head()''',
        '''again = writer.write_catalog(shop.products.head(n), output=out)      # nothing left to write
assert list(again["description"]) == list(catalog["description"])''',
        "## How much did the model state by itself?",
        '''ds = writer.write_many(shop.products.head(n))
own = [1 - len(d.model_missing) / d.n_values for d in ds]
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(range(len(own)), own); ax.set_ylim(0, 1)
ax.set_xlabel("product"); ax.set_ylabel("values stated by the model")
ax.set_title("before repair (after repair: all of them)")
plt.show()''',
        "## Marketing variants and Chinese",
        '''writer.variants(shop.products.iloc[1])''',
        '''print(writer.write(shop.products.iloc[1], language="zh").text)''',
    ],
    "support_agent": [
        "# Customer support agent\n\n`SupportAgent` retrieves knowledge-base entries, answers from their key "
        "sentences (the model only rephrases, and its wording is kept only when it still states the fact), "
        "cites the entry ids, looks up orders through a function the shop supplies (only the customer's own), "
        "and hands off to a human with a reason.",
        SETUP,
        '''from ecomlm.ecommerce import KnowledgeBase, SupportAgent
kb = KnowledgeBase.from_records(shop.kb_records("en"))
orders = {"BC-24999": {"customer_id": "C1001", "status": "shipped", "items": ["Fleece Jacket"], "carrier": "UPS",
                       "tracking": "1Z2613976313", "shipped": "2026-03-28", "eta": "2026-03-31"},
          "BC-20931": {"customer_id": "C2002", "status": "delivered", "items": ["Tent"]}}
agent = SupportAgent(kb, order_lookup=orders.get, customer_id="C1001", shop_name="Brightcart")
history = []
for q in ["How long do I have to return a jacket?", "And for shoes?", "Where is my order BC-24999?",
          "What's in order BC-20931?", "I want to speak to a manager."]:
    r = agent.ask(q, history=history)
    print(f"> {q}\\n  {r.text}\\n  sources={r.sources} handoff={r.handoff} reason={r.reason}\\n")
    history += [{"role": "user", "content": q}, {"role": "assistant", "content": r.text}]''',
        "## Retrieval on the held-out paraphrases\n\nThe held-out questions were never used to build the "
        "knowledge base; settings were tuned on their \"dev\" split only, so the \"test\" split is the figure to "
        "report. Score of the best entry, in scope vs out of scope, with the hand-off threshold:",
        '''qs = [q for q in shop.questions if q["type"] == "in_scope" and q.get("split", "test") == "test"]
hits = kb.search_many([q["question"] for q in qs], k=1)
top1 = np.mean([h[0].id == q["kb_id"] for h, q in zip(hits, qs)])
oos = [q["question"] for q in shop.questions if q.get("reason") == "out_of_scope"]
oos_scores = [h[0].score for h in kb.search_many(oos, k=1)]
print(f"top-1 accuracy {top1:.3f} on {len(qs)} held-out (test split) questions")
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist([h[0].score for h in hits], bins=20, alpha=0.7, label="in scope")
ax.hist(oos_scores, bins=10, alpha=0.7, label="out of scope")
ax.axvline(agent.min_score, color="k", ls="--", label="hand-off below")
ax.set_xlabel("best entry score"); ax.legend(); plt.show()''',
        "## Does the answer state its fact?",
        '''sample = qs[:: (12 if FAST else 1)]
rows = []
for q in sample:
    r = agent.ask(q["question"])
    rows.append({"question": q["question"], "right source": r.sources == [q["kb_id"]],
                 "fact stated": q["fact"].lower() in r.text.lower(), "model wording": r.generated})
df = pd.DataFrame(rows)
print(df[["right source", "fact stated", "model wording"]].mean())
df.head()''',
    ],
    "recommendation": [
        "# Recommendation\n\nA ranker over user and item features (embeddings of product text, shares of "
        "categories and brands, price, co-visitation), evaluated offline on the last 20 % of events against "
        "popularity and random baselines.",
        SETUP,
        '''from ecomlm.ecommerce import Recommender, compare_methods, time_split
train, test = time_split(shop.events, 0.2)
methods = (("random", None), ("popularity", None), ("ranker", "gbdt")) if FAST else \\
          (("random", None), ("popularity", None), ("content", None), ("ranker", "logistic"), ("ranker", "gbdt"))
rows = []
for k in ((5, 10) if FAST else (5, 10, 20)):
    t = compare_methods(shop.products, train, test, k=k, methods=methods)
    rows.append(t.assign(k=k))
table = pd.concat(rows)
table''',
        '''pivot = table.reset_index().pivot(index="k", columns="method", values="recall")
pivot.plot.bar(figsize=(7, 3), rot=0, ylabel="recall@k", title="held-out events: recall@k"); plt.show()''',
        "## Recommendations with explanations",
        '''rec = Recommender().fit(shop.products, train)
user = train["user_id"].value_counts().index[0]
names = shop.products.set_index("product_id")["name"]
for i, (pid, s) in enumerate(rec.recommend(user, k=3)):
    print(f"{pid} {names[pid]:40s} {s:.3f}\\n   {rec.explain(user, pid, generate=(i == 0))}")''',
        "## An embedding map of the catalog (PCA in NumPy)",
        '''from ecomlm.ecommerce.recommend import product_text
E = ecomlm.load("all-minilm-l6-v2").embed([product_text(r) for _, r in shop.products.iterrows()])
X = E - E.mean(0)
_, _, vt = np.linalg.svd(X, full_matrices=False)
xy = X @ vt[:2].T
fig, ax = plt.subplots(figsize=(6, 5))
for cat, idx in shop.products.groupby("category").indices.items():
    ax.scatter(xy[idx, 0], xy[idx, 1], s=10, label=cat)
ax.legend(fontsize=7); ax.set_title("products, first two principal components"); plt.show()''',
    ],
    "fine_tuning": [
        "# Fine-tuning a support model\n\nThe sample shop ships 360 support dialogues in OpenAI's fine-tuning "
        "chat format. This notebook validates them and looks at their token lengths with the model's own "
        "tokenizer and chat template.\n\n**Status:** `Model.fine_tune` is being built on another branch and is "
        "not on main yet. The last cell runs fine-tuning once it exists and otherwise says so; this notebook "
        "shows no training results until then.",
        SETUP,
        '''from collections import Counter
errors = Counter()
for i, d in enumerate(shop.dialogues):
    msgs = d.get("messages")
    if not isinstance(msgs, list) or not msgs:
        errors["no messages"] += 1; continue
    roles = [m.get("role") for m in msgs]
    if any(r not in ("system", "user", "assistant") for r in roles): errors["bad role"] += 1
    if any(not isinstance(m.get("content"), str) or not m["content"].strip() for m in msgs): errors["empty content"] += 1
    if roles[-1] != "assistant": errors["does not end with the assistant"] += 1
    if "assistant" not in roles: errors["no assistant turn"] += 1
print(f"{len(shop.dialogues)} dialogues, problems: {dict(errors) or 'none'}")''',
        '''m = ecomlm.load("smollm2-135m-instruct")
dialogues = shop.dialogues[: (60 if FAST else None)]
lengths = np.array([len(m.apply_chat_template(d["messages"], add_generation_prompt=False)) for d in dialogues])
assistant_tokens = np.array([sum(len(m.tokenize(x["content"], add_special_tokens=False))
                                 for x in d["messages"] if x["role"] == "assistant") for d in dialogues])
print(f"tokens per dialogue: median {np.median(lengths):.0f}, max {lengths.max()}; "
      f"trained (assistant) tokens: {assistant_tokens.sum()} in {len(dialogues)} dialogues")
fig, ax = plt.subplots(1, 2, figsize=(9, 3))
ax[0].hist(lengths, bins=30); ax[0].set_xlabel("tokens per dialogue (chat template)")
ax[1].hist(assistant_tokens, bins=30, color="C1"); ax[1].set_xlabel("assistant tokens per dialogue")
plt.show()''',
        '''import json, tempfile
train_path = os.path.join(tempfile.mkdtemp(), "support_train.jsonl")
with open(train_path, "w", encoding="utf-8") as f:
    for d in shop.dialogues:
        f.write(json.dumps(d, ensure_ascii=False) + "\\n")
print("training file:", train_path)''',
        "## Fine-tune\n\n`Model.fine_tune` trains a Hugging Face checkpoint (config.json + safetensors; full or "
        "LoRA). The default chat model ships as a quantised GGUF file, which cannot be trained: set "
        "`ECOMLM_FT_MODEL` to a model directory (for example SmolLM2-135M-Instruct from your Hugging Face cache) "
        "to run this cell.",
        '''# FINE-TUNING CELL: LoRA on the support dialogues, then the loss curves
ft_dir = os.environ.get("ECOMLM_FT_MODEL")
if ft_dir:
    ft_model = ecomlm.load(ft_dir)
    # SmolLM2's tokenizer (from the GGUF model above) unless the checkpoint brings its own
    tok = None if os.path.isfile(os.path.join(ft_dir, "tokenizer.json")) else m.tokenizer
    hist = pd.DataFrame(ft_model.fine_tune(train_path, tokenizer=tok, epochs=1, lora_rank=8, batch_size=4, seq_len=512,
                                           max_steps=4 if FAST else None, eval_every=2 if FAST else 20))
    ax = hist.plot(x="step", y="loss", figsize=(6, 3), label="training loss")
    val = hist.dropna(subset=["val_loss"])
    if len(val):
        val.plot(x="step", y="val_loss", ax=ax, marker="o", label="validation loss")
    ax.set_ylabel("cross-entropy (nats/token)"); plt.show()
    print(f"{len(hist)} steps: training loss {hist.loss.iloc[0]:.3f} -> {hist.loss.iloc[-1]:.3f}")
else:
    print("ECOMLM_FT_MODEL is not set: no trainable checkpoint, so no fine-tuning run and no loss curve.")''',
    ],
}


def _is_markdown(cell: str) -> bool:
    return cell.startswith(("# ", "## ", "The check")) and not cell.startswith("# FINE-TUNING")


def main():
    os.makedirs(os.path.join(HERE, "notebooks"), exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[new_markdown_cell(c) if _is_markdown(c) else new_code_cell(c) for c in cells],
                          metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name.replace('_', '-')}-{i:02d}"      # stable ids: regenerating changes nothing
        nbformat.write(nb, os.path.join(HERE, "notebooks", f"{name}.ipynb"))
        print("wrote", f"notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()
