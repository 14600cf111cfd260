"""SupportAgent: answers customers from a KnowledgeBase, cites the entries it
used, checks orders through a lookup the shop supplies, and hands off to a
human with a reason.

    agent = SupportAgent(kb, order_lookup=shop_orders.get, customer_id="C1001")
    r = agent.ask("How long do I have to return shoes?")
    r.text, r.sources, r.handoff, r.reason

A 135M model cannot be trusted with facts, so the agent never lets it state
one on its own:
  1. retrieval picks the entry: the knowledge base's search, then the chat
     model re-ranks the `rerank` (4) best by how likely it finds the
     customer's question after reading each entry (ecomlm/ecommerce/_rerank.py;
     about 0.4 s an entry for SmolLM2-135M on 2 cores; rerank=0 turns it off).
     The entry's key sentences (those holding its `facts`, else its first
     sentence) plus the sentence nearest the question are the extractive
     answer;
  2. the model rephrases that answer for the question (`generate=True`);
  3. the rephrasing is kept only if it states every fact of the entry, adds
     no number the entry lacks and no negation or "after/before" the key
     sentences lack; otherwise the extractive answer is the reply.
So every in-scope reply states the entry's fact by construction;
`Reply.generated` says whose words they are.

Hand-off (Reply.handoff, Reply.reason in HANDOFF_REASONS): the customer asks
for a person ("customer_request"); legal, safety or fraud matters
("sensitive"); another customer's data or order ("other_customer"); the best
retrieval score below `min_score` ("low_confidence"; the default threshold
sits between the sample shop's in-scope example questions and its training
dialogues' off-topic requests, see tools/eval_ecommerce.py).

Follow-ups: an elliptical one ("And for shoes?", "What about X?", "And if
it's X?") is rewritten as the previous user turn with X in place of its
content word nearest X ("How long do I have to return a jacket?" -> "... return
a shoes?") and searched as that; other follow-ups (a cue word, at most four
words, or a pronoun in at most seven) are searched alone and joined to the
previous user turn, the two score vectors averaged (weight 0.75 on the joined
one when the question has a pronoun: "How much does it cost?").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import BadRequestError
from . import _validate as V
from .knowledge import _STOP as _STOP_WORDS
from .knowledge import KnowledgeBase

__all__ = ["Reply", "SupportAgent", "HANDOFF_REASONS", "DEFAULT_CHAT_MODEL", "key_sentences"]

HANDOFF_REASONS = ("low_confidence", "customer_request", "out_of_scope", "sensitive", "other_customer",
                   "no_order_lookup")
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"


@dataclass
class Reply:
    text: str                                        # what the customer reads
    sources: list = field(default_factory=list)      # KB ids the answer used ("order:<id>" for a lookup)
    handoff: bool = False                            # True: a human should take over
    reason: Optional[str] = None                     # why it handed off (HANDOFF_REASONS), else None
    score: float = 0.0                               # retrieval score of the first source
    generated: bool = False                          # True: the model's wording passed the fact check


# ------------------------------------------------------------ intent patterns
# Generic phrasings, written from the policies and common support practice.
_HUMAN = re.compile(r"\b(human|real person|live (?:agent|person|chat)|(?:an?|your|the) agent|representative|"
                    r"manager|supervisor|someone (?:from your team|to call)|speak (?:to|with) (?:someone|somebody)|"
                    r"talk (?:to|with) (?:someone|somebody)|call me)\b", re.I)
_SENSITIVE = re.compile(r"\b(sue|suing|lawsuit|lawyer|attorney|legal action|court|injur\w*|hurt|burn(?:ed|t)|"
                        r"swallow\w*|chok\w*|allergic|hospital|poison\w*|fire hazard|exploded|"
                        r"without (?:my )?permission|unauthori[sz]ed|fraud\w*|stolen card|scam\w*|hack\w*|"
                        r"police|identity theft)\b", re.I)
_OTHER = re.compile(r"\b(someone else'?s?|somebody else'?s?|another customer|other customers?'?|"
                    r"(?:my )?neighbou?r'?s?|whoever|customer before me|the (?:last|previous) customer|"
                    r"(?:e-?mail|home|phone|address|number) (?:address )?of (?:the |a |whoever|someone|another)|"
                    r"who (?:bought|ordered))\b", re.I)
_ORDER_ASK = re.compile(r"\b(where(?:'s| is) my (?:order|package|parcel)|my (?:order|package|parcel)|"
                        r"order status|status of (?:my )?order|has (?:my )?order|track(?:ing)? my)\b", re.I)
_FOLLOW = re.compile(r"^\s*(?:and|but|also|what about|how about|same for|is it (?:the same|different)|"
                     r"does that|what if|and if|ok(?:ay)?,? and)\b", re.I)
_ELLIPSIS = re.compile(r"^\s*(?:and|but|also|ok(?:ay)?,?\s*and)?\s*(?:what about|how about|and for|for|and if it'?s|"
                       r"if it'?s|and|is it the same for|same for|and with|with)\s+(?:an?\s+|the\s+|my\s+)?"
                       r"(.{1,40}?)\s*\??\s*$", re.I)
_PRONOUN = re.compile(r"\b(it|that|this|they|them|those|one)\b", re.I)
_SHOP_WORDS = re.compile(r"\b(orders?|return\w*|refund\w*|ship\w*|deliver\w*|sizes?|fit|pay\w*|warrant\w*|"
                         r"products?|items?|account|discount\w*|price\w*|coupon|promo|gift|exchange\w*|parcel|"
                         r"package|track\w*|cancel\w*|store|stock|brightcart)\b", re.I)
_DEFAULT_ORDER_ID = r"\b[A-Z]{2,4}-\d{4,}\b"
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_GUARD_WORDS = ("not", "no", "never", "cannot", "can't", "won't", "don't", "doesn't", "after", "before", "only",
                "except", "unless", "fee", "charge", "pay", "extra")
_BAD_WORDS = re.compile(r"\b(as an ai|i'?m not sure|i don'?t know|i cannot answer|language model|i'?m sorry)\b", re.I)

_STATUS = {
    "processing": "is being packed at our warehouse and should leave within one business day",
    "shipped": "shipped{ship} with {carrier}{track}{eta}",
    "out_for_delivery": "is out for delivery today{with_carrier}{track}",
    "delivered": "was delivered{eta_on}",
    "delayed": "is delayed{at_carrier}; the new estimate is {eta_raw}",
    "cancelled": "was cancelled",
}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])\s*", text) if s.strip()]


def key_sentences(entry: dict, max_sentences: int = 2) -> list[str]:
    """The sentences of an entry that state its facts (its first sentence when
    it lists none): the extractive answer the agent falls back to."""
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise BadRequestError("entry must be a KB record (a dict with a 'text' string)", param="entry")
    V.positive_int(max_sentences, "max_sentences")
    sents = _sentences(entry["text"])
    facts = [str(f).lower() for f in (entry.get("facts") or [])]
    keep = [s for s in sents if any(f in s.lower() for f in facts)] if facts else []
    if not keep:
        keep = sents[:1]
    return keep[:max_sentences]


def _facts(entry: dict, answer: str) -> list[str]:
    facts = [str(f) for f in (entry.get("facts") or []) if str(f).strip()]
    return facts or _NUM.findall(answer)


def _words(s: str) -> set:
    return set(re.findall(r"[a-z']+", s.lower()))


class SupportAgent:
    """Answers customer questions from `kb` (a KnowledgeBase, or records for
    one) with the chat `model`; see the module docstring for the guarantees.

    order_lookup: callable(order_id) -> dict or None, the shop's tool. The
    record's owner (`customer_field`, default "customer_id", or "email") must
    equal the current customer's identity (`customer_id`, per agent or per
    ask) or the agent refuses to share it.
    """

    def __init__(self, kb, model=DEFAULT_CHAT_MODEL, order_lookup: Optional[Callable] = None, *,
                 customer_id=None, shop_name: str = "our shop", min_score: float = 0.30, generate: bool = True,
                 max_tokens: int = 80, order_id_pattern: str = _DEFAULT_ORDER_ID,
                 customer_field: str = "customer_id", seed: int = 0, rerank: int = 4,
                 rerank_weight: float = 0.2):
        if isinstance(kb, list):
            kb = KnowledgeBase.from_records(kb)
        if not isinstance(kb, KnowledgeBase):
            raise BadRequestError(f"kb must be a KnowledgeBase (or a list of records), got {type(kb).__name__}",
                                  param="kb")
        if order_lookup is not None and not callable(order_lookup):
            raise BadRequestError("order_lookup must be callable: order_id -> dict or None", param="order_lookup")
        if not isinstance(min_score, (int, float)) or isinstance(min_score, bool):
            raise BadRequestError("min_score must be a number", param="min_score")
        V.positive_int(max_tokens, "max_tokens")
        V.text(shop_name, "shop_name")
        V.text(customer_field, "customer_field")
        V.identity(customer_id, "customer_id")
        V.integer(seed, "seed")
        V.integer(rerank, "rerank")                        # >= 0; 0: no re-ranking
        V.weight(rerank_weight, "rerank_weight")
        if not (model is None or isinstance(model, str) or hasattr(model, "chat")):
            raise BadRequestError("model must be a model name, a loaded model, or None (extractive answers)",
                                  param="model")
        try:
            self.order_re = re.compile(order_id_pattern)
        except (re.error, TypeError) as e:
            raise BadRequestError(f"order_id_pattern is not a valid regular expression: {e}",
                                  param="order_id_pattern") from None
        self.kb = kb
        self.model_name = model
        self._model = model if hasattr(model, "chat") else None
        self.order_lookup = order_lookup
        self.customer_id = customer_id
        self.customer_field = customer_field
        self.shop_name = shop_name
        self.min_score = float(min_score)
        self.generate = bool(generate) and model is not None
        self.max_tokens = max_tokens
        self.seed = seed
        self.rerank = int(rerank) if model is not None else 0
        self.rerank_weight = float(rerank_weight)
        self._likelihood = None

    @property
    def model(self):
        if self._model is None and isinstance(self.model_name, str):
            import ecomlm

            self._model = ecomlm.load(self.model_name)
        return self._model

    # ------------------------------------------------------------------ ask
    def ask(self, question: str, history=None, *, customer_id=None) -> Reply:
        """Reply to `question` given the earlier `history` (OpenAI-style
        messages, oldest first)."""
        V.text(question, "question")
        V.identity(customer_id, "customer_id")
        history = _history(history)
        customer = customer_id if customer_id is not None else self.customer_id
        user_turns = [m["content"] for m in history if m["role"] == "user"]

        if _HUMAN.search(question):
            return self._handoff("customer_request", "Of course. I'm handing this conversation to a member of our "
                                 "support team now; they'll reply here shortly.")
        if _SENSITIVE.search(question):
            return self._handoff("sensitive", "I'm sorry to hear that. This needs a person from our team, so I'm "
                                 "passing your message to a colleague who will contact you shortly.")
        order_id = self._order_id(question, history)
        if _OTHER.search(question):
            return self._handoff("other_customer", "I'm sorry, I can't share information about another customer "
                                 "or their orders. I can only help with your own account and orders.")
        if order_id is not None:
            return self._order_reply(order_id, customer)
        asks_order = bool(_ORDER_ASK.search(question)) and self.order_lookup is not None
        if asks_order and not self.kb_hit_is_confident(question):
            return Reply("I can check that for you. What's your order number?")

        scores, query = self._scores(question, user_turns)
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score >= self.min_score and query is not None and self.rerank > 1 and self.rerank_weight > 0:
            scores = scores + self._rerank_term(query, scores)
            best = int(np.argmax(scores))
        if score < self.min_score:
            return self._handoff("low_confidence" if _SHOP_WORDS.search(question) else "out_of_scope",
                                 f"I'm sorry, I can only help with {self.shop_name} orders, shipping, returns, sizes, "
                                 "payment and warranty, and I couldn't find this in our policies. Would you like me "
                                 "to connect you with a person from our team?", score)
        entry = self.kb.records[best]
        reply = self._answer(question, entry, float(scores[best]))
        if asks_order:
            reply.text += " If you give me your order number, I can check its status for you."
        return reply

    def kb_hit_is_confident(self, question: str) -> bool:
        s = self.kb.scores(question)[0]
        return float(np.max(s)) >= self.min_score + 0.15

    # ------------------------------------------------------------ retrieval
    def _scores(self, question: str, user_turns: list) -> tuple:
        """(KB scores, the one question they rank for: the question, or an
        elliptical follow-up rewritten; None for a follow-up scored jointly
        with the previous turn)."""
        s = self.kb.scores(question)[0]
        n_words = len(_words(question))
        if user_turns and (_FOLLOW.search(question) or n_words <= 4 or (n_words <= 7 and _PRONOUN.search(question))):
            prev = user_turns[-1]
            rewritten = self.rewrite_follow_up(prev, question)
            if rewritten is not None:                       # "And for shoes?" -> the previous question, about shoes
                return self.kb.scores(rewritten)[0], rewritten
            ctx = self.kb.scores(prev + " " + question)[0]
            w = 0.75 if _PRONOUN.search(question) else 0.5    # "How much does it cost?": "it" is in the context
            s = (1 - w) * s + w * ctx
            return s, None                                  # two turns joined: not one question to re-rank by
        return s, question

    def _rerank_term(self, query: str, scores: np.ndarray) -> np.ndarray:
        """rerank_weight * (log-likelihood of the question given the entry -
        the best of them) for the `rerank` best entries, the lowest of those
        for the rest (see ecomlm/ecommerce/_rerank.py); never raises the best
        score, and the hand-off decision is taken before it."""
        if self._likelihood is None:
            from ._rerank import QuestionLikelihood
            self._likelihood = QuestionLikelihood(self.model)
        adj = self._likelihood.adjust(self.kb.records, scores, query, self.rerank, self.rerank_weight)
        return 0.0 if adj is None else adj

    def rewrite_follow_up(self, previous: str, question: str) -> Optional[str]:
        """An elliptical follow-up ("And for shoes?", "What about X?", "And if
        it's X?", "Is it the same for X?", X of at most three words) rewritten
        as the previous question with X in place of the previous question's
        content word most similar to X (by the KB's embedder; when X names a
        product or category, among the words that do too); None when the
        question is not of that form."""
        m = _ELLIPSIS.match(question)
        if not m or len(m.group(1).split()) > 3:
            return None
        x = m.group(1).strip()
        cands = [w for w in (t.strip(".,;:!?\"()") for t in previous.split())
                 if len(w) > 2 and w.isalpha() or "-" in w and w.replace("-", "").isalpha()]
        cands = [w for w in cands if w.lower() not in _STOP_WORDS]
        if not cands:
            return None
        exp = self.kb.expander
        if exp is not None and exp.mentions(x):             # "boots" replaces a product word ("smartwatch"),
            same_kind = [w for w in cands if exp.mentions(w)]   # not "warranty"
            cands = same_kind or cands
        vecs = self.kb.embed(cands + [x])
        w = cands[int(np.argmax(vecs[:-1] @ vecs[-1]))]
        return re.sub(r"\b" + re.escape(w) + r"\b", x, previous, count=1)

    # --------------------------------------------------------------- answer
    def _answer(self, question: str, entry: dict, score: float) -> Reply:
        extractive = " ".join(self._answer_sentences(question, entry))
        facts = _facts(entry, extractive)
        if self.generate:
            text = self._rephrase(question, extractive)
            if text is not None and self._faithful(text, facts, entry, extractive):
                return Reply(text, [entry["id"]], False, None, score, True)
        return Reply(extractive, [entry["id"]], False, None, score, False)

    def _answer_sentences(self, question: str, entry: dict) -> list:
        """The entry's key (fact) sentences plus the sentence closest to the
        question, in the entry's order: the question may ask about a detail
        other than the headline fact."""
        keys = key_sentences(entry)
        sents = _sentences(entry["text"])
        if len(sents) > len(keys):
            vecs = self.kb.embed([question] + sents)
            best = sents[int(np.argmax(vecs[1:] @ vecs[0]))]
            if best not in keys:
                keys = [x for x in sents if x in keys or x == best]
        return keys

    def _rephrase(self, question: str, facts_text: str) -> Optional[str]:
        msgs = [{"role": "system", "content": f"You are {self.shop_name}'s friendly customer support assistant. "
                 "Answer the customer in one or two short sentences using only the policy given. Copy every "
                 "number exactly."},
                {"role": "user", "content": f"Policy: {facts_text}\n\nCustomer question: {question}"}]
        try:
            out = self.model.chat(msgs, max_tokens=self.max_tokens, temperature=0, seed=self.seed, stop=["\n\n"])
        except BadRequestError:
            return None
        out = re.sub(r"^\s*(?:policy|answer|assistant|reply|response)\s*:\s*", "", out.strip(), flags=re.I)
        if not out:
            return None
        sents = _sentences(out)
        if len(sents) > 3 or not re.search(r"[.!?]$", out):
            out = " ".join(s for s in sents[:3] if re.search(r"[.!?]$", s))   # drop a cut-off tail
        return out or None

    @staticmethod
    def _faithful(text: str, facts: list, entry: dict, extractive: str) -> bool:
        low = text.lower()
        if any(f.lower() not in low for f in facts):
            return False
        known = set(_NUM.findall(entry["text"]) + _NUM.findall(entry.get("title") or ""))
        if any(n not in known for n in _NUM.findall(text)):
            return False
        src = _words(extractive)
        if any(w in _words(text) and w not in src for w in _GUARD_WORDS):
            return False
        return not _BAD_WORDS.search(text) and len(text) <= 450

    # ---------------------------------------------------------------- orders
    def _order_id(self, question: str, history: list) -> Optional[str]:
        m = self.order_re.search(question)
        if m:
            return m.group(0)
        # "It's BC-123" after the agent asked for the number is caught above; an id given
        # earlier counts when the customer now asks about "my order"
        if _ORDER_ASK.search(question):
            for msg in reversed(history):
                if msg["role"] == "user":
                    m = self.order_re.search(msg["content"])
                    if m:
                        return m.group(0)
        return None

    def _order_reply(self, order_id: str, customer) -> Reply:
        if self.order_lookup is None:
            return self._handoff("no_order_lookup", f"I can't look up order {order_id} from here, so I'm passing "
                                 "you to a colleague who can.")
        try:
            rec = self.order_lookup(order_id)
        except KeyError:
            rec = None
        if rec is None:
            return Reply(f"I couldn't find an order with the number {order_id}. Could you check the number? It is "
                         "in your order confirmation email.", [], False, None)
        if not isinstance(rec, dict):
            raise BadRequestError(f"order_lookup returned {type(rec).__name__}; it must return a dict or None",
                                  param="order_lookup")
        owner = rec.get(self.customer_field, rec.get("email"))
        if customer is None or owner is None or str(owner).strip().lower() != str(customer).strip().lower():
            return self._handoff("other_customer", f"I'm sorry, I can't share details of order {order_id}: it isn't "
                                 "linked to your account. If it is yours, please sign in with the account that "
                                 "placed it, or a colleague can verify it with you.")
        return Reply(order_text(order_id, rec), [f"order:{order_id}"], False, None, 1.0)

    @staticmethod
    def _handoff(reason: str, text: str, score: float = 0.0) -> Reply:
        return Reply(text, [], True, reason, score)


def order_text(order_id: str, rec: dict) -> str:
    """A status sentence from an order record (status, items, carrier,
    tracking, shipped, eta); unknown statuses are quoted as given."""
    V.text(order_id, "order_id")
    if not isinstance(rec, dict):
        raise BadRequestError(f"the order record must be a dict, got {type(rec).__name__}", param="rec")
    items = rec.get("items") or []
    what = f" ({', '.join(map(str, items))})" if items else ""
    carrier, track, eta, ship = (rec.get(k) for k in ("carrier", "tracking", "eta", "shipped"))
    tmpl = _STATUS.get(str(rec.get("status", "")).lower())
    if tmpl is None:
        return f"The status of your order {order_id}{what} is: {rec.get('status', 'unknown')}."
    body = tmpl.format(ship=f" on {ship}" if ship else "", carrier=carrier or "our carrier",
                       track=f"; the tracking number is {track}" if track else "",
                       eta=f", and delivery is expected on {eta}" if eta else "",
                       with_carrier=f" with {carrier}" if carrier else "", eta_on=f" on {eta}" if eta else "",
                       at_carrier=f" at the {carrier} hub" if carrier else "", eta_raw=eta or "not known yet")
    return f"Your order {order_id}{what} {body}."


def _history(history) -> list:
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise BadRequestError("history must be a list of {'role', 'content'} messages", param="history")
    out = []
    for i, m in enumerate(history):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise BadRequestError(f"history[{i}] must be a dict with 'role' and 'content'", param=f"history[{i}]")
        if m["role"] not in ("system", "user", "assistant", "tool"):
            raise BadRequestError(f"history[{i}].role must be system, user, assistant or tool, got {m['role']!r}",
                                  param=f"history[{i}].role")
        if not isinstance(m["content"], str):
            raise BadRequestError(f"history[{i}].content must be a string", param=f"history[{i}].content")
        out.append(m)
    return out
