"""The support vocabulary (ecomlm/ecommerce/lexicon.json) used for query
expansion: it loads, and it has the shape the expansion code relies on."""

import importlib.util
import json
import os
from collections import Counter

import pytest

CATEGORIES = {"electronics", "shoes", "apparel", "beauty", "home", "kitchen", "outdoor",
              "sports", "toys", "books", "jewelry", "grocery"}


def lexicon_path():
    # find_spec locates the package without importing it (no C extension needed).
    spec = importlib.util.find_spec("ecomlm")
    return os.path.join(list(spec.submodule_search_locations)[0], "ecommerce", "lexicon.json")


@pytest.fixture(scope="module")
def lexicon():
    with open(lexicon_path(), encoding="utf-8") as f:
        return json.load(f)


def check_term(term, where):
    assert isinstance(term, str), (where, term)
    assert term, where
    assert term == term.strip() and "  " not in term, (where, term)
    assert term == term.lower(), (where, term)


def test_top_level(lexicon):
    assert set(lexicon) == {"version", "about", "groups", "product_types", "category_names"}
    assert lexicon["version"] == 1
    assert isinstance(lexicon["about"], str) and lexicon["about"].strip()


def test_groups(lexicon):
    groups = lexicon["groups"]
    assert isinstance(groups, list)
    assert len(groups) >= 60
    for i, group in enumerate(groups):
        assert isinstance(group, list), i
        assert len(group) >= 2, ("a group needs at least two terms to expand anything", group)
        for term in group:
            check_term(term, "group %d" % i)
        repeated = [t for t, n in Counter(group).items() if n > 1]
        assert not repeated, ("term twice in one group", group[0], repeated)
    # Two groups with the same terms would expand a query twice.
    as_sets = Counter(frozenset(g) for g in groups)
    assert max(as_sets.values()) == 1


def test_product_types(lexicon):
    types = lexicon["product_types"]
    assert isinstance(types, dict)
    assert set(types) == CATEGORIES
    owner = {}
    for category, nouns in types.items():
        assert isinstance(nouns, list), category
        assert 30 <= len(nouns) <= 80, (category, len(nouns))
        for noun in nouns:
            check_term(noun, category)
            assert noun not in owner or owner[noun] == category, \
                ("noun listed under two categories", noun, owner.get(noun), category)
            assert owner.get(noun) != category, ("noun twice in one category", category, noun)
            owner[noun] = category
    # Nouns are singular (plurals are derived in code), so a noun and its
    # regular plural are never both listed.
    both = sorted(n for n in owner if n + "s" in owner or n + "es" in owner)
    assert not both, both


def test_category_names(lexicon):
    names = lexicon["category_names"]
    assert set(names) == CATEGORIES
    nouns = {n for ns in lexicon["product_types"].values() for n in ns}
    seen = Counter()
    for cat, aliases in names.items():
        for a in aliases:
            check_term(a, ("category_names", cat))
            assert a not in CATEGORIES and a not in nouns, (cat, a)
            seen[a] += 1
    assert max(seen.values()) == 1
