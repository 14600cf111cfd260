"""KnowledgeBase: a shop's policies and FAQ, searchable by meaning.

    kb = KnowledgeBase.from_records([{"id": "returns", "title": "Returns", "text": "..."}])
    kb.search("can I send it back?", k=3)     # [Hit(id, score, title, text), ...] best first

Each entry is embedded once ("title. text", all-MiniLM-L6-v2 by default), and
so is each example question an FAQ entry lists in an optional "questions"
field. A query's dense score for an entry is
    (cos(query, entry) + question_weight * max cos(query, its questions)) / (1 + question_weight),
and `lexical_weight` mixes in BM25 (normalised by the best BM25 of the query):
    score = (1 - lexical_weight) * dense + lexical_weight * bm25 / max(bm25).

Two things bridge the customer's words and the shop's (ecomlm/ecommerce/_expand.py):
  - query expansion (`lexicon`, default: the shipped lexicon.json, a generic
    shop-support vocabulary): "Can I send back my smartwatch?" is embedded as
    "Can I send back my smartwatch? (electronics, return)", with only terms
    that occur in this knowledge base; `catalog=` adds a shop's own product
    types; `expansion_weight` mixes the plain and expanded query vectors;
  - category ranking (`category_weight`, off by default): when the query
    names a category (by name or product noun), entries whose title is
    about it rank above general entries, which rank above entries about
    another category; the best score never rises. At 0.05 it gained 2 dev
    questions, none on the tuning or test questions, and lost a follow-up
    ("warranty on boots" went to shoe returns), so it stays off.
`reranker=` (a chat model; off here, on in SupportAgent) re-ranks the
`rerank_k` best by question likelihood (ecomlm/ecommerce/_rerank.py).

On the sample shop's 117 held-out test paraphrases, top-1 accuracy is 82.9 %
with the entry text alone, 87.2 % with its example questions, 90.6 % with
query expansion (the default), and 94.0 % with SmolLM2 re-ranking
(SupportAgent's default). Weights were chosen on the dev split
and a separate 195-question tuning set (tools/kb_tune_questions.jsonl);
any BM25 weight lowered accuracy, so lexical_weight defaults to 0; raise it
for catalogs full of codes and names.

Optional, off by default: `kb.fine_tune_retriever(questions, dialogues)` fine-tunes
all-MiniLM-L6-v2 in the C engine with a classification head over the entry ids
(on the entries' texts, sentences and example questions, labelled questions a
shop has, and dialogue turns that contain an entry's example question), and adds
    retriever_weight * (p(entry | query) - max p)
to the score (the best score never rises, so hand-off thresholds keep their
meaning); `save=` keeps it, `retriever=path` loads it. On the sample shop it did
not beat the default on the dev questions (cross-fitted), so nothing uses it by
default; README and tools/eval_ecommerce.py `retriever` have the figures.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from ..errors import BadRequestError, NotFoundError
from . import _validate as V
from ._embed import DEFAULT_EMBEDDING_MODEL, make_embedder
from ._expand import QueryExpander, load_lexicon

__all__ = ["Hit", "KnowledgeBase", "BM25", "tokenize"]


@dataclass(frozen=True)
class Hit:
    """One retrieved entry. `score` is the hybrid score used for ranking;
    `dense` and `lexical` are its two parts (cosine, normalised BM25)."""

    id: str
    score: float
    title: str
    text: str
    dense: float = 0.0
    lexical: float = 0.0
    metadata: dict = field(default_factory=dict, compare=False, repr=False)


# ----------------------------------------------------------------- lexical

_STOP = set("""a an the and or but if of to in on at for with from by as is are was were be been being am do does did
doing have has had i me my we our you your it its this that these those there here what which who whom how when
where why can could would should will shall may might must not no so than too very just about into over under
again any some such only own same then once up down out off all both each few more most other also get got im
i'm it's don't please thanks thank hi hello hey""".split())
_WORD = re.compile(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*|[\u3400-\u9fff]")


def _stem(w: str) -> str:
    """A light suffix stripper: returns/returned/returning -> return."""
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("sses", "xes", "zes", "ches", "shes")):
        return w[:-2]                                      # boxes -> box, dresses -> dress
    for suf in ("ing", "ed"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]                                      # shoes -> shoe, returns -> return
    return w


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-word-free, lightly stemmed terms; CJK characters as
    unigrams plus bigrams (Chinese has no spaces)."""
    toks = _WORD.findall(text.lower())
    out, prev_cjk = [], None
    for t in toks:
        if len(t) == 1 and "\u3400" <= t <= "\u9fff":
            out.append(t)
            if prev_cjk is not None:
                out.append(prev_cjk + t)
            prev_cjk = t
            continue
        prev_cjk = None
        if t not in _STOP:
            out.append(_stem(t))
    return out


class BM25:
    """Okapi BM25 over pre-tokenised documents (k1 = 1.2, b = 0.75)."""

    def __init__(self, docs: list[list[str]], k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(d) for d in docs]
        self.len = np.array([len(d) for d in docs], dtype=np.float64)
        self.avgdl = float(self.len.mean()) if len(docs) else 0.0
        df = Counter(t for d in self.tf for t in d)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def scores(self, query: list[str]) -> np.ndarray:
        out = np.zeros(len(self.tf))
        if not self.tf:
            return out
        norm = self.k1 * (1 - self.b + self.b * self.len / max(self.avgdl, 1e-9))
        for t in set(query):
            idf = self.idf.get(t)
            if idf is None:
                continue
            f = np.array([d.get(t, 0) for d in self.tf], dtype=np.float64)
            out += idf * f * (self.k1 + 1) / (f + norm)
        return out


class KnowledgeBase:
    """Entries with an id, a title and a text (plus any metadata), searchable
    with `search`. Ids must be unique; they are what an agent cites."""

    def __init__(self, records: Iterable[dict], *, model: str = DEFAULT_EMBEDDING_MODEL, embedder=None,
                 lexical_weight: float = 0.0, question_weight: float = 0.5, retriever=None,
                 retriever_weight: float = 0.05, lexicon=None, catalog=None, expansion_weight: float = 1.0,
                 category_weight: float = 0.0, reranker=None, rerank_k: int = 4, rerank_weight: float = 0.2):
        if isinstance(records, (str, bytes)) or not isinstance(records, Iterable):
            raise BadRequestError("records must be a list of dicts with id, title and text", param="records")
        records = list(records)
        if not records:
            raise BadRequestError("the knowledge base is empty: give at least one record", param="records")
        if not isinstance(lexical_weight, (int, float)) or not 0 <= lexical_weight <= 1:
            raise BadRequestError("lexical_weight must be a number in [0, 1]", param="lexical_weight")
        seen = set()
        self.records = []
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise BadRequestError(f"records[{i}] must be a dict, got {type(r).__name__}", param=f"records[{i}]")
            for f in ("id", "text"):
                if f not in r or r[f] is None or (isinstance(r[f], float) and math.isnan(r[f])):
                    raise BadRequestError(f"records[{i}] has no '{f}'", param=f"records[{i}].{f}")
            rid = str(r["id"]).strip()
            if not rid:
                raise BadRequestError(f"records[{i}].id is empty", param=f"records[{i}].id")
            if rid in seen:
                raise BadRequestError(f"duplicate id {rid!r} in records[{i}]", param=f"records[{i}].id")
            if not isinstance(r["text"], str) or not r["text"].strip():
                raise BadRequestError(f"records[{i}].text must be a non-empty string", param=f"records[{i}].text")
            title = r.get("title")
            title = "" if title is None or (isinstance(title, float) and math.isnan(title)) else str(title)
            q = r.get("questions")
            if q is not None and not isinstance(q, str) and not (
                    isinstance(q, (list, tuple)) and all(isinstance(x, str) for x in q)):
                raise BadRequestError(f"records[{i}].questions must be a list of strings (or 'q1|q2')",
                                      param=f"records[{i}].questions")
            seen.add(rid)
            self.records.append(dict(r, id=rid, title=title))
        if not isinstance(question_weight, (int, float)) or question_weight < 0:
            raise BadRequestError("question_weight must be a number >= 0", param="question_weight")
        self.lexical_weight = float(lexical_weight)
        self.question_weight = float(question_weight)
        self.retriever_weight = V.weight(retriever_weight, "retriever_weight")
        self.expansion_weight = V.weight(expansion_weight, "expansion_weight", maximum=1)
        self.category_weight = V.weight(category_weight, "category_weight")
        self.rerank_k = V.positive_int(rerank_k, "rerank_k")
        self.rerank_weight = V.weight(rerank_weight, "rerank_weight")
        self.reranker = None
        if reranker is not None:
            from ._rerank import QuestionLikelihood
            self.reranker = reranker if isinstance(reranker, QuestionLikelihood) else QuestionLikelihood(reranker)
        self.embed = make_embedder(model, embedder)
        self._index = {r["id"]: i for i, r in enumerate(self.records)}
        docs = [self._doc_text(r) for r in self.records]
        questions = [self._questions(r) for r in self.records]
        self.bm25 = BM25([tokenize(d + " " + " ".join(q)) for d, q in zip(docs, questions)])
        self.vectors = self.embed(docs)                       # (N, D), L2-normalised
        # example questions of FAQ entries: one vector each, owner entry in q_owner
        flat = [q for qs in questions for q in qs]
        self.q_owner = np.array([i for i, qs in enumerate(questions) for _ in qs], dtype=np.int64)
        self.q_vectors = self.embed(flat) if flat else np.zeros((0, self.vectors.shape[1]), np.float32)
        self.retriever = None
        if retriever is not None:
            self.set_retriever(retriever)
        lex = load_lexicon(lexicon)
        self.expander = None
        if lex is not None or catalog is not None:
            self.expander = QueryExpander(
                [d + " " + " ".join(q) for d, q in zip(docs, questions)], lex or {}, catalog)
        # the categories an entry is about, from its title ("Returning shoes" -> shoes); none: a general entry
        self.entry_categories = [self.expander.mentions(r["title"]) if self.expander else set()
                                 for r in self.records]

    def _category_term(self, query: str) -> Optional[np.ndarray]:
        """For a query that mentions a category: 0 for entries about it, -w/2
        for general entries, -w for entries about other categories; shifted
        so the largest is 0 (the best score never rises). None otherwise."""
        if self.expander is None or self.category_weight == 0:
            return None
        cq = self.expander.mentions(query)
        if not cq:
            return None
        w = self.category_weight
        adj = np.array([-w / 2 if not ce else (0.0 if ce & cq else -w) for ce in self.entry_categories])
        return adj - adj.max()

    def expand(self, query: str) -> str:
        """The query as it is embedded: with the knowledge base's own terms for
        what it mentions appended (see ecomlm/ecommerce/_expand.py), or as it is."""
        return query if self.expander is None else self.expander.expand(query)

    def query_vectors(self, queries: list) -> np.ndarray:
        """Embeddings of the queries as searched: the expanded query's vector,
        mixed with the plain one by expansion_weight (then re-normalised)."""
        if self.expander is None or self.expansion_weight == 0:
            return self.embed(queries)
        expanded = [self.expand(q) for q in queries]
        if expanded == list(queries):
            return self.embed(queries)
        v = self.embed(expanded)
        if self.expansion_weight < 1:                      # at 1 the plain vectors are not needed
            v = (1 - self.expansion_weight) * self.embed(queries) + self.expansion_weight * v
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    @staticmethod
    def _doc_text(r: dict) -> str:
        parts = [r["title"], r["text"]]
        return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip()) + "."

    @staticmethod
    def _questions(r: dict) -> list[str]:
        q = r.get("questions")
        if isinstance(q, str):
            q = [x for x in q.split("|")]               # CSV cells: "q1|q2"
        if not isinstance(q, (list, tuple)):
            return []
        return [str(x).strip() for x in q if str(x).strip()]

    # -------------------------------------------------------------- loaders
    @classmethod
    def from_records(cls, records: Iterable[dict], **kwargs) -> "KnowledgeBase":
        return cls(records, **kwargs)

    @classmethod
    def from_csv(cls, path, *, id_column: str = "id", title_column: str = "title", text_column: str = "text",
                 **kwargs) -> "KnowledgeBase":
        """A CSV with a header row; other columns become metadata."""
        path = _existing(path)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            for c in (id_column, text_column):
                if c not in cols:
                    raise BadRequestError(f"{path}: no column {c!r} (columns: {', '.join(cols) or 'none'})",
                                          param=c)
            rows = []
            for row in reader:
                r = {k: v for k, v in row.items() if k not in (id_column, title_column, text_column)}
                r.update(id=row[id_column], title=row.get(title_column) or "", text=row[text_column])
                rows.append(r)
        return cls(rows, **kwargs)

    @classmethod
    def from_json(cls, path, **kwargs) -> "KnowledgeBase":
        """A JSON array of records, a JSON object {"entries": [...]}, or JSONL."""
        path = _existing(path)
        with open(path, encoding="utf-8") as f:
            raw = f.read()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            try:
                data = [json.loads(line) for line in raw.splitlines() if line.strip()]
            except json.JSONDecodeError as e:
                raise BadRequestError(f"{path}: not JSON or JSON Lines ({e})", param="path") from None
        if isinstance(data, dict):
            data = data.get("entries", data.get("records", data.get("data")))
        if not isinstance(data, list):
            raise BadRequestError(f"{path}: expected a list of records", param="path")
        return cls(data, **kwargs)

    @classmethod
    def from_markdown(cls, path_or_text, *, level: int = 2, **kwargs) -> "KnowledgeBase":
        """Each heading of `level` (## by default) starts an entry; its body
        runs to the next heading of that level or above. `## Title {#id}` sets
        the id; otherwise the id is the title's slug."""
        if not isinstance(path_or_text, (str, os.PathLike)):
            raise BadRequestError("from_markdown takes a path or Markdown text", param="path")
        s = os.fspath(path_or_text)
        if "\n" not in s and os.path.isfile(s):
            with open(s, encoding="utf-8") as f:
                s = f.read()
        elif "\n" not in s and s.endswith((".md", ".markdown")):
            raise NotFoundError(f"file not found: {s}", param="path")
        head = re.compile(r"^(#{1,%d})\s+(.*?)\s*(?:\{#([^}]+)\})?\s*#*\s*$" % level)
        records, cur = [], None
        for line in s.splitlines():
            m = head.match(line)
            if m:
                if cur:
                    records.append(cur)
                cur = None
                if len(m.group(1)) == level:
                    title = m.group(2).strip()
                    cur = {"id": (m.group(3) or _slug(title)).strip(), "title": title, "lines": []}
                continue
            if cur is not None:
                cur["lines"].append(line)
        if cur:
            records.append(cur)
        out = []
        for r in records:
            text = "\n".join(r.pop("lines")).strip()
            if text:
                out.append(dict(r, text=text))
        if not out:
            raise BadRequestError(f"no '{'#' * level} ' sections with text found in the Markdown", param="path")
        return cls(out, **kwargs)

    # --------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __contains__(self, entry_id) -> bool:
        return entry_id in self._index

    @property
    def ids(self) -> list[str]:
        return [r["id"] for r in self.records]

    def get(self, entry_id: str) -> dict:
        if entry_id not in self._index:
            raise NotFoundError(f"no entry with id {entry_id!r}", param="id")
        return self.records[self._index[entry_id]]

    def __repr__(self) -> str:
        return f"<KnowledgeBase {len(self)} entries>"

    # --------------------------------------------------------------- search
    def scores(self, query: str, lang: Optional[str] = None, _vec: Optional[np.ndarray] = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hybrid, dense, lexical) score of every entry for `query`."""
        V.text(query, "query")
        q = self.query_vectors([query])[0] if _vec is None else _vec
        dense = self.vectors @ q
        if len(self.q_owner) and self.question_weight > 0:
            best_q = dense.copy()                             # entries without questions: their text
            has_q = np.zeros(len(dense), bool)
            has_q[self.q_owner] = True
            best_q[has_q] = -np.inf
            np.maximum.at(best_q, self.q_owner, self.q_vectors @ q)
            dense = (dense + self.question_weight * best_q) / (1 + self.question_weight)
        bm = self.bm25.scores(tokenize(self.expand(query)))
        lex = bm / bm.max() if bm.max() > 0 else bm
        hybrid = (1 - self.lexical_weight) * dense + self.lexical_weight * lex
        if self.retriever is not None and self.retriever_weight > 0:
            hybrid = hybrid + self.retriever_weight * self._learned(query)
        cat = self._category_term(query)
        if cat is not None:
            hybrid = hybrid + cat
        if lang is not None:
            keep = np.array([r.get("lang", lang) == lang for r in self.records])
            hybrid = np.where(keep, hybrid, -np.inf)
        if self.reranker is not None:
            adj = self.reranker.adjust(self.records, hybrid, query, self.rerank_k, self.rerank_weight)
            if adj is not None:
                hybrid = hybrid + adj
        return hybrid, dense, lex

    def _learned(self, query: str) -> np.ndarray:
        """The fine-tuned retriever's term: p(entry | query) - max p, so it
        re-ranks without ever raising the best score (the hand-off threshold
        keeps its meaning)."""
        p = self.retriever.predict_proba([query])[0]
        return p - p.max()

    # ----------------------------------------------------- learned retriever
    def set_retriever(self, retriever) -> "KnowledgeBase":
        """Use a classifier over this KB's entry ids (a TextClassifier or the
        directory fine_tune_retriever saved) in the ranking; None removes it."""
        if retriever is None:
            self.retriever = None
            return self
        from ..engine.classify import TextClassifier
        if isinstance(retriever, (str, os.PathLike)):
            if not os.path.isdir(os.fspath(retriever)):
                raise NotFoundError(f"no saved retriever at {os.fspath(retriever)}", param="retriever")
            retriever = TextClassifier.load(os.fspath(retriever))
        if not isinstance(retriever, TextClassifier):
            raise BadRequestError("retriever must be a TextClassifier or the path of a saved one", param="retriever")
        if list(retriever.labels) != self.ids:
            raise BadRequestError("the retriever's labels are not this knowledge base's entry ids (in order): "
                                  "fine-tune it on this knowledge base", param="retriever")
        self.retriever = retriever
        return self

    def retriever_examples(self, questions=None, dialogues=None) -> tuple[list[str], list[str]]:
        """(texts, entry ids) to train a retriever on: each entry's title + text,
        its sentences and its example questions; `questions`, pairs
        (question, entry id) or dicts with "question" and "kb_id"; and from
        `dialogues` (OpenAI chat format, {"messages": [...]}) each user turn
        that contains exactly one entry's example question, with the
        assistant's reply to it, labelled with that entry."""
        texts, labels, seen = [], [], set()

        def add(t, rid):
            t = t.strip() if isinstance(t, str) else ""
            if t and (t, rid) not in seen:
                seen.add((t, rid))
                texts.append(t)
                labels.append(rid)
        for r in self.records:
            add(self._doc_text(r), r["id"])
            for sent in re.split(r"(?<=[.!?])\s+", r["text"]):
                if len(sent) > 20:
                    add(sent, r["id"])
            for q in self._questions(r):
                add(q, r["id"])
        for i, item in enumerate(questions or []):
            if isinstance(item, dict):
                q, rid = item.get("question"), item.get("kb_id", item.get("id"))
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                q, rid = item
            else:
                raise BadRequestError(f"questions[{i}] must be (question, entry id) or a dict with question and kb_id",
                                      param=f"questions[{i}]")
            if not isinstance(q, str) or not q.strip():
                raise BadRequestError(f"questions[{i}] has no question text", param=f"questions[{i}]")
            if rid not in self._index:
                raise BadRequestError(f"questions[{i}] names no entry of this knowledge base: {rid!r}",
                                      param=f"questions[{i}]")
            add(q, rid)
        if dialogues:
            norm = lambda x: " ".join(re.findall(r"[a-z0-9]+", x.lower()))  # noqa: E731
            asks = {norm(q): r["id"] for r in self.records for q in self._questions(r) if norm(q)}
            for i, d in enumerate(dialogues):
                msgs = d.get("messages") if isinstance(d, dict) else d
                if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
                    raise BadRequestError(f"dialogues[{i}] must be {{'messages': [...]}}", param=f"dialogues[{i}]")
                for j, m in enumerate(msgs):
                    if m.get("role") != "user" or not isinstance(m.get("content"), str):
                        continue
                    u = " " + norm(m["content"]) + " "
                    hit = {rid for q, rid in asks.items() if " " + q + " " in u}
                    if len(hit) == 1:
                        rid = hit.pop()
                        add(m["content"], rid)
                        if j + 1 < len(msgs) and msgs[j + 1].get("role") == "assistant":
                            add(msgs[j + 1].get("content"), rid)
        return texts, labels

    def fine_tune_retriever(self, questions=None, dialogues=None, *, model: str = DEFAULT_EMBEDDING_MODEL,
                            epochs: int = 3, lr: float = 3e-4, batch_size: int = 16, max_length: int = 64,
                            lora_rank: int = 0, seed: int = 0, save=None, progress: bool = True, **kwargs):
        """Fine-tune an encoder (all-MiniLM-L6-v2 by default, in the C engine)
        with a classification head over this KB's entry ids on
        retriever_examples(questions, dialogues), and use it in the ranking:
        score += retriever_weight * (p(entry | query) - max p). `save`: a
        directory to keep it in (load it back with retriever=that path).
        Other keyword arguments go to ecomlm.engine.classify.fine_tune_classifier.
        Returns the training history."""
        from ..engine.classify import fine_tune_classifier
        if len(self.records) < 2:
            raise BadRequestError("a retriever needs at least 2 entries", param="records")
        texts, labels = self.retriever_examples(questions, dialogues)
        clf, hist = fine_tune_classifier(model, texts, labels, label_names=self.ids, epochs=epochs, lr=lr,
                                         batch_size=batch_size, max_length=max_length, lora_rank=lora_rank,
                                         seed=seed, progress=progress, **kwargs)
        if save is not None:
            clf.save(os.fspath(save))
        self.set_retriever(clf)
        return hist

    def search(self, query: str, k: int = 3, *, lang: Optional[str] = None,
               min_score: Optional[float] = None) -> list[Hit]:
        """The k best entries for `query`, best first. `lang` keeps entries
        whose "lang" field matches (entries without one always match);
        `min_score` drops weaker hits."""
        return self._search(query, k, lang, min_score, None)

    def search_many(self, queries, k: int = 3, *, lang: Optional[str] = None,
                    min_score: Optional[float] = None) -> list[list[Hit]]:
        """search() for many queries, embedded in one batch."""
        queries = V.texts(queries, "queries")
        for i, q in enumerate(queries):
            V.text(q, f"queries[{i}]")
        vecs = self.query_vectors(queries)
        return [self._search(q, k, lang, min_score, v) for q, v in zip(queries, vecs)]

    def _search(self, query, k, lang, min_score, vec) -> list[Hit]:
        V.positive_int(k, "k")
        if min_score is not None:
            V.number(min_score, "min_score")
        if lang is not None and not isinstance(lang, str):
            raise BadRequestError("lang must be a language code such as 'en'", param="lang")
        hybrid, dense, lex = self.scores(query, lang, vec)
        order = np.argsort(-hybrid, kind="stable")[:k]
        hits = []
        for i in order:
            if not np.isfinite(hybrid[i]) or (min_score is not None and hybrid[i] < min_score):
                continue
            r = self.records[i]
            meta = {key: v for key, v in r.items() if key not in ("id", "title", "text")}
            hits.append(Hit(r["id"], float(hybrid[i]), r["title"], r["text"], float(dense[i]), float(lex[i]), meta))
        return hits


def _existing(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise BadRequestError("path must be a file path", param="path")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise NotFoundError(f"file not found: {path}", param="path")
    return path


def _slug(title: str) -> str:
    s = re.sub(r"[^\w]+", "-", title.lower()).strip("-")
    return s or "entry"
