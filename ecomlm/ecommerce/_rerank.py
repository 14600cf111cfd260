"""Re-ranking knowledge-base hits by question likelihood.

A chat model reads an entry and is asked for a customer question that the
entry answers; the score of the entry for the customer's actual question is
the mean log-probability of that question's tokens (Sachan et al., 2022,
"Improving passage retrieval with zero-shot question generation"). An entry
that explains the question makes its words likely, whatever words it uses
itself, which is where a small sentence encoder is weakest.

Cost: one forward pass over entry + question (about 100-150 tokens) per
re-ranked entry; SmolLM2-135M does 4 in about 1.5 s on 2 cores.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import BadRequestError

__all__ = ["QuestionLikelihood"]

_SYSTEM = "You are a shop's help center."
_ASK = "Policy: {title}{text}\n\nWrite a customer question that this policy answers."


class QuestionLikelihood:
    """score(title, text, question) -> mean log p(question tokens | entry) under
    `model` (a registered name, a model directory, or a loaded decoder model)."""

    def __init__(self, model):
        if isinstance(model, str):
            import ecomlm

            model = ecomlm.load(model)
        if not all(hasattr(model, a) for a in ("logits", "tokenize", "apply_chat_template")) or getattr(
                model, "is_encoder", False):
            raise BadRequestError("reranker must be a chat model (a name, a directory or a loaded decoder model)",
                                  param="reranker")
        self.model = model
        self._cache: dict = {}

    def score(self, title: str, text: str, question: str) -> float:
        key = (title, text, question)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        m = self.model
        head = f"{title.strip().rstrip('.')}. " if title and title.strip() else ""
        ctx = m.apply_chat_template([{"role": "system", "content": _SYSTEM},
                                     {"role": "user", "content": _ASK.format(title=head, text=text.strip())}])
        q = m.tokenize(question.strip(), add_special_tokens=False)
        if not q:
            return 0.0
        ids = list(ctx) + list(q)
        if len(ids) > m.context_length:
            ids = ids[: m.context_length]
            q = ids[len(ctx):]
            if not q:
                return 0.0
        lg = m.logits(ids)[len(ctx) - 1: len(ids) - 1].astype(np.float64)      # the logits that predict q
        top = lg.max(axis=1, keepdims=True)
        lse = np.log(np.exp(lg - top).sum(axis=1)) + top[:, 0]
        s = float(np.mean(lg[np.arange(len(q)), q] - lse))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = s
        return s

    def adjust(self, records, hybrid: np.ndarray, question: str, k: int, weight: float) -> Optional[np.ndarray]:
        """The term to add to `hybrid`: weight * (score - best score) for the
        k best entries; every other entry gets the lowest of those (it can
        not climb over a re-ranked one by being left out). None if fewer than
        two entries are rankable."""
        finite = np.flatnonzero(np.isfinite(hybrid))
        if len(finite) < 2 or weight == 0:
            return None
        top = finite[np.argsort(-hybrid[finite], kind="stable")[:k]]
        s = np.array([self.score(records[i].get("title", ""), records[i]["text"], question) for i in top])
        adj_top = weight * (s - s.max())
        out = np.full(len(hybrid), adj_top.min())
        out[top] = adj_top
        return out
