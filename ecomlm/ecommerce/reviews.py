"""ReviewAnalyzer: sentiment and aspects (size, quality, shipping, price) of
product reviews, from small heads trained on sentence embeddings.

    ra = ReviewAnalyzer().fit(reviews_df)     # text + sentiment (or rating) [+ aspects]
    ra.analyze(["Too small, but fast shipping"])
    # [ReviewAnalysis(sentiment='neutral', score=..., aspects={'size': 'negative', 'shipping': 'positive'})]
    ra.summarize("P1042")                     # counts, aspect tallies, pros and cons quotes

Sentiment: a softmax regression on the review's embedding plus the summed
aspect-polarity probabilities of its clauses. Aspects: a review is split into
clauses ("," ";" "." "but" "although" ... and Chinese punctuation); a softmax
regression on each clause's embedding picks one of none / size+ / size- /
quality+ / ... / price-. Training clauses are labelled from the aspect spans
(`aspects=[{"aspect", "polarity", "span"}]`); reviews whose aspects have no
spans train per-aspect heads on the whole review instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..errors import BadRequestError, NotFoundError
from . import _validate as V
from ._embed import DEFAULT_EMBEDDING_MODEL, make_embedder
from ._learn import SoftmaxRegression

__all__ = ["ReviewAnalyzer", "ReviewAnalysis", "ReviewSummary", "split_clauses", "ASPECTS", "SENTIMENTS"]

ASPECTS = ("size", "quality", "shipping", "price")
SENTIMENTS = ("negative", "neutral", "positive")
POLARITIES = ("negative", "positive")
CLAUSE_LABELS = ("none",) + tuple(f"{a}:{p}" for a in ASPECTS for p in POLARITIES)
_SPLIT = re.compile(r"(?:[,;]?\s+(?:but|although|though|however|and|yet|while)\s+|[.!?;:\n]+\s*|,\s*|\s+-\s+"
                    r"|[。！？；，、]+|但是|不过|可是)", re.IGNORECASE)
N_HASH = 1024


def char_ngrams(texts, n_features: int = N_HASH) -> np.ndarray:
    """Hashed character 2- and 3-grams, L2-normalised (N, n_features): a
    language-agnostic lexical view beside the (English) sentence embedding."""
    import zlib

    X = np.zeros((len(texts), n_features), np.float32)
    for r, t in enumerate(texts):
        t = f" {t.lower()} "
        for n in (2, 3):
            for j in range(len(t) - n + 1):
                X[r, zlib.crc32(t[j:j + n].encode()) % n_features] += 1.0
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    return X


def split_clauses(text: str) -> list[str]:
    """Clauses of a review: split at punctuation and contrastive conjunctions."""
    parts = [p.strip(" '\"") for p in _SPLIT.split(text)]
    return [p for p in parts if len(p) > 1] or [text.strip()]


@dataclass
class ReviewAnalysis:
    text: str
    sentiment: str                  # negative / neutral / positive
    score: float                    # P(positive) - P(negative), in [-1, 1]
    confidence: float               # probability of the predicted sentiment
    aspects: dict                   # aspect -> "positive" / "negative", only aspects mentioned
    aspect_scores: dict = field(default_factory=dict)   # aspect -> probability it is mentioned
    spans: dict = field(default_factory=dict)           # aspect -> the clause that mentions it


@dataclass
class ReviewSummary:
    product_id: Optional[str]
    n_reviews: int
    average_rating: Optional[float]
    sentiment: dict                 # label -> count
    aspects: dict                   # aspect -> {"positive": n, "negative": n}
    pros: list                      # short quotes praising an aspect
    cons: list                      # short quotes criticising one
    text: str                       # a readable paragraph

    def __str__(self) -> str:
        return self.text


class ReviewAnalyzer:
    def __init__(self, *, model: str = DEFAULT_EMBEDDING_MODEL, embedder=None, l2: float = 1e-3,
                 threshold: float = 0.5):
        self.embed = make_embedder(model, embedder)
        self.l2 = l2
        if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise BadRequestError("threshold must be a probability in (0, 1)", param="threshold")
        self.threshold = float(threshold)
        self.sentiment_head = None
        self.reviews = None

    # ------------------------------------------------------------------ fit
    def fit(self, reviews) -> "ReviewAnalyzer":
        """reviews: a DataFrame (or list of dicts) with `text` and `sentiment`
        (negative/neutral/positive) or `rating` (1-5: 1-2 negative, 3
        neutral, 4-5 positive); optional `aspects` (list of {aspect,
        polarity[, span]}) and `product_id` (for summarize)."""
        df = V.dataframe(reviews, "reviews", ("text",))
        if "sentiment" not in df.columns and "rating" not in df.columns:
            raise BadRequestError("reviews needs a 'sentiment' or a 'rating' column to learn from",
                                  param="reviews.sentiment")
        texts = V.texts(df["text"].tolist(), "reviews.text")
        y = self._sentiment_labels(df)
        aspects = df["aspects"].tolist() if "aspects" in df.columns else [None] * len(df)
        aspects = [self._check_aspects(a, i) for i, a in enumerate(aspects)]

        # clause head: clauses labelled by the spans they overlap
        c_text, c_label = [], []
        review_level = []
        for t, asp in zip(texts, aspects):
            if asp is None:
                continue
            if asp and not all(a.get("span") for a in asp):
                review_level.append((t, asp))
                continue
            for c in split_clauses(t):
                lab = 0
                lc = c.lower()
                for a in asp:
                    s = str(a["span"]).lower()
                    if s in lc or (len(lc) > 3 and lc in s):
                        lab = CLAUSE_LABELS.index(f"{a['aspect']}:{a['polarity']}")
                        break
                c_text.append(c)
                c_label.append(lab)
        self.clause_head = None
        if c_text and len(set(c_label)) > 1:
            Xc = self._clause_features(c_text)
            self.clause_head = SoftmaxRegression(l2=self.l2, iters=600, lr=1.0, standardize=False).fit(
                Xc, np.array(c_label), n_classes=len(CLAUSE_LABELS))
        self.review_heads = {}
        if review_level:
            Xr = self.embed([t for t, _ in review_level])
            for a in ASPECTS:
                lab = [0] * len(review_level)
                for j, (_, asp) in enumerate(review_level):
                    for x in asp:
                        if x["aspect"] == a:
                            lab[j] = 1 + POLARITIES.index(x["polarity"])
                if len(set(lab)) > 1:
                    self.review_heads[a] = SoftmaxRegression(l2=self.l2, iters=600, lr=1.0, standardize=False).fit(
                        Xr, np.array(lab), n_classes=3)
        X = self._sentiment_features(texts)
        self.sentiment_head = SoftmaxRegression(l2=self.l2, iters=800, lr=1.0, standardize=False).fit(
            X, y, n_classes=3)
        self.reviews = df
        return self

    @staticmethod
    def _sentiment_labels(df) -> np.ndarray:
        if "sentiment" in df.columns:
            bad = sorted(set(df["sentiment"].astype(str)) - set(SENTIMENTS))
            if bad:
                raise BadRequestError(f"reviews.sentiment has value(s) {bad[:3]}; expected {list(SENTIMENTS)}",
                                      param="reviews.sentiment")
            return np.array([SENTIMENTS.index(s) for s in df["sentiment"]])
        r = df["rating"]
        if not all(isinstance(x, (int, float, np.integer, np.floating)) and 1 <= x <= 5 for x in r):
            raise BadRequestError("reviews.rating must be numbers from 1 to 5", param="reviews.rating")
        return np.array([0 if x < 2.5 else (1 if x < 3.5 else 2) for x in r])

    @staticmethod
    def _check_aspects(a, i):
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return None
        if not isinstance(a, (list, tuple)):
            raise BadRequestError(f"reviews.aspects[{i}] must be a list of {{aspect, polarity, span}}",
                                  param="reviews.aspects")
        for x in a:
            if not isinstance(x, dict) or x.get("aspect") not in ASPECTS or x.get("polarity") not in POLARITIES:
                raise BadRequestError(f"reviews.aspects[{i}] has an invalid item {x!r}: aspect must be one of "
                                      f"{list(ASPECTS)}, polarity one of {list(POLARITIES)}", param="reviews.aspects")
        return list(a)

    # -------------------------------------------------------------- predict
    def _clauses(self, texts):
        clauses = [split_clauses(t) for t in texts]
        flat = [c for cs in clauses for c in cs]
        owner = np.array([i for i, cs in enumerate(clauses) for _ in cs])
        P = self.clause_head.predict_proba(self._clause_features(flat)) if self.clause_head else None
        return clauses, flat, owner, P

    def _clause_features(self, texts):
        return np.concatenate([self.embed(texts), char_ngrams(texts)], axis=1)

    def _sentiment_features(self, texts, clause_info=None):
        X = np.concatenate([self.embed(texts), char_ngrams(texts)], axis=1)
        extra = np.zeros((len(texts), 2))
        if self.clause_head is not None:
            _, _, owner, P = clause_info or self._clauses(texts)
            pos = P[:, [CLAUSE_LABELS.index(f"{a}:positive") for a in ASPECTS]].sum(axis=1)
            neg = P[:, [CLAUSE_LABELS.index(f"{a}:negative") for a in ASPECTS]].sum(axis=1)
            np.add.at(extra, (owner, 0), pos)
            np.add.at(extra, (owner, 1), neg)
        return np.concatenate([X, extra * 0.5], axis=1)

    def _need_fit(self):
        if self.sentiment_head is None:
            raise BadRequestError("call fit(reviews) first", param="fit")

    def analyze(self, texts) -> list[ReviewAnalysis]:
        """Sentiment and aspects of each text (a string or a list of strings)."""
        self._need_fit()
        texts = V.texts(texts, "texts")
        for i, t in enumerate(texts):
            if not t.strip():
                raise BadRequestError(f"texts[{i}] is empty", param="texts")
        info = self._clauses(texts) if self.clause_head is not None else None
        S = self.sentiment_head.predict_proba(self._sentiment_features(texts, info))
        out = []
        for n, t in enumerate(texts):
            aspects, scores, spans = {}, {}, {}
            if info is not None:
                clauses, flat, owner, P = info
                rows = np.flatnonzero(owner == n)
                for a in ASPECTS:
                    cols = [CLAUSE_LABELS.index(f"{a}:{p}") for p in POLARITIES]
                    mass = P[np.ix_(rows, cols)]                       # (clauses, 2)
                    tot = mass.sum(axis=1)
                    j = int(np.argmax(tot))
                    scores[a] = float(tot[j])
                    if tot[j] >= self.threshold:
                        aspects[a] = POLARITIES[int(np.argmax(mass[j]))]
                        spans[a] = flat[rows[j]]
            for a, head in self.review_heads.items():
                if a in aspects:
                    continue
                p = head.predict_proba(self.embed([t]))[0]
                scores[a] = max(scores.get(a, 0.0), float(1 - p[0]))
                if 1 - p[0] >= self.threshold:
                    aspects[a] = POLARITIES[int(np.argmax(p[1:]))]
            k = int(np.argmax(S[n]))
            out.append(ReviewAnalysis(t, SENTIMENTS[k], float(S[n, 2] - S[n, 0]), float(S[n, k]), aspects, scores, spans))
        return out

    # ------------------------------------------------------------- evaluate
    def evaluate(self, reviews) -> dict:
        """Accuracy on labelled reviews: sentiment accuracy, aspect detection
        precision/recall/F1 (micro, over the four aspects), polarity accuracy
        on the aspects found, and the share of reviews whose aspects are all right."""
        self._need_fit()
        df = V.dataframe(reviews, "reviews", ("text",))
        y = self._sentiment_labels(df)
        res = self.analyze(df["text"].tolist())
        acc = float(np.mean([SENTIMENTS.index(r.sentiment) == t for r, t in zip(res, y)]))
        out = {"sentiment_accuracy": acc, "n": len(df)}
        if "aspects" in df.columns:
            tp = fp = fn = pol_ok = exact = 0
            for r, asp in zip(res, df["aspects"]):
                gold = {a["aspect"]: a["polarity"] for a in (asp or [])}
                tp += len(gold.keys() & r.aspects.keys())
                fp += len(r.aspects.keys() - gold.keys())
                fn += len(gold.keys() - r.aspects.keys())
                pol_ok += sum(gold[a] == r.aspects[a] for a in gold.keys() & r.aspects.keys())
                exact += gold == r.aspects
            p = tp / max(tp + fp, 1)
            rc = tp / max(tp + fn, 1)
            out.update(aspect_precision=p, aspect_recall=rc, aspect_f1=2 * p * rc / max(p + rc, 1e-12),
                       aspect_polarity_accuracy=pol_ok / max(tp, 1), aspect_exact_match=exact / len(df))
        return out

    # ------------------------------------------------------------ summarize
    def summarize(self, product_id_or_reviews, *, max_quotes: int = 2) -> ReviewSummary:
        """A short structured summary of a product's reviews: pass a product_id
        (reviews from the fitted data), a DataFrame with `text` (and
        optionally rating), or a list of review texts."""
        self._need_fit()
        import pandas as pd

        V.integer(max_quotes, "max_quotes")
        pid = None
        arg = product_id_or_reviews
        if isinstance(arg, str):
            pid = arg
            if self.reviews is None or "product_id" not in self.reviews.columns:
                raise BadRequestError("summarize(product_id) needs reviews with a product_id column in fit()",
                                      param="product_id")
            df = self.reviews[self.reviews["product_id"].astype(str) == pid]
            if df.empty:
                raise NotFoundError(f"no reviews for product {pid!r}", param="product_id")
        elif isinstance(arg, (list, tuple)):
            df = pd.DataFrame({"text": V.texts(list(arg), "reviews")})
        else:
            df = V.dataframe(arg, "reviews", ("text",))
            if "product_id" in df.columns and df["product_id"].nunique() == 1:
                pid = str(df["product_id"].iloc[0])
        res = self.analyze(df["text"].tolist())
        counts = Counter(r.sentiment for r in res)
        tallies = {a: {"positive": 0, "negative": 0} for a in ASPECTS}
        quotes = {"positive": [], "negative": []}
        for r in res:
            for a, pol in r.aspects.items():
                tallies[a][pol] += 1
                quotes[pol].append((r.aspect_scores.get(a, 0.0), a, r.spans.get(a, r.text)))
        rating = None
        if "rating" in df.columns:
            vals = pd.to_numeric(df["rating"], errors="coerce").dropna()
            rating = float(vals.mean()) if len(vals) else None
        pros = _best_quotes(quotes["positive"], max_quotes)
        cons = _best_quotes(quotes["negative"], max_quotes)
        n = len(res)
        head = f"{n} review{'s' if n != 1 else ''}"
        if rating is not None:
            head += f", average {rating:.1f}/5"
        head += f": {100 * counts['positive'] / n:.0f}% positive, {100 * counts['negative'] / n:.0f}% negative."
        praised = sorted((a for a in ASPECTS if tallies[a]["positive"] > tallies[a]["negative"]),
                         key=lambda a: -tallies[a]["positive"])
        criticised = sorted((a for a in ASPECTS if tallies[a]["negative"] >= tallies[a]["positive"] and tallies[a]["negative"]),
                            key=lambda a: -tallies[a]["negative"])
        parts = [head]
        if praised:
            parts.append("Praised: " + ", ".join(f"{a} ({tallies[a]['positive']})" for a in praised) + ".")
        if criticised:
            parts.append("Criticised: " + ", ".join(f"{a} ({tallies[a]['negative']})" for a in criticised) + ".")
        if pros:
            parts.append("Pros: " + "; ".join(f"\u201c{q}\u201d" for q in pros) + ".")
        if cons:
            parts.append("Cons: " + "; ".join(f"\u201c{q}\u201d" for q in cons) + ".")
        return ReviewSummary(pid, n, rating, {s: counts.get(s, 0) for s in SENTIMENTS}, tallies, pros, cons,
                             " ".join(parts))


def _best_quotes(items, k):
    """The k most confident quotes, one per aspect first, no duplicates."""
    out, aspects = [], set()
    for score, a, q in sorted(items, key=lambda x: -x[0]):
        if a in aspects or q.lower() in (x.lower() for x in out):
            continue
        out.append(q)
        aspects.add(a)
        if len(out) == k:
            break
    return out
