"""DescriptionWriter with the real smollm2-135m-instruct: every given value
stated and no invented number after the check-regenerate-repair loop,
resumable catalogs, variants, Chinese template, input validation. The
held-out measurement (60 products) is tools/eval_ecommerce.py descriptions."""

import json

import pytest

from ecomlm.errors import BadRequestError, NotFoundError
from ecomlm.ecommerce import Description, DescriptionWriter, check_description, sample_shop


@pytest.fixture(scope="module")
def shop():
    try:
        from ecomlm.engine import registry

        registry.pull("smollm2-135m-instruct", progress=False)
    except Exception as e:  # pragma: no cover - no network and no cache
        pytest.skip(f"smollm2-135m-instruct unavailable: {e}")
    return sample_shop()


@pytest.fixture(scope="module")
def writer(shop):
    return DescriptionWriter(max_tries=1)


def test_write_is_faithful(shop, writer):
    row = shop.products.iloc[5]                             # a pandas row
    d = writer.write(row, tone="friendly", length="short")
    assert isinstance(d, Description) and d.text and d.tries == 1 and d.n_values > 5
    assert d.missing == [] and d.invented == []
    again = check_description(d.text, row)
    assert again.faithful


def test_write_dict_numbers(writer):
    d = writer.write({"name": "Trail Runner", "brand": "Strideline", "color": "red", "price": 59.0})
    assert "$59.00" in d.text or "59" in d.text
    assert d.faithful


def test_chinese_template(shop, writer):
    d = writer.write(shop.products.iloc[0], language="zh")
    assert d.faithful and d.tries == 0 and "售价" in d.text


def test_write_catalog_resumable(shop, writer, tmp_path):
    df = shop.products.iloc[:3]
    out = tmp_path / "desc.jsonl"
    first = writer.write_catalog(df.iloc[:2], output=out, progress=False)
    assert list(first["description"].str.len() > 0) == [True, True]
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == list(df["product_id"][:2])
    calls = []
    orig = writer.write_many
    writer.write_many = lambda prods, **kw: calls.append(len(prods)) or orig(prods, **kw)
    try:
        full = writer.write_catalog(df, output=out, progress=False)
    finally:
        del writer.write_many
    assert calls == [1]                                      # only the third product was written
    assert list(full["description"][:2]) == list(first["description"])
    assert len(out.read_text().splitlines()) == 3 and "description" in full.columns
    assert all(not m for m in full["missing"]) and all(not i for i in full["invented"])


def test_variants(shop, writer):
    v = writer.variants(shop.products.iloc[1])
    assert set(v) == {"title", "bullets", "ad"} and v["title"] and v["ad"]
    assert any("Price" in b for b in v["bullets"])


def test_validation(writer, shop, tmp_path):
    cases = [(lambda: writer.write({}), "attributes"), (lambda: writer.write("shoe"), "attributes"),
             (lambda: writer.write({"name": "x"}, length="huge"), "length"),
             (lambda: writer.write({"name": "x"}, language="fr"), "language"),
             (lambda: writer.write({"name": "x"}, tone=""), "tone"),
             (lambda: writer.write_catalog(shop.products.iloc[:0]), "products"),
             (lambda: writer.write_catalog(shop.products[["name", "price"]].iloc[:2]), "products.product_id"),
             (lambda: writer.write_catalog(42), "products"),
             (lambda: DescriptionWriter(max_tries=-1), "max_tries"),
             (lambda: DescriptionWriter(model=3), "model")]
    for fn, param in cases:
        with pytest.raises(BadRequestError) as e:
            fn()
        assert e.value.param == param, (param, e.value)
    with pytest.raises(NotFoundError):
        writer.write_catalog(str(tmp_path / "nope.jsonl"))
