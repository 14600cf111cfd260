"""Faithfulness checks for generated product descriptions (pure Python).

    check_description(text, {"name": "Trail Runner", "color": "red", "price": 59.0})
    # Description(text=..., missing=["color=red"], invented=["120"])

`missing` lists the given attribute values the text does not state;
`invented` lists numbers in the text that no attribute value contains (a
price, a size or a battery life the writer made up). The DescriptionWriter
(generation) lands later and regenerates until both are empty.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..errors import BadRequestError

__all__ = ["Description", "attribute_values", "find_missing", "find_invented_numbers", "check_description"]

# attributes that identify or annotate a product rather than describe it
SKIP_KEYS = {"product_id", "id", "sku", "currency", "added_on", "category_zh", "tier", "description"}
LIST_KEYS = {"features", "sizes", "tags"}
_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")


@dataclass
class Description:
    text: str
    missing: list = field(default_factory=list)     # "key=value" not stated in the text
    invented: list = field(default_factory=list)    # numbers in the text not in the input

    @property
    def faithful(self) -> bool:
        return not self.missing and not self.invented


def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).lower().replace("\u2011", "-").replace("\u2013", "-")
    return re.sub(r"\s+", " ", s).strip()


def _items(key: str, value) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, (list, tuple, set)):
        return [str(v) for v in value if str(v).strip()]
    if key in LIST_KEYS and isinstance(value, str):
        return [v.strip() for v in re.split(r"[;|]", value) if v.strip()]
    return [value] if not isinstance(value, str) else ([value.strip()] if value.strip() else [])


def attribute_values(attributes: dict, keys: Optional[Iterable[str]] = None) -> list[tuple[str, object]]:
    """(key, value) pairs a description must state; list-like fields
    (features, sizes: "a; b") give one pair per item."""
    if hasattr(attributes, "to_dict") and not isinstance(attributes, dict):
        attributes = attributes.to_dict()                 # a pandas row
    if not isinstance(attributes, dict) or not attributes:
        raise BadRequestError("attributes must be a non-empty dict (or a pandas row)", param="attributes")
    keys = list(keys) if keys is not None else [k for k in attributes if str(k) not in SKIP_KEYS]
    out = []
    for k in keys:
        if k not in attributes:
            raise BadRequestError(f"attributes has no key {k!r}", param=f"attributes.{k}")
        out += [(str(k), v) for v in _items(str(k), attributes[k])]
    return out


def _number_forms(x: float) -> set[str]:
    forms = {f"{x:.2f}", f"{x:,.2f}"}
    if float(x).is_integer():
        forms |= {str(int(x)), f"{int(x):,}"}
    else:
        forms |= {f"{x:g}", f"{x:.1f}"}
    return forms


def _stated(text_n: str, value) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return any(re.search(rf"(?<![\d.,]){re.escape(f)}(?![\d])", text_n) for f in _number_forms(float(value)))
    v = _norm(str(value))
    if v in text_n:
        return True
    # "Strideline Aero Running Shoe" stated as "Strideline Aero running shoes": allow plural / hyphen variants
    loose = re.escape(v).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]*")
    return re.search(loose + r"(?:e?s)?\b", text_n) is not None


def find_missing(text: str, attributes: dict, keys: Optional[Iterable[str]] = None) -> list[str]:
    """The "key=value" pairs of `attributes` whose value the text does not state
    (case-, whitespace- and number-format-insensitive)."""
    if not isinstance(text, str):
        raise BadRequestError("text must be a string", param="text")
    t = _norm(text)
    return [f"{k}={v}" for k, v in attribute_values(attributes, keys) if not _stated(t, v)]


def _numbers(s: str) -> list[float]:
    out = []
    for m in _NUM.finditer(unicodedata.normalize("NFKC", s)):
        whole = m.group(1).replace(",", "")
        out.append(float(whole + ("." + m.group(2) if m.group(2) else "")))
    return out


def find_invented_numbers(text: str, attributes: dict, allowed: Iterable = ()) -> list[str]:
    """Numbers in `text` that appear in no attribute value (any field, including
    ids and features) nor in `allowed`; e.g. a price or a battery life the
    model made up. Returned as written in the text, in order, without repeats."""
    if not isinstance(text, str):
        raise BadRequestError("text must be a string", param="text")
    if hasattr(attributes, "to_dict") and not isinstance(attributes, dict):
        attributes = attributes.to_dict()
    if not isinstance(attributes, dict):
        raise BadRequestError("attributes must be a dict (or a pandas row)", param="attributes")
    known = set()
    for v in list(attributes.values()) + list(allowed):
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            if not (isinstance(v, float) and math.isnan(v)):
                known.add(round(float(v), 2))
            continue
        for x in (v if isinstance(v, (list, tuple, set)) else [v]):
            known.update(round(n, 2) for n in _numbers(str(x)))
    out = []
    for m in _NUM.finditer(unicodedata.normalize("NFKC", text)):
        n = round(float(m.group(1).replace(",", "") + ("." + m.group(2) if m.group(2) else "")), 2)
        if n not in known and m.group(0) not in out:
            out.append(m.group(0))
    return out


def check_description(text: str, attributes: dict, keys: Optional[Iterable[str]] = None,
                      allowed: Iterable = ()) -> Description:
    """Description(text, missing, invented) for a candidate text."""
    return Description(text, find_missing(text, attributes, keys), find_invented_numbers(text, attributes, allowed))
