"""Query expansion for knowledge-base search: a customer's words for a thing
become the shop's words for it.

Customers say "send it back", "gadget", "spread the cost"; a shop's policy
says "return", "electronics", "pay in 4". A small sentence encoder does not
always bridge that gap, so before a query is embedded, `QueryExpander`
appends the knowledge base's own terms for what the query mentions:

  - a synonym group (lexicon.json "groups") with a member in the query adds
    the group's members that occur in the knowledge base and not in the query;
  - a product noun (lexicon.json "product_types", or a shop catalog's
    subcategory / category columns) adds its category, when the knowledge
    base mentions that category.

    "Can I send back a smartwatch?" -> "Can I send back a smartwatch? (return, electronics)"

Only terms of the knowledge base are added, so the same lexicon serves any
shop, and a query that mentions nothing in the lexicon is left as it is.
The lexicon shipped with the package (lexicon.json) was written from general
shop vocabulary without looking at the sample shop's evaluation questions.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from typing import Iterable, Optional

from ..errors import BadRequestError, NotFoundError
from . import knowledge as _kb                 # _kb.tokenize(); knowledge.py imports this module

__all__ = ["QueryExpander", "default_lexicon", "LEXICON_PATH"]

LEXICON_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lexicon.json")
_lexicon_cache: Optional[dict] = None


def default_lexicon() -> dict:
    """The lexicon shipped with the package ({"groups": [...], "product_types": {...},
    "category_names": {...}})."""
    global _lexicon_cache
    if _lexicon_cache is None:
        with open(LEXICON_PATH, encoding="utf-8") as f:
            _lexicon_cache = json.load(f)
    return _lexicon_cache


def _norm(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", s.lower()))


def _inflect_word(w: str) -> str:
    """A regex for a word with its regular inflections (s, es, ies, ed, d,
    ing; a final e may drop before ing; a final consonant may double)."""
    if len(w) <= 2 or not w.isalpha():
        return re.escape(w)
    if w.endswith("y"):
        return re.escape(w[:-1]) + r"(?:y|ies|ied|ying)"
    if w.endswith("e"):
        return re.escape(w[:-1]) + r"(?:e|es|ed|ing)"
    return re.escape(w) + r"(?:s|es|ed|ing|" + re.escape(w[-1]) + r"ed|" + re.escape(w[-1]) + r"ing)?"


def _inflections(term: str) -> str:
    """A regex for `term` with every word inflected."""
    return r"\s+".join(_inflect_word(w) for w in term.split())


@functools.lru_cache(maxsize=4096)
def _term_re(term: str) -> re.Pattern:
    return re.compile(r"(?<![a-z0-9])" + _inflections(term) + r"(?![a-z0-9])")


def _pattern(terms: Iterable[str]) -> Optional[re.Pattern]:
    alts = sorted({_inflections(t) for t in terms if t}, key=len, reverse=True)
    if not alts:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alts) + r")(?![a-z0-9])")


class QueryExpander:
    """Built from a lexicon and the knowledge base's text; `expand(query)`
    returns the query with the added terms in parentheses (or the query
    itself), `added(query)` the list of added terms."""

    def __init__(self, kb_texts: Iterable[str], lexicon: Optional[dict] = None, catalog=None,
                 max_terms: int = 2):
        lexicon = default_lexicon() if lexicon is None else lexicon
        _check_lexicon(lexicon)
        kb_texts = list(kb_texts)
        corpus = " " + " ".join(_norm(t) for t in kb_texts) + " "
        self.max_terms = max_terms
        # how specific a term is to few entries: the mean idf of its stems over the KB's texts
        docs = [set(_kb.tokenize(t)) for t in kb_texts]
        df: dict = {}
        for d in docs:
            for w in d:
                df[w] = df.get(w, 0) + 1
        n = max(len(docs), 1)
        self._idf = {w: math.log(1 + n / c) for w, c in df.items()}

        def in_kb(term: str) -> bool:
            return _term_re(term).search(corpus) is not None

        # synonym groups that can add something: (pattern over all members, members in the KB)
        self.groups = []
        for g in lexicon.get("groups", []):
            members = [_norm(t) for t in g if _norm(t)]
            present = [t for t in dict.fromkeys(members) if in_kb(t)]
            if present and len(members) > 1:
                self.groups.append((_pattern(members), present, _pattern(present)))
        # product nouns -> category, for categories the knowledge base mentions
        nouns: dict = {}
        for cat, items in (lexicon.get("product_types") or {}).items():
            for n in items:
                nouns.setdefault(_norm(n), _norm(cat))
        for n, cat in _catalog_pairs(catalog):
            nouns[n] = cat                                   # the shop's own catalog wins
        names: dict = {}                                     # category -> its names ("apparel", "clothing")
        for cat in set(nouns.values()) | {_norm(c) for c in (lexicon.get("category_names") or {})}:
            names[cat] = [cat]
        for cat, aliases in (lexicon.get("category_names") or {}).items():
            names[_norm(cat)] += [_norm(a) for a in aliases if _norm(a)]
        by_cat: dict = {}
        for n, cat in nouns.items():
            if n and cat:
                by_cat.setdefault(cat, []).append(n)
        self.categories = []                                 # (pattern, [the KB's name for it], pattern of its names)
        self._mention = {}                                   # category -> pattern of its nouns and names
        for cat, ns in sorted(by_cat.items()) + [(c, []) for c in sorted(names) if c not in by_cat]:
            kb_names = [a for a in names.get(cat, [cat]) if in_kb(a)]
            if not kb_names:
                continue                                     # the knowledge base never names it
            self._mention[cat] = _pattern(ns + names.get(cat, [cat]))
            self.categories.append((self._mention[cat], kb_names[:1], _pattern(names.get(cat, [cat]))))

    def mentions(self, text: str) -> set:
        """The categories (of those the knowledge base names) that `text`
        mentions by name or by a product noun: "my new smartwatch" -> {"electronics"}."""
        t = _norm(text)
        return {cat for cat, pat in self._mention.items() if pat.search(t)}

    def added(self, query: str) -> list:
        """The terms to append, from the groups and categories the query
        mentions: a mention inside a longer mention of another group does not
        count ("gift vouchers" is a gift card, not a voucher code); a group the
        query already names in the knowledge base's words adds nothing; one
        term per stem (not "returns" and "returned" both), none whose stems
        the query has; the most specific (highest idf over the KB's entries)
        first, at most max_terms."""
        q = _norm(query)
        have = set(_kb.tokenize(q))
        found = []                                            # (spans of the mentions, terms to add)
        for pat, present, own in self.groups + self.categories:
            spans = [m.span() for m in pat.finditer(q)]
            if spans and not own.search(q):
                found.append((spans, present))
        cands = []
        for spans, present in found:
            inside = all(any(s2 <= a and b <= e2 and (s2, e2) != (a, b) for sp2, _ in found for s2, e2 in sp2)
                         for a, b in spans)
            if not inside:
                cands += present
        out, keys = [], set()
        for t in cands:
            key = tuple(_kb.tokenize(t))
            if not key or key in keys or set(key) <= have:
                continue
            keys.add(key)
            out.append(t)
        out.sort(key=lambda t: -sum(self._idf.get(w, 0.0) for w in _kb.tokenize(t)) / max(len(_kb.tokenize(t)), 1))
        return out[: self.max_terms]

    def expand(self, query: str) -> str:
        extra = self.added(query)
        return f"{query} ({', '.join(extra)})" if extra else query


def _catalog_pairs(catalog) -> list:
    """(product noun, category) pairs from a catalog: a DataFrame or a list of
    dicts with a "category" column and "subcategory" (or "type") values; the
    subcategory's last word counts too ("running shoe" -> "shoe")."""
    if catalog is None:
        return []
    if hasattr(catalog, "to_dict"):
        if "category" not in getattr(catalog, "columns", []):
            raise BadRequestError("catalog has no 'category' column", param="catalog")
        rows = catalog.to_dict("records")
    elif isinstance(catalog, (list, tuple)) and all(isinstance(r, dict) for r in catalog):
        rows = list(catalog)
    else:
        raise BadRequestError("catalog must be a DataFrame or a list of dicts with a 'category' field",
                              param="catalog")
    pairs = []
    for i, r in enumerate(rows):
        cat = r.get("category")
        if not isinstance(cat, str) or not _norm(cat):
            raise BadRequestError(f"catalog[{i}] has no category", param=f"catalog[{i}].category")
        sub = r.get("subcategory", r.get("type"))
        if isinstance(sub, str) and _norm(sub):
            pairs.append((_norm(sub), _norm(cat)))
            pairs.append((_norm(sub).split()[-1], _norm(cat)))
    return pairs


def _check_lexicon(lexicon) -> None:
    if not isinstance(lexicon, dict):
        raise BadRequestError("lexicon must be a dict with 'groups' and/or 'product_types'", param="lexicon")
    groups = lexicon.get("groups", [])
    if not isinstance(groups, list) or not all(
            isinstance(g, list) and all(isinstance(t, str) for t in g) for g in groups):
        raise BadRequestError("lexicon['groups'] must be a list of lists of strings", param="lexicon.groups")
    for key, what in (("category_names", "a list of its other names"), ("product_types", "a list of nouns")):
        m = lexicon.get(key, {})
        if not isinstance(m, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(t, str) for t in v) for k, v in m.items()):
            raise BadRequestError(f"lexicon['{key}'] must map a category to {what}", param=f"lexicon.{key}")


def load_lexicon(lexicon) -> Optional[dict]:
    """None / True: the default lexicon; False: no expansion; a dict; or the path of a JSON file."""
    if lexicon is None or lexicon is True:
        return default_lexicon()
    if lexicon is False:
        return None
    if isinstance(lexicon, (str, os.PathLike)):
        path = os.fspath(lexicon)
        if not os.path.isfile(path):
            raise NotFoundError(f"lexicon file not found: {path}", param="lexicon")
        try:
            with open(path, encoding="utf-8") as f:
                lexicon = json.load(f)
        except (OSError, ValueError) as e:
            raise BadRequestError(f"{path}: not a JSON lexicon ({e})", param="lexicon") from None
    _check_lexicon(lexicon)
    return lexicon
