"""Faithfulness checks for generated product descriptions (pure Python).

    check_description(text, {"name": "Trail Runner", "color": "red", "price": 59.0})
    # Description(text=..., missing=["color=red"], invented=["120"])

`missing` lists the given attribute values the text does not state;
`invented` lists numbers in the text that no attribute value contains (a
price, a size or a battery life the writer made up).

DescriptionWriter writes with the chat model and enforces the check:

    writer = DescriptionWriter()                 # smollm2-135m-instruct
    d = writer.write(row, tone="friendly", length="short")
    d.text, d.missing, d.invented, d.tries, d.repaired

Each try is checked; a try with gaps is regenerated (another seed, a warmer
temperature, and the missing values named in the prompt) up to `max_tries`.
The best try is then repaired deterministically: sentences with an invented
number are dropped and the values still missing are appended as one compact
sentence ("Details: color red; price $59.00."). So the returned text states
every given value and no invented number, by construction; `repaired` and
`model_missing` say how much of that the model did on its own.
Chinese (`language="zh"`) is written from a template: the 135M model does not
write usable Chinese.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ..errors import BadRequestError

__all__ = ["Description", "DescriptionWriter", "attribute_values", "find_missing", "find_invented_numbers", "check_description"]

# attributes that identify or annotate a product rather than describe it
SKIP_KEYS = {"product_id", "id", "sku", "currency", "added_on", "category_zh", "tier", "description"}
LIST_KEYS = {"features", "sizes", "tags"}
_NUM = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?")


@dataclass
class Description:
    text: str
    missing: list = field(default_factory=list)     # "key=value" not stated in the text
    invented: list = field(default_factory=list)    # numbers in the text not in the input
    tries: int = 0                                  # model generations made (DescriptionWriter)
    repaired: bool = False                          # True: the text was patched after the model's tries
    model_missing: list = field(default_factory=list)  # what the model's best try left out, before repair
    model_invented: list = field(default_factory=list)  # numbers the model's best try invented (removed by repair)
    n_values: int = 0                               # attribute values checked

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
    if not v:
        return True
    # a whole word or phrase, not a piece of one: size "S" is not stated by "shoes", "M" not by "made".
    # "Strideline Aero Running Shoe" stated as "Strideline Aero running shoes": plural / hyphen variants
    loose = re.escape(v).replace(r"\ ", r"[\s-]+").replace(r"\-", r"[\s-]*")
    left = r"(?<![\w'\u2019.])" if v[0].isalnum() or v[0] == "_" else ""     # not the s of "company's", "U.S."
    right = r"(?:e?s)?(?![\w'\u2019])" if v[-1].isalnum() or v[-1] == "_" else ""
    return re.search(left + loose + right, text_n) is not None


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


_UNITS = {  # unit spellings -> one canonical unit
    "%": "%", "percent": "%", "°c": "°c", "° c": "°c", "°f": "°f", "hrc": "hrc", "mah": "mah",
    "kg": "kg", "kgs": "kg", "g": "g", "gram": "g", "grams": "g", "mg": "mg", "ml": "ml", "l": "l", "liter": "l",
    "liters": "l", "litre": "l", "litres": "l", "cm": "cm", "mm": "mm", "m": "m", "in": "in", "inch": "in",
    "inches": "in", "oz": "oz", "lb": "lb", "lbs": "lb", "w": "w", "watt": "w", "watts": "w", "v": "v",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "min": "min", "mins": "min", "minute": "min",
    "minutes": "min", "day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month",
    "months": "month", "year": "year", "years": "year", "gb": "gb", "tb": "tb", "mp": "mp", "spf": "spf",
}
_UNIT_RE = "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
# a number, an optional "$" before it and an optional unit after it ("20 cm", "16-hour", "45W", "0°C")
_QTY = re.compile(r"(?P<dollar>\$\s?)?(?<![\w.])(?P<num>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
                  r"(?:(?:\s?-\s?|\s)?(?P<unit>" + _UNIT_RE + r")(?![a-z]))?", re.I)
_SPF = re.compile(r"\bspf\s?(\d+)", re.I)
_NUMBER_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_NUMBER_WORDS.update(thirteen=13, fourteen=14, fifteen=15, sixteen=16, seventeen=17, eighteen=18, nineteen=19,
                     twenty=20, thirty=30, forty=40, fifty=50, sixty=60, seventy=70, eighty=80, ninety=90,
                     hundred=100, thousand=1000, dozen=12, twice=2, double=2, triple=3)
_WORD_NUM = re.compile(r"\b(" + "|".join(w for w in _NUMBER_WORDS if w not in ("zero", "one")) + r")\b", re.I)
_UNIT_KEYS = {"price": "$", "weight_g": "g", "weight_kg": "kg", "volume_ml": "ml", "length_cm": "cm"}


def _quantities(s: str) -> list:
    """(value, unit or None, as written) for every number in `s`, numerals and
    spelled-out numbers ("two" .. "twelve", "twenty", "dozen"; not "one")."""
    s = unicodedata.normalize("NFKC", s)
    out = []
    for m in _QTY.finditer(s):
        v = round(float(m.group("num").replace(",", "") + ("." + m.group("frac") if m.group("frac") else "")), 2)
        unit = "$" if m.group("dollar") else (_UNITS.get(m.group("unit").lower()) if m.group("unit") else None)
        out.append((v, unit, m.group(0).strip()))
    for m in _SPF.finditer(s):                    # "SPF 50": the unit comes first
        out.append((float(m.group(1)), "spf", m.group(0)))
    for m in _WORD_NUM.finditer(s):
        out.append((float(_NUMBER_WORDS[m.group(1).lower()]), None, m.group(0)))
    return out


def find_invented_numbers(text: str, attributes: dict, allowed: Iterable = ()) -> list[str]:
    """Numbers in `text` the attributes do not support: a number that appears
    in no attribute value (any field, including ids and features) nor in
    `allowed`, or a number with a unit ("230 g", "$87.99", "2-year", "58 HRC")
    that no attribute gives with that unit (87.99 is the price, not a weight;
    230 the weight, not a hardness). Spelled-out numbers count ("two sizes").
    Returned as written in the text, in order, without repeats."""
    if not isinstance(text, str):
        raise BadRequestError("text must be a string", param="text")
    if hasattr(attributes, "to_dict") and not isinstance(attributes, dict):
        attributes = attributes.to_dict()
    if not isinstance(attributes, dict):
        raise BadRequestError("attributes must be a dict (or a pandas row)", param="attributes")
    if isinstance(allowed, (str, bytes)) or not isinstance(allowed, Iterable):
        raise BadRequestError("allowed must be a list of numbers or strings", param="allowed")
    known, with_unit = set(), set()                 # values; (value, unit) pairs ("*": any unit)
    items = [(str(k), v) for k, v in attributes.items()] + [("", v) for v in allowed]
    for k, v in items:
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            if not (isinstance(v, float) and math.isnan(v)):
                x = round(float(v), 2)
                known.add(x)
                with_unit.add((x, _UNIT_KEYS.get(k, "*")))
            continue
        for part in (v if isinstance(v, (list, tuple, set)) else [v]):
            for x, unit, _ in _quantities(str(part)):
                known.add(x)
                with_unit.add((x, unit or "*"))
    out = []
    for x, unit, written in _quantities(text):
        ok = x in known and (unit is None or (x, unit) in with_unit or (x, "*") in with_unit)
        if not ok and written not in out:
            out.append(written)
    return out


def check_description(text: str, attributes: dict, keys: Optional[Iterable[str]] = None,
                      allowed: Iterable = ()) -> Description:
    """Description(text, missing, invented) for a candidate text."""
    return Description(text, find_missing(text, attributes, keys), find_invented_numbers(text, attributes, allowed))


# ------------------------------------------------------------------ writer

DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
TONES = ("friendly", "professional", "playful", "luxury", "minimal")
LENGTHS = {"short": (2, 90), "medium": (4, 150), "long": (6, 230)}    # sentences asked for, max tokens
LANGUAGES = ("en", "zh")
_LABEL = {"name": "name", "brand": "brand", "category": "category", "subcategory": "type", "color": "color",
          "material": "material", "sizes": "sizes", "price": "price", "weight_g": "weight (g)",
          "features": "features"}


def _fmt(key: str, value) -> str:
    if isinstance(value, float) and key == "price":
        return f"${value:.2f}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _attrs(attributes) -> dict:
    if hasattr(attributes, "to_dict") and not isinstance(attributes, dict):
        attributes = attributes.to_dict()
    if not isinstance(attributes, dict) or not attributes:
        raise BadRequestError("attributes must be a non-empty dict (or a pandas row)", param="attributes")
    out = {}
    for k, v in attributes.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if hasattr(v, "item") and not isinstance(v, (list, tuple)):
            v = v.item()                                    # numpy scalars from a pandas row
        out[str(k)] = v
    if not attribute_values(out):
        raise BadRequestError("attributes has no describable value (only ids or empty fields)", param="attributes")
    return out


class DescriptionWriter:
    """Product descriptions from attributes with the chat `model`, checked for
    faithfulness (see the module docstring)."""

    def __init__(self, model=DEFAULT_CHAT_MODEL, *, max_tries: int = 2, seed: int = 0, keys=None):
        if not (isinstance(model, str) and model) and not hasattr(model, "chat"):
            raise BadRequestError("model must be a model name or a loaded model", param="model")
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 0:
            raise BadRequestError(f"max_tries must be an integer >= 0, got {max_tries!r}", param="max_tries")
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise BadRequestError("keys must be a list of attribute names", param="keys")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BadRequestError(f"seed must be an integer, got {seed!r}", param="seed")
        self.model_name = model
        self._model = model if hasattr(model, "chat") else None
        self.max_tries = max_tries
        self.seed = seed
        self.keys = list(keys) if keys is not None else None

    @property
    def model(self):
        if self._model is None:
            import ecomlm

            self._model = ecomlm.load(self.model_name)
        return self._model

    # ---------------------------------------------------------------- write
    def write(self, attributes, tone: str = "friendly", length: str = "short", language: str = "en") -> Description:
        """A Description of one product (a dict or a pandas row)."""
        return self.write_many([attributes], tone=tone, length=length, language=language)[0]

    def write_many(self, products, tone: str = "friendly", length: str = "short", language: str = "en"
                   ) -> list[Description]:
        """write() for many products; each round of tries decodes all of them
        in one batch, which costs little more than one."""
        if hasattr(products, "to_dict") and hasattr(products, "columns"):
            products = products.to_dict("records")
        if not isinstance(products, (list, tuple)) or not products:
            raise BadRequestError("products must be a non-empty list of attribute dicts (or a DataFrame)",
                                  param="products")
        attrs = [_attrs(a) for a in products]
        if not isinstance(tone, str) or not tone.strip():
            raise BadRequestError("tone must be a word such as 'friendly' or 'professional'", param="tone")
        _one_of(length, "length", LENGTHS)
        _one_of(language, "language", LANGUAGES)
        keys = [[k for k in self.keys if k in a] if self.keys is not None else None for a in attrs]
        n_values = [len(attribute_values(a, k)) for a, k in zip(attrs, keys)]
        if language == "zh":
            return [self._finish(check_description(_template_zh(a), a, k), a, k, 0, n, language)
                    for a, k, n in zip(attrs, keys, n_values)]
        n_sent, max_tokens = LENGTHS[length]
        best: list = [None] * len(attrs)
        tries = [0] * len(attrs)
        for t in range(self.max_tries):
            todo = [i for i, b in enumerate(best) if b is None or not b.faithful]
            if not todo:
                break
            msgs = [self._prompt(attrs[i], keys[i], tone, n_sent, best[i].missing if best[i] else []) for i in todo]
            texts = self._generate(msgs, max_tokens, t)
            for i, text in zip(todo, texts):
                tries[i] += 1
                d = check_description(text, attrs[i], keys[i])
                if best[i] is None or _badness(d) < _badness(best[i]):
                    best[i] = d
        return [self._finish(b if b is not None else check_description("", a, k), a, k, t, n, language)
                for b, a, k, t, n in zip(best, attrs, keys, tries, n_values)]

    def _finish(self, d: Description, attrs, keys, tries, n_values, language) -> Description:
        model_missing, model_invented = list(d.missing), list(d.invented)
        text, repaired = d.text, False
        if d.invented:
            text = " ".join(s for s in _sentences(text) if not find_invented_numbers(s, attrs))
            repaired = True
        missing = find_missing(text, attrs, keys)
        if missing:
            text = (text + " " + _details(attrs, missing, language)).strip()
            repaired = True
        out = check_description(text, attrs, keys)
        out.tries, out.repaired, out.model_missing, out.n_values = tries, repaired, model_missing, n_values
        out.model_invented = model_invented
        return out

    def _prompt(self, attrs, keys, tone, n_sent, missing) -> list:
        facts = "\n".join(f"- {_LABEL.get(k, k)}: {_fmt(k, v)}" for k, v in attrs.items()
                          if k not in SKIP_KEYS and (keys is None or k in keys))
        must = ""
        if missing:
            vals = ", ".join(m.split("=", 1)[1] for m in missing)
            must = f" Be sure to mention: {vals}."
        return [{"role": "system", "content": "You write product descriptions for an online shop. Use only the "
                 "facts given; do not add numbers, measurements or claims that are not in the facts."},
                {"role": "user", "content": f"Write a {tone} product description in {n_sent} sentences for this "
                 f"product. Mention the name, brand, category, color, material, price and every feature.{must}\n\n{facts}"}]

    def _generate(self, msgs: list, max_tokens: int, attempt: int) -> list[str]:
        """One batch of chat completions, cleaned; the first attempt is greedy,
        retries sample (temperature 0.7, another seed)."""
        m = self.model
        ids = [m.apply_chat_template(x) for x in msgs]
        temperature = 0.0 if attempt == 0 else 0.7
        outs = m.complete(ids, max_tokens=max_tokens, temperature=temperature, seed=self.seed + attempt)
        return [_clean(o[0].text) for o in outs]

    # -------------------------------------------------------------- catalog
    def write_catalog(self, products, output=None, *, id_column: Optional[str] = None, progress: bool = True,
                      batch_size: int = 8,
                      **write_kwargs):
        """Describe every product of `products` (a DataFrame, a list of dicts,
        or a .jsonl/.csv path); returns a copy with "description",
        "missing" and "invented" columns. With `output` (a .jsonl path) each
        product's result is appended as it is written and a rerun skips the
        ids already there, so a long run can be interrupted and resumed."""
        import json as _json
        import os

        import pandas as pd

        from . import _validate as V

        if isinstance(products, (str, os.PathLike)):
            path = os.fspath(products)
            if not os.path.isfile(path):
                from ..errors import NotFoundError

                raise NotFoundError(f"file not found: {path}", param="products")
            products = pd.read_csv(path) if path.endswith(".csv") else pd.read_json(path, lines=True)
        df = V.dataframe(products, "products")
        if id_column is None:
            id_column = next((c for c in ("product_id", "id", "sku") if c in df.columns), None)
            if id_column is None:
                raise BadRequestError("products needs an id column (product_id, id or sku), or pass id_column=",
                                      param="products.product_id")
        df = V.dataframe(df, "products", [id_column])
        ids = df[id_column].astype(str)
        if ids.duplicated().any():
            raise BadRequestError(f"products.{id_column} has duplicate ids, e.g. {ids[ids.duplicated()].iloc[0]!r}",
                                  param=f"products.{id_column}")
        V.positive_int(batch_size, "batch_size")
        done = {}
        if output is not None:
            if not isinstance(output, (str, os.PathLike)):
                raise BadRequestError(f"output must be a .jsonl file path, got {type(output).__name__}", param="output")
            output = os.fspath(output)
            if os.path.exists(output):
                with open(output, encoding="utf-8") as f:
                    for line in f:
                        if line.strip():
                            try:
                                rec = _json.loads(line)
                            except _json.JSONDecodeError:
                                continue                     # a line cut by an interrupted run
                            done[str(rec.get("id"))] = rec
        try:
            from tqdm.auto import tqdm
        except ImportError:                                  # pragma: no cover
            tqdm = None
        rows = df.to_dict("records")
        todo = [(pid, row) for pid, row in zip(ids, rows) if pid not in done]
        bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="descriptions",
                   disable=not progress) if tqdm is not None else None
        sink = open(output, "a", encoding="utf-8") if output is not None else None
        try:
            for b in range(0, len(todo), batch_size):
                chunk = todo[b:b + batch_size]
                ds = self.write_many([{k: v for k, v in row.items() if k != "description"} for _, row in chunk],
                                     **write_kwargs)
                for (pid, _), d in zip(chunk, ds):
                    rec = {"id": pid, "description": d.text, "missing": d.missing, "invented": d.invented}
                    done[pid] = rec
                    if sink is not None:
                        sink.write(_json.dumps(rec, ensure_ascii=False) + "\n")
                        sink.flush()
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if sink is not None:
                sink.close()
            if bar is not None:
                bar.close()
        results = [done[pid] for pid in ids]
        out = df.copy()
        out["description"] = [r["description"] for r in results]
        out["missing"] = [r["missing"] for r in results]
        out["invented"] = [r["invented"] for r in results]
        return out

    # ------------------------------------------------------------- variants
    def variants(self, attributes, tone: str = "friendly") -> dict:
        """Marketing variants: {"title", "bullets", "ad"}. Title and bullets
        are composed from the attributes; the ad line is the model's, kept
        only if it invents no number (else a template line)."""
        attrs = _attrs(attributes)
        name = str(attrs.get("name", "")).strip()
        brand = str(attrs.get("brand", "")).strip()
        title = name if not brand or brand.lower() in name.lower() else f"{brand} {name}"
        extra = [str(attrs[k]) for k in ("color", "material") if k in attrs]
        if extra:
            title += " \u2013 " + ", ".join(extra)
        bullets = [f.capitalize() for _, f in attribute_values(attrs, [k for k in ("features",) if k in attrs])]
        if "material" in attrs:
            bullets.append(f"Made of {attrs['material']}")
        if "sizes" in attrs:
            bullets.append("Sizes: " + ", ".join(str(v) for _, v in attribute_values(attrs, ["sizes"])))
        if "price" in attrs:
            bullets.append(f"Price: {_fmt('price', attrs['price'])}")
        facts = "; ".join(f"{_LABEL.get(k, k)}: {_fmt(k, v)}" for k, v in attrs.items() if k not in SKIP_KEYS)
        msgs = [{"role": "system", "content": "You write one-line ads for an online shop. Use only the facts given."},
                {"role": "user", "content": f"Write one short, {tone} advertising line (under 15 words) for: {facts}"}]
        ad = self.model.chat(msgs, max_tokens=32, temperature=0, seed=self.seed, stop=["\n"]).strip().strip('"')
        if not ad or find_invented_numbers(ad, attrs) or len(ad) > 160:
            feats = [v for _, v in attribute_values(attrs, ["features"])] if "features" in attrs else []
            short = title.split(" \u2013 ")[0]
            ad = f"{short}: {feats[0]}." if feats else f"Meet the {short}."
        return {"title": title, "bullets": bullets, "ad": ad}


def _badness(d: Description) -> int:
    return len(d.missing) + 2 * len(d.invented)


def _clean(out: str) -> str:
    out = re.sub(r"^\s*(?:\*\*)?(?:product )?description:?(?:\*\*)?\s*", "", out.strip(), flags=re.I)
    out = re.sub(r"[#*]+", "", out)
    sents = _sentences(out)
    if sents and not re.search(r"[.!?]$", sents[-1]):
        sents = sents[:-1]                                   # cut off by max_tokens
    seen, keep = set(), []
    for x in sents:                                          # a small model repeats itself
        key = re.sub(r"\W+", " ", x.lower()).strip()
        if key not in seen:
            seen.add(key)
            keep.append(x)
    return " ".join(keep)


def _one_of(value, param, choices):
    if value not in choices:
        raise BadRequestError(f"{param} must be one of {', '.join(map(repr, choices))}, got {value!r}", param=param)


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?\u3002\uff01])\s+", text.strip()) if s.strip()]


def _details(attrs: dict, missing: list, language: str = "en") -> str:
    by_key: dict = {}
    for m in missing:
        k, v = m.split("=", 1)
        by_key.setdefault(k, []).append(v)
    parts = []
    for k, vs in by_key.items():
        if k == "price":
            parts.append(f"price {_fmt('price', attrs['price'])}")
        elif k == "weight_g":
            parts.append(f"weight {_fmt(k, attrs[k])} g")
        else:
            parts.append(f"{_LABEL.get(k, k)} {', '.join(vs)}")
    return ("详情：" if language == "zh" else "Details: ") + "; ".join(parts) + "."


def _template_zh(attrs: dict) -> str:
    name = attrs.get("name", "")
    cat = attrs.get("category_zh") or attrs.get("category", "")
    bits = [f"{name}（{attrs['brand']}）" if "brand" in attrs else str(name)]
    s = f"{bits[0]}是一款{cat}好物"
    if "subcategory" in attrs:
        s += f"（{attrs['subcategory']}）"
    s += "。"
    if "color" in attrs or "material" in attrs:
        s += f"颜色：{attrs.get('color', '')}，材质：{attrs.get('material', '')}。"
    if "features" in attrs:
        s += "特点：" + "；".join(v for _, v in attribute_values(attrs, ["features"])) + "。"
    if "sizes" in attrs:
        s += "尺码：" + "、".join(v for _, v in attribute_values(attrs, ["sizes"])) + "。"
    if "weight_g" in attrs:
        s += f"重量 {_fmt('weight_g', attrs['weight_g'])} g。"
    if "price" in attrs:
        s += f"售价 {_fmt('price', attrs['price'])}。"
    return s
