"""Bad input never crashes: every corrupt file and bad argument raises a
clear ecomlm.errors exception that names the problem."""

import json
import os
import shutil

import numpy as np
import pytest

import ecomlm
from ecomlm.engine.safetensors import SafeTensorsFile, save_file
from ecomlm.errors import BadRequestError, ModelFormatError, NotFoundError
from helpers import save_hf, tiny_gpt2, tiny_llama


def write_raw(path, header, data=b"", hlen=None):
    text = json.dumps(header).encode() if isinstance(header, dict) else header
    with open(path, "wb") as f:
        f.write((len(text) if hlen is None else hlen).to_bytes(8, "little"))
        f.write(text)
        f.write(data)
    return path


def good_header():
    return {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
            "b": {"dtype": "F16", "shape": [4], "data_offsets": [24, 32]}}


def test_roundtrip_writer_reader(tmp_path, rng):
    tensors = {"w": rng.standard_normal((3, 5)).astype(np.float32), "h": np.arange(6, dtype=np.float16),
               "i": np.arange(4, dtype=np.int64), "bf": rng.standard_normal(7).astype(np.float32)}
    p = tmp_path / "x.safetensors"
    save_file(tensors, p, metadata={"format": "pt"}, bf16=("bf",))
    f = SafeTensorsFile(p)
    assert sorted(f.names()) == sorted(tensors)
    assert f.metadata() == {"format": "pt"}
    for k in ("w", "h", "i"):
        assert np.array_equal(f.get(k), tensors[k]) and f.get(k).dtype == tensors[k].dtype
    assert f.dtype("bf") == "BF16"
    np.testing.assert_allclose(f.get("bf"), tensors["bf"], rtol=2 ** -8)
    # the reference library reads our files identically
    import torch
    from safetensors.torch import load_file

    ref = load_file(str(p))
    assert np.array_equal(ref["w"].numpy(), tensors["w"]) and np.array_equal(ref["i"].numpy(), tensors["i"])
    assert np.array_equal(ref["bf"].float().numpy(), f.get("bf"))
    assert ref["bf"].dtype == torch.bfloat16
    with pytest.raises(ValueError):  # views are read-only: the mapping is never written
        f.get("w")[0, 0] = 1


CORRUPT = {
    "truncated header": (lambda p: write_raw(p, b'{"a": {"dtype"', hlen=14), "malformed"),
    "header length past end": (lambda p: write_raw(p, good_header(), b"\0" * 32, hlen=1 << 40), "past the end"),
    "tiny file": (lambda p: open(p, "wb").write(b"\x01\x02"), "too short"),
    "unknown dtype": (lambda p: write_raw(p, {"a": {"dtype": "F8", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0"),
                      "unknown dtype"),
    "shape/offset mismatch": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                                                  b"\0" * 8), "need 12 bytes"),
    "offset past end": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                                            b"\0" * 8), "past the end"),
    "overlap": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
                "overlaps"),
    "hole": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8),
             "hole"),
    "negative dim": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
                                         b"\0" * 4), "shape"),
    "huge dims overflow": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [2 ** 62, 2 ** 62],
                                                         "data_offsets": [0, 4]}}, b"\0" * 4), "overflow"),
    "not an object": (lambda p: write_raw(p, b"[1, 2]"), "not a JSON object"),
    "trailing garbage": (lambda p: write_raw(p, b'{} xx'), "trailing"),
    "duplicate": (lambda p: write_raw(p, b'{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
                                         b'"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'),
                  "duplicate"),
    "bad escape": (lambda p: write_raw(p, b'{"a\\x": 1}'), "malformed"),
    "missing offsets": (lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4), "lacks"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_safetensors_raise(case, tmp_path):
    make, needle = CORRUPT[case]
    p = tmp_path / "bad.safetensors"
    make(str(p))
    with pytest.raises(ModelFormatError, match=needle):
        SafeTensorsFile(p)


def test_every_truncation_of_a_real_file_raises(tmp_path):
    p = tmp_path / "ok.safetensors"
    save_file({"a": np.ones((3, 4), np.float32), "b": np.zeros(5, np.float16)}, p)
    blob = p.read_bytes()
    q = tmp_path / "cut.safetensors"
    for n in range(len(blob)):
        q.write_bytes(blob[:n])
        with pytest.raises(ModelFormatError):
            SafeTensorsFile(q)


def test_missing_file_and_tensor(tmp_path):
    with pytest.raises(NotFoundError):
        SafeTensorsFile(tmp_path / "nope.safetensors")
    p = tmp_path / "ok.safetensors"
    save_file({"a": np.ones(3, np.float32)}, p)
    with pytest.raises(NotFoundError, match="'zz'"):
        SafeTensorsFile(p).get("zz")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return save_hf(tiny_gpt2(), tmp_path_factory.mktemp("gpt2"))


def copy_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_tensor_in_checkpoint(gpt2_dir, tmp_path):
    d = copy_dir(gpt2_dir, tmp_path / "m")
    f = SafeTensorsFile(d / "model.safetensors")
    tensors = {n: np.array(f.get(n)) for n in f.names() if "h.1.mlp.c_fc.bias" not in n}
    del f
    save_file(tensors, d / "model.safetensors")
    with pytest.raises(ModelFormatError, match="h.1.mlp.c_fc.bias"):
        ecomlm.load(d)


def test_wrong_tensor_shape_in_checkpoint(gpt2_dir, tmp_path):
    d = copy_dir(gpt2_dir, tmp_path / "m")
    f = SafeTensorsFile(d / "model.safetensors")
    tensors = {n: np.array(f.get(n)) for n in f.names()}
    del f
    tensors["transformer.h.0.ln_1.weight"] = np.ones(7, np.float32)
    save_file(tensors, d / "model.safetensors")
    with pytest.raises(BadRequestError, match="attn_norm.weight"):
        ecomlm.load(d)


@pytest.mark.parametrize("patch,needle", [
    ({"n_head": 3}, "multiple of n_head"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_embd": -4}, "d_model"),
    ({"vocab_size": 2 ** 40}, "out of range"),
    ({"n_layer": "two"}, "integer"),
    ({"model_type": "t5"}, "not supported"),
    ({"layer_norm_epsilon": 0}, "norm_eps"),
])
def test_impossible_config(gpt2_dir, tmp_path, patch, needle):
    d = copy_dir(gpt2_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(patch)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadRequestError, match=needle):
        ecomlm.load(d)


def test_llama_impossible_gqa(tmp_path):
    d = save_hf(tiny_llama(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_key_value_heads"] = 4  # 9 heads are not a multiple of 4
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadRequestError, match="n_kv_head"):
        ecomlm.load(d)


def test_corrupt_config_json(gpt2_dir, tmp_path):
    d = copy_dir(gpt2_dir, tmp_path / "m")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="config.json"):
        ecomlm.load(d)


@pytest.fixture(scope="module")
def gpt2(gpt2_dir):
    return ecomlm.load(gpt2_dir)


@pytest.mark.parametrize("ids,needle", [
    ([1, 1001, 2], "out of range"),
    ([1, -1, 2], "out of range"),
    ([], "empty"),
    ([[1, 2]], "1-D"),
    ([1.5, 2.0], "integers"),
    ([2 ** 40], "int32|out of range"),
    (["a"], "integers"),
])
def test_bad_token_ids(gpt2, ids, needle):
    with pytest.raises(BadRequestError, match=needle):
        gpt2.logits(ids)


def test_too_long_for_context(gpt2):
    with pytest.raises(BadRequestError, match="context length"):
        gpt2.logits(np.zeros(321, dtype=np.int64))


def test_cache_overflow_and_misuse(gpt2):
    cache = gpt2.new_cache(8)
    gpt2.forward([1, 2, 3, 4, 5], cache)
    with pytest.raises(BadRequestError, match="do not fit"):
        gpt2.forward([1, 2, 3, 4], cache)
    assert cache.n_past == 5  # the failed call changed nothing
    with pytest.raises(BadRequestError, match="rewind"):
        cache.n_past = 6
    with pytest.raises(BadRequestError):
        gpt2.new_cache(0)
    with pytest.raises(BadRequestError):
        gpt2.embed([[1, 2]])


def test_bad_embed_inputs(tmp_path):
    from helpers import tiny_bert

    m = ecomlm.load(save_hf(tiny_bert(), tmp_path))
    with pytest.raises(BadRequestError, match="empty"):
        m.embed(np.zeros((0, 3), np.int64))
    with pytest.raises(BadRequestError, match="no unmasked"):
        m.embed([[1, 2]], [[0, 0]])
    with pytest.raises(BadRequestError, match="shape"):
        m.embed([[1, 2]], [[1, 1, 1]])
    with pytest.raises(BadRequestError, match="out of range"):
        m.embed([[1, 5000]])
    with pytest.raises(BadRequestError, match="type"):
        m.embed([[1, 2]], None, [[0, 7]])
    with pytest.raises(BadRequestError, match="pooling"):
        m.embed([[1, 2]], pooling="max")
    with pytest.raises(BadRequestError, match="positions"):
        m.embed(np.ones((1, 400), np.int64))
    with pytest.raises(BadRequestError, match="logits"):
        m.logits([1, 2])


def test_unknown_model_name():
    with pytest.raises(NotFoundError, match="no-such-model"):
        ecomlm.load("no-such-model")
