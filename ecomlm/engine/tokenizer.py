"""Tokenizers: text to token ids and back, in C, identical to Hugging Face `tokenizers`.

Two families are supported, each loaded from a ``tokenizer.json`` (or the
older ``vocab.txt`` / ``vocab.json`` + ``merges.txt``) or from GGUF metadata:

* byte-level BPE, as in GPT-2, Llama 3, Qwen 2 and SmolLM2;
* WordPiece, as in BERT (cased and uncased) and all-MiniLM-L6-v2.

This module reads the files and checks their shape; ``ecomlm._core.Tokenizer``
does the work with the GIL released.

Text handling, defined for every input:

* ``str`` is encoded as UTF-8; a lone surrogate (which UTF-8 cannot carry)
  becomes U+FFFD.
* ``bytes`` may hold invalid UTF-8: each maximal ill-formed subpart becomes
  U+FFFD, exactly as ``b.decode("utf-8", "replace")`` does, so
  ``encode(b) == encode(b.decode("utf-8", "replace"))``.
* Added tokens (``<|im_start|>``, ``[CLS]``, ...) in the text are matched
  verbatim and never split, as Hugging Face does.
* ``decode`` of byte-level BPE joins the tokens' bytes and shows bytes that do
  not form UTF-8 as U+FFFD; :meth:`Tokenizer.stream` never emits half a
  character.
"""

from __future__ import annotations

import codecs
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError
from . import chat

__all__ = ["Tokenizer", "BatchEncoding", "StreamDecoder"]

_BPE, _WORDPIECE = 1, 2
_PRE = {"none": 0, "gpt2": 1, "llama3": 2, "qwen2": 3, "bert": 4}

# The split regexes of each family, as tokenizer.json spells them.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_PATTERNS = {GPT2_PATTERN: "gpt2", LLAMA3_PATTERN: "llama3", QWEN2_PATTERN: "qwen2"}

# tokenizer.ggml.pre -> (pre-tokeniser, isolate digits first), after llama.cpp.
_GGUF_PRE = {
    "default": ("gpt2", False), "gpt2": ("gpt2", False), "gpt-2": ("gpt2", False),
    "mpt": ("gpt2", False), "olmo": ("gpt2", False), "jais": ("gpt2", False),
    "smollm": ("gpt2", True), "starcoder": ("gpt2", True), "refact": ("gpt2", True),
    "command-r": ("gpt2", True), "codeshell": ("gpt2", True), "exaone": ("gpt2", True),
    "minerva-7b": ("gpt2", True),
    "llama3": ("llama3", False), "llama-v3": ("llama3", False), "llama-bpe": ("llama3", False),
    "dbrx": ("llama3", False), "smaug-bpe": ("llama3", False), "falcon3": ("llama3", False),
    "qwen2": ("qwen2", False), "stablelm2": ("qwen2", False),
}

# GGUF token types (llama.cpp's llama_token_type).
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


def _strlist(items: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    offs = np.zeros(len(items) + 1, dtype=np.int64)
    if items:
        np.cumsum(np.fromiter((len(b) for b in items), dtype=np.int64, count=len(items)),
                  out=offs[1:])
    return b"".join(items), offs


def _text(x: Any, what: str) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if not isinstance(x, str):
        raise ModelFormatError(f"{what} must be a string, got {type(x).__name__}")
    return x


@dataclass
class BatchEncoding:
    """Token ids of a batch: flat arrays plus per-row views.

    ``ids[i]`` / ``type_ids[i]`` are row i as lists. ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` are ``[B, T]`` int64 arrays padded
    (right) to the longest row, or to ``max_length`` with padding="max_length".
    """

    flat_ids: np.ndarray      # (total,) int32
    flat_type_ids: np.ndarray  # (total,) uint8
    offsets: np.ndarray       # (B + 1,) int64
    pad_id: int = 0
    pad_to: int | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def ids(self) -> list[list[int]]:
        o = self.offsets.tolist()
        flat = self.flat_ids.tolist()
        return [flat[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    @property
    def type_ids(self) -> list[list[int]]:
        o = self.offsets.tolist()
        flat = self.flat_type_ids.tolist()
        return [flat[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    def __getitem__(self, i: int) -> list[int]:
        return self.flat_ids[self.offsets[i]:self.offsets[i + 1]].tolist()

    def _padded(self, flat: np.ndarray, fill: int) -> np.ndarray:
        lengths = self.lengths
        width = int(lengths.max(initial=0))
        if self.pad_to is not None:
            width = max(width, self.pad_to)
        out = np.full((len(self), width), fill, dtype=np.int64)
        mask = np.arange(width)[None, :] < lengths[:, None]
        out[mask] = flat
        return out

    @property
    def input_ids(self) -> np.ndarray:
        return self._padded(self.flat_ids, self.pad_id)

    @property
    def token_type_ids(self) -> np.ndarray:
        return self._padded(self.flat_type_ids, 0)

    @property
    def attention_mask(self) -> np.ndarray:
        return self._padded(np.ones(len(self.flat_ids), dtype=np.int64), 0)


class StreamDecoder:
    """Turns token ids into text one id at a time, for streaming.

    ``add(id)`` returns the text that is complete so far (possibly ""): a
    character whose bytes are spread over several tokens comes out whole,
    once its last byte arrives. ``flush()`` returns what is left (an
    unfinished character shows as U+FFFD). The concatenation of all pieces
    equals ``tokenizer.decode(ids)``.
    """

    def __init__(self, tokenizer: "Tokenizer", skip_special_tokens: bool = False):
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self._count = 0

    def add(self, token_id: int) -> str:
        core = self._tok._core
        if self._skip and core.is_special(token_id):
            return ""
        if self._tok._model == _BPE:
            return self._utf8.decode(core.token_bytes(token_id))
        # WordPiece: a token's text depends only on whether it is the first
        piece = core.decode([token_id]).decode("utf-8", "replace")
        if self._count:
            piece = piece[2:] if piece.startswith("##") else " " + piece
            piece = _wp_cleanup(piece)
        self._count += 1
        return piece

    def flush(self) -> str:
        return self._utf8.decode(b"", final=True)


def _wp_cleanup(s: str) -> str:
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                 (" n't", "n't"), (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"),
                 (" 've", "'ve"), (" 're", "'re")):
        s = s.replace(a, b)
    return s


class Tokenizer:
    """A BPE or WordPiece tokenizer. Build one with :meth:`from_file`,
    :meth:`from_tokenizer_json` or :meth:`from_gguf_metadata`.

    Read-only once built: share it between threads freely.
    """

    def __init__(self, *, model: str, vocab: Sequence[str], merges: Sequence[tuple[str, str]] = (),
                 added_tokens: Iterable[tuple[int, bool]] = (), pre: str = "gpt2",
                 split_digits: bool = False, byte_level: bool = True, unk_id: int | None = None,
                 clean_text: bool = True, handle_chinese_chars: bool = True,
                 strip_accents: bool | None = None, lowercase: bool = False,
                 max_input_chars_per_word: int = 100, bos_id: int | None = None,
                 eos_id: int | None = None, add_bos: bool = False, add_eos: bool = False,
                 pair_bos: bool = False, pad_id: int | None = None,
                 chat_template: str | None = None, model_max_length: int | None = None):
        if model not in ("bpe", "wordpiece"):
            raise BadRequestError(f"model must be 'bpe' or 'wordpiece', got {model!r}",
                                  param="model")
        if pre not in _PRE:
            raise BadRequestError(f"pre must be one of {sorted(_PRE)}, got {pre!r}", param="pre")
        self._model = _BPE if model == "bpe" else _WORDPIECE
        self.model_type = model
        if strip_accents is None:
            strip_accents = lowercase  # BertNormalizer's rule
        cfg = {
            "model": self._model, "pre": _PRE[pre], "split_digits": int(split_digits),
            "byte_level": int(byte_level), "unk_id": -1 if unk_id is None else unk_id,
            "clean_text": int(clean_text), "handle_chinese_chars": int(handle_chinese_chars),
            "strip_accents": int(strip_accents), "lowercase": int(lowercase),
            "max_input_chars_per_word": max_input_chars_per_word,
            "bos_id": -1 if bos_id is None else bos_id, "eos_id": -1 if eos_id is None else eos_id,
            "add_bos": int(add_bos), "add_eos": int(add_eos), "pair_bos": int(pair_bos),
        }
        vb, vo = _strlist([t.encode("utf-8", "surrogatepass") for t in vocab])
        mb, mo = None, None
        if model == "bpe":
            flat = []
            for a, b in merges:
                flat.append(a.encode("utf-8", "surrogatepass"))
                flat.append(b.encode("utf-8", "surrogatepass"))
            mb, mo = _strlist(flat)
        added = list(added_tokens)
        aids = np.array([i for i, _ in added], dtype=np.int32)
        aspec = np.array([1 if s else 0 for _, s in added], dtype=np.uint8)
        self._core = _core.Tokenizer(cfg, vb, vo, mb, mo, aids, aspec)
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.unk_id = unk_id
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.pad_id = pad_id
        self.chat_template = chat_template
        self.model_max_length = model_max_length
        self.config = dict(cfg, pre=pre)

    # ------------------------------------------------------------ loading

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load from a tokenizer.json, or a model directory holding one (or a
        BERT vocab.txt, or GPT-2 vocab.json + merges.txt). A
        tokenizer_config.json beside it supplies the chat template and
        add_bos/add_eos when present."""
        path = os.fspath(path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        config = {}
        cfg_path = os.path.join(folder, "tokenizer_config.json")
        if os.path.isfile(cfg_path):
            config = _read_json(cfg_path)
        if os.path.isdir(path):
            tj = os.path.join(path, "tokenizer.json")
            if os.path.isfile(tj):
                return cls.from_tokenizer_json(_read_json(tj), config)
            if os.path.isfile(os.path.join(path, "vocab.txt")):
                return cls.from_vocab_txt(os.path.join(path, "vocab.txt"), config)
            if os.path.isfile(os.path.join(path, "vocab.json")) and os.path.isfile(
                    os.path.join(path, "merges.txt")):
                return cls.from_vocab_merges(os.path.join(path, "vocab.json"),
                                             os.path.join(path, "merges.txt"), config)
            from ..errors import NotFoundError
            raise NotFoundError(f"no tokenizer.json, vocab.txt or vocab.json + merges.txt in {path}",
                                param="path")
        if not os.path.isfile(path):
            from ..errors import NotFoundError
            raise NotFoundError(f"tokenizer file not found: {path}", param="path")
        if path.endswith(".txt"):
            return cls.from_vocab_txt(path, config)
        return cls.from_tokenizer_json(_read_json(path), config)

    @classmethod
    def from_vocab_txt(cls, path: str, config: Mapping | None = None) -> "Tokenizer":
        """A BERT vocab.txt (one token a line; the line number is the id)."""
        config = dict(config or {})
        with open(path, "rb") as f:
            raw = f.read()
        lines = raw.decode("utf-8", "replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = [ln.rstrip("\r") for ln in lines]
        index = {t: i for i, t in reversed(list(enumerate(vocab)))}
        lower = bool(config.get("do_lower_case", True))
        specials = [config.get(k, d) for k, d in (("unk_token", "[UNK]"), ("sep_token", "[SEP]"),
                                                  ("pad_token", "[PAD]"), ("cls_token", "[CLS]"),
                                                  ("mask_token", "[MASK]"))]
        added = [(index[t], True) for t in specials if isinstance(t, str) and t in index]
        return cls(model="wordpiece", vocab=vocab, added_tokens=added, pre="bert",
                   unk_id=index.get(specials[0]), lowercase=lower,
                   strip_accents=config.get("strip_accents"),
                   handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
                   bos_id=index.get(specials[3]), eos_id=index.get(specials[1]),
                   add_bos=True, add_eos=True, pad_id=index.get(specials[2]),
                   chat_template=config.get("chat_template"),
                   model_max_length=_max_len(config))

    @classmethod
    def from_vocab_merges(cls, vocab_path: str, merges_path: str,
                          config: Mapping | None = None) -> "Tokenizer":
        """A GPT-2 style vocab.json + merges.txt."""
        vocab = _read_json(vocab_path)
        with open(merges_path, encoding="utf-8", errors="replace") as f:
            lines = [ln.rstrip("\r\n") for ln in f]
        merges = [ln for ln in lines if ln and not ln.startswith("#version")]
        tj = {"model": {"type": "BPE", "vocab": vocab, "merges": merges},
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
              "added_tokens": []}
        eos = (config or {}).get("eos_token", "<|endoftext|>")
        if isinstance(eos, str) and eos in vocab:
            tj["added_tokens"].append({"id": vocab[eos], "content": eos, "special": True})
        return cls.from_tokenizer_json(tj, config)

    @classmethod
    def from_tokenizer_json(cls, data: Mapping | str, config: Mapping | None = None) -> "Tokenizer":
        """Build from a parsed tokenizer.json (or its text). ``config`` is the
        optional tokenizer_config.json."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except ValueError as e:
                raise ModelFormatError(f"tokenizer.json is not valid JSON: {e}") from e
        if not isinstance(data, Mapping):
            raise ModelFormatError("tokenizer.json must hold a JSON object")
        config = dict(config or {})
        model = data.get("model")
        if not isinstance(model, Mapping) or not isinstance(model.get("vocab"), Mapping):
            raise ModelFormatError("tokenizer.json: 'model' must be an object with a 'vocab'")
        mtype = model.get("type")
        if mtype is None:
            mtype = "BPE" if "merges" in model else "WordPiece"
        vocab_map = model["vocab"]
        added = data.get("added_tokens") or []
        if not isinstance(added, list):
            raise ModelFormatError("tokenizer.json: 'added_tokens' must be a list")
        id_to_tok: dict[int, str] = {}
        for tok, i in vocab_map.items():
            if not isinstance(i, int) or isinstance(i, bool) or i < 0 or i >= 1 << 24:
                raise ModelFormatError(f"tokenizer.json: vocab id of {tok!r} must be an integer "
                                       f"in [0, 2^24), got {i!r}")
            id_to_tok[i] = _text(tok, "a vocab token")
        added_list = []
        for k, a in enumerate(added):
            if not isinstance(a, Mapping) or not isinstance(a.get("id"), int) or \
                    not isinstance(a.get("content"), str) or not a["content"] or \
                    not 0 <= a["id"] < 1 << 24:
                raise ModelFormatError(f"tokenizer.json: added_tokens[{k}] needs an integer 'id' "
                                       "and a non-empty string 'content'")
            id_to_tok[a["id"]] = a["content"]
            added_list.append((a["id"], bool(a.get("special", False))))
        if not id_to_tok:
            raise ModelFormatError("tokenizer.json: the vocabulary is empty")
        n = max(id_to_tok) + 1
        vocab = [""] * n
        for i, t in id_to_tok.items():
            vocab[i] = t
        by_text = {t: i for i, t in id_to_tok.items()}

        def special_id(name):
            t = config.get(name)
            if isinstance(t, Mapping):
                t = t.get("content")
            return by_text.get(t) if isinstance(t, str) else None

        kw: dict[str, Any] = dict(chat_template=_chat_template(config),
                                  model_max_length=_max_len(config))
        kw.update(_post_processor(data.get("post_processor"), by_text))
        if "add_bos_token" in config and special_id("bos_token") is not None and \
                kw.get("bos_id") is None:
            kw.update(bos_id=special_id("bos_token"), add_bos=bool(config["add_bos_token"]))
        if "add_eos_token" in config and special_id("eos_token") is not None and \
                kw.get("eos_id") is None:
            kw.update(eos_id=special_id("eos_token"), add_eos=bool(config["add_eos_token"]))
        kw.setdefault("bos_id", special_id("bos_token"))
        kw.setdefault("eos_id", special_id("eos_token"))
        pad = data.get("padding")
        kw["pad_id"] = pad.get("pad_id") if isinstance(pad, Mapping) else special_id("pad_token")

        if mtype == "BPE":
            for key in ("dropout",):
                if model.get(key):
                    raise ModelFormatError("tokenizer.json: BPE dropout is not supported")
            if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
                raise ModelFormatError("tokenizer.json: BPE subword prefixes/suffixes are not "
                                       "supported")
            if model.get("ignore_merges"):
                raise ModelFormatError("tokenizer.json: BPE ignore_merges is not supported")
            if data.get("normalizer") is not None:
                raise ModelFormatError(f"tokenizer.json: normalizer {data['normalizer'].get('type')!r}"
                                       " is not supported with BPE")
            merges = []
            for k, m in enumerate(model.get("merges") or []):
                if isinstance(m, str):
                    parts = m.split(" ")
                    if len(parts) != 2:
                        raise ModelFormatError(f"tokenizer.json: merges[{k}] must be 'a b'")
                    merges.append((parts[0], parts[1]))
                elif isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
                    merges.append((m[0], m[1]))
                else:
                    raise ModelFormatError(f"tokenizer.json: merges[{k}] must be 'a b' or [a, b]")
            pre, digits, byte_level = _bpe_pre_tokenizer(data.get("pre_tokenizer"))
            unk = model.get("unk_token")
            return cls(model="bpe", vocab=vocab, merges=merges, added_tokens=added_list, pre=pre,
                       split_digits=digits, byte_level=byte_level,
                       unk_id=by_text.get(unk) if isinstance(unk, str) else None, **kw)
        if mtype == "WordPiece":
            if model.get("continuing_subword_prefix", "##") != "##":
                raise ModelFormatError("tokenizer.json: only the '##' WordPiece prefix is supported")
            norm = data.get("normalizer")
            ncfg: dict[str, Any] = dict(clean_text=False, handle_chinese_chars=False,
                                        strip_accents=False, lowercase=False)
            if isinstance(norm, Mapping) and norm.get("type") == "BertNormalizer":
                ncfg = dict(clean_text=bool(norm.get("clean_text", True)),
                            handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
                            strip_accents=norm.get("strip_accents"),
                            lowercase=bool(norm.get("lowercase", True)))
            elif norm is not None:
                raise ModelFormatError(f"tokenizer.json: normalizer {norm.get('type')!r} is not "
                                       "supported with WordPiece")
            pt = data.get("pre_tokenizer")
            if not (isinstance(pt, Mapping) and pt.get("type") == "BertPreTokenizer"):
                raise ModelFormatError("tokenizer.json: WordPiece needs the BertPreTokenizer")
            unk = model.get("unk_token", "[UNK]")
            if by_text.get(unk) is None:
                raise ModelFormatError(f"tokenizer.json: the unk token {unk!r} is not in the vocab")
            return cls(model="wordpiece", vocab=vocab, added_tokens=added_list, pre="bert",
                       unk_id=by_text[unk],
                       max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
                       **ncfg, **kw)
        raise ModelFormatError(f"tokenizer.json: model type {mtype!r} is not supported "
                               "(BPE and WordPiece are)")

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any]) -> "Tokenizer":
        """Build from GGUF metadata as plain Python values: ``tokenizer.ggml.model``,
        ``.tokens``, ``.merges``, ``.token_type``, ``.pre``, ``.bos_token_id``,
        ``.eos_token_id``, ``.unknown_token_id``, ``.padding_token_id``,
        ``.add_bos_token``, ``.add_eos_token`` and ``tokenizer.chat_template``.
        Strings may be str or bytes."""
        if not isinstance(meta, Mapping):
            raise BadRequestError("GGUF metadata must be a dict", param="meta")
        g = "tokenizer.ggml."
        kind = meta.get(g + "model")
        if isinstance(kind, bytes):
            kind = kind.decode("utf-8", "replace")
        tokens = meta.get(g + "tokens")
        if not isinstance(tokens, (list, tuple)) or not tokens:
            raise ModelFormatError("GGUF: tokenizer.ggml.tokens is missing or empty")
        vocab = [_text(t, f"tokenizer.ggml.tokens[{i}]") for i, t in enumerate(tokens)]
        types = meta.get(g + "token_type")
        if types is None:
            types = [1] * len(vocab)
        types = list(types)
        if len(types) != len(vocab):
            raise ModelFormatError("GGUF: tokenizer.ggml.token_type and tokens differ in length")

        def opt_id(key):
            v = meta.get(g + key)
            if v is None:
                return None
            if not isinstance(v, (int, np.integer)) or not 0 <= int(v) < len(vocab):
                raise ModelFormatError(f"GGUF: tokenizer.ggml.{key} = {v!r} is outside the vocabulary")
            return int(v)

        added = [(i, int(t) == _GGUF_CONTROL) for i, t in enumerate(types)
                 if int(t) in (_GGUF_CONTROL, _GGUF_USER_DEFINED) and vocab[i]]
        template = meta.get("tokenizer.chat_template")
        if isinstance(template, bytes):
            template = template.decode("utf-8", "replace")
        common = dict(bos_id=opt_id("bos_token_id"), eos_id=opt_id("eos_token_id"),
                      pad_id=opt_id("padding_token_id"), chat_template=template)
        if kind == "gpt2":
            pre_name = meta.get(g + "pre", "default")
            if isinstance(pre_name, bytes):
                pre_name = pre_name.decode("utf-8", "replace")
            if pre_name not in _GGUF_PRE:
                raise ModelFormatError(f"GGUF: tokenizer.ggml.pre {pre_name!r} is not supported "
                                       f"(known: {', '.join(sorted(_GGUF_PRE))})")
            pre, digits = _GGUF_PRE[pre_name]
            merges = []
            for k, m in enumerate(meta.get(g + "merges") or []):
                m = _text(m, f"tokenizer.ggml.merges[{k}]")
                parts = m.split(" ")
                if len(parts) != 2:
                    raise ModelFormatError(f"GGUF: tokenizer.ggml.merges[{k}] must be 'a b'")
                merges.append((parts[0], parts[1]))
            return cls(model="bpe", vocab=vocab, merges=merges, added_tokens=added, pre=pre,
                       split_digits=digits, unk_id=None,
                       add_bos=bool(meta.get(g + "add_bos_token", False)),
                       add_eos=bool(meta.get(g + "add_eos_token", False)), **common)
        if kind == "bert":
            # llama.cpp stores word-initial pieces with a leading U+2581 and
            # continuations bare; turn them back into BERT's "##" spelling.
            wp = []
            for i, t in enumerate(vocab):
                if int(types[i]) in (_GGUF_CONTROL, _GGUF_USER_DEFINED) or not t:
                    wp.append(t)
                elif t.startswith("\u2581"):
                    wp.append(t[1:])
                else:
                    wp.append("##" + t)
            return cls(model="wordpiece", vocab=wp, added_tokens=added, pre="bert",
                       unk_id=opt_id("unknown_token_id"), lowercase=True,
                       add_bos=True, add_eos=True, **common)
        raise ModelFormatError(f"GGUF: tokenizer.ggml.model {kind!r} is not supported "
                               "(gpt2 and bert are)")

    # ----------------------------------------------------------- encoding

    @property
    def vocab_size(self) -> int:
        return self._core.vocab_size

    def encode(self, text: str | bytes, pair: str | bytes | None = None, *,
               add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Token ids of ``text`` (and of ``pair``, for BERT sentence pairs).
        ``max_length`` truncates (special tokens included), longest first."""
        return self._core.encode(text, pair, add_special_tokens, max_length)

    def encode_with_types(self, text: str | bytes, pair: str | bytes | None = None, *,
                          add_special_tokens: bool = True,
                          max_length: int | None = None) -> tuple[list[int], list[int]]:
        """(ids, token_type_ids): 0 for the first sequence, 1 for the pair."""
        return self._core.encode(text, pair, add_special_tokens, max_length, True)

    def encode_batch(self, texts: Sequence[str | bytes], pairs: Sequence[str | bytes] | None = None,
                     *, add_special_tokens: bool = True, max_length: int | None = None,
                     padding: bool | str = True, n_threads: int | None = None) -> BatchEncoding:
        """Encode many texts at once, in parallel in C (GIL released).

        padding: True / "longest" pads to the longest row; "max_length" pads
        to ``max_length``. Rows are truncated to ``max_length`` when given.
        """
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise BadRequestError("padding must be True, False, 'longest' or 'max_length'",
                                  param="padding")
        if padding == "max_length" and not max_length:
            raise BadRequestError("padding='max_length' needs max_length", param="max_length")
        ids, types, offs = self._core.encode_batch(texts, pairs, add_special_tokens, max_length,
                                                   n_threads)
        return BatchEncoding(ids, types, offs, pad_id=self.pad_id or 0,
                             pad_to=max_length if padding == "max_length" else None)

    # ----------------------------------------------------------- decoding

    def decode(self, ids: Iterable[int] | np.ndarray, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``. Bytes that do not form UTF-8 (a character cut
        between tokens) show as U+FFFD, as in Hugging Face."""
        if not isinstance(ids, (list, tuple, np.ndarray)):
            ids = list(ids)
        return self._core.decode(ids, skip_special_tokens).decode("utf-8", "replace")

    def stream(self, skip_special_tokens: bool = False) -> StreamDecoder:
        """An incremental decoder: feed it ids one at a time while generating."""
        return StreamDecoder(self, skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._core.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._core.id_to_token(token_id)

    def is_special(self, token_id: int) -> bool:
        return self._core.is_special(token_id)

    def pretokenize(self, text: str | bytes) -> list[str]:
        """The pre-tokeniser's pieces (debugging and tests)."""
        return self._core.pretokenize(text)

    # --------------------------------------------------------------- chat

    def apply_chat_template(self, messages: Any, add_generation_prompt: bool = True, *,
                            tokenize: bool = False, **extra: Any) -> str | list[int]:
        """Render OpenAI-style messages with the model's own chat template, or
        ChatML (:data:`ecomlm.engine.chat.CHATML_TEMPLATE`) when it has none.
        With tokenize=True, return the ids (added tokens in the prompt are
        matched, never split; no bos/eos is added beyond the template's)."""
        bos = self.id_to_token(self.bos_id) if self.bos_id is not None else ""
        eos = self.id_to_token(self.eos_id) if self.eos_id is not None else ""
        text = chat.render_chat_template(self.chat_template, messages, add_generation_prompt,
                                         bos_token=bos or "", eos_token=eos or "", **extra)
        if tokenize:
            return self.encode(text, add_special_tokens=False)
        return text

    def __repr__(self) -> str:
        return (f"Tokenizer({self.model_type}, vocab_size={self.vocab_size}, "
                f"pre={self.config['pre']!r})")


# ----------------------------------------------------------------- helpers

def _read_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except ValueError as e:
        raise ModelFormatError(f"{path} is not valid JSON: {e}") from e


def _chat_template(config: Mapping) -> str | None:
    t = config.get("chat_template")
    if isinstance(t, list):  # [{"name": "default", "template": ...}, ...]
        named = {x.get("name"): x.get("template") for x in t if isinstance(x, Mapping)}
        t = named.get("default") or next(iter(named.values()), None)
    return t if isinstance(t, str) else None


def _max_len(config: Mapping) -> int | None:
    v = config.get("model_max_length")
    return int(v) if isinstance(v, (int, float)) and 0 < v < 1 << 31 else None


def _bpe_pre_tokenizer(pt: Any) -> tuple[str, bool, bool]:
    """(pre-tokeniser name, isolate digits, byte level) of a BPE tokenizer.json."""
    def bad():
        return ModelFormatError(f"tokenizer.json: pre_tokenizer {json.dumps(pt)[:300]} is not "
                                "supported (ByteLevel with the GPT-2, Llama-3 or Qwen-2 split, "
                                "optionally after Digits(individual_digits))")
    if not isinstance(pt, Mapping):
        raise bad()
    steps = pt.get("pretokenizers") if pt.get("type") == "Sequence" else [pt]
    if not isinstance(steps, list) or not steps:
        raise bad()
    pre, digits, byte_level = None, False, False
    for s in steps:
        if not isinstance(s, Mapping):
            raise bad()
        t = s.get("type")
        if t == "Digits" and s.get("individual_digits") and pre is None and not digits:
            digits = True
        elif t == "Split" and pre is None:
            pat = s.get("pattern", {})
            regex = pat.get("Regex") if isinstance(pat, Mapping) else None
            if regex not in _PATTERNS or s.get("behavior") != "Isolated" or s.get("invert"):
                raise bad()
            pre = _PATTERNS[regex]
        elif t == "ByteLevel" and not byte_level:
            if s.get("add_prefix_space"):
                raise bad()
            byte_level = True
            if s.get("use_regex", True):
                if pre is not None:
                    raise bad()
                pre = "gpt2"
        else:
            raise bad()
    if not byte_level:
        raise bad()
    return pre or "none", digits, byte_level


def _post_processor(pp: Any, by_text: Mapping[str, int]) -> dict:
    """bos/eos template of a tokenizer.json post_processor."""
    if pp is None:
        return {}
    if not isinstance(pp, Mapping):
        raise ModelFormatError("tokenizer.json: post_processor must be an object")
    t = pp.get("type")
    if t == "Sequence":
        out: dict = {}
        for p in pp.get("processors") or []:
            out.update(_post_processor(p, by_text))
        return out
    if t in ("ByteLevel", None):
        return {}
    if t in ("BertProcessing", "RobertaProcessing"):
        cls_tok, sep_tok = pp.get("cls", [None])[0], pp.get("sep", [None])[0]
        if cls_tok not in by_text or sep_tok not in by_text:
            raise ModelFormatError("tokenizer.json: post_processor tokens are not in the vocab")
        return dict(bos_id=by_text[cls_tok], eos_id=by_text[sep_tok], add_bos=True, add_eos=True)
    if t == "TemplateProcessing":
        single = pp.get("single") or []
        seq = [i for i, x in enumerate(single) if isinstance(x, Mapping) and "Sequence" in x]
        specials = [x["SpecialToken"]["id"] for x in single
                    if isinstance(x, Mapping) and "SpecialToken" in x]
        if len(seq) != 1 or len(specials) > 2:
            raise ModelFormatError("tokenizer.json: unsupported TemplateProcessing")
        before = [x["SpecialToken"]["id"] for x in single[:seq[0]] if "SpecialToken" in x]
        after = [x["SpecialToken"]["id"] for x in single[seq[0] + 1:] if "SpecialToken" in x]
        spec_map = pp.get("special_tokens") or {}

        def tid(name):
            ids = (spec_map.get(name) or {}).get("ids")
            if ids and len(ids) == 1:
                return ids[0]
            if name in by_text:
                return by_text[name]
            raise ModelFormatError(f"tokenizer.json: template token {name!r} is unknown")
        out = {}
        if before:
            out.update(bos_id=tid(before[0]), add_bos=True)
        if after:
            out.update(eos_id=tid(after[0]), add_eos=True)
        pair = pp.get("pair") or []
        n_pair_bos = sum(1 for x in pair if isinstance(x, Mapping) and "SpecialToken" in x
                         and before and x["SpecialToken"]["id"] == before[0])
        if n_pair_bos > 1:
            out["pair_bos"] = True
        return out
    raise ModelFormatError(f"tokenizer.json: post_processor {t!r} is not supported")
