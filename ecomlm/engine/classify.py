"""Text classification: fine-tune a bert encoder with a classification head
in the C engine, and predict with it.

>>> from ecomlm.engine.classify import fine_tune_classifier, TextClassifier
>>> clf, history = fine_tune_classifier("all-minilm-l6-v2", texts, labels, epochs=3,
...                                     validation=0.2)
>>> clf.predict_proba(["Too small, but fast shipping"])   # (1, n_classes)
>>> clf.predict(["Too small, but fast shipping"])         # ['negative']
>>> clf.save("review-sentiment"); clf = TextClassifier.load("review-sentiment")

The network is transformers' ``BertForSequenceClassification``: the encoder,
a pooler (dense + tanh on the [CLS] token) and a linear classifier, trained
with cross-entropy, with the mean squared error for a regression
(``problem_type="regression"``, one output), or with a binary cross-entropy per
label (``problem_type="multi_label_classification"``: each text has any number of
the labels). Hidden dropout is optional. A saved
classifier is a Hugging Face model directory that transformers loads as
``BertForSequenceClassification`` and ecomlm.load as an encoder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..errors import BadRequestError, ModelFormatError, NotFoundError
from . import hf

__all__ = ["fine_tune_classifier", "TextClassifier", "build_classifier_trainer", "ClassifierHistory"]

MULTI = "multi_label_classification"
PROBLEM_TYPES = ("single_label_classification", "regression", MULTI)

LORA_TARGETS = ("q", "k", "v", "o", "up", "down")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


# ----------------------------------------------------------------- trainer

def _head_tensor(store, names, shape):
    """The first of names present in the checkpoint with this shape, or None."""
    for n in names:
        if store.has(n):
            a = store.f32(n)
            if tuple(a.shape) == tuple(shape):
                return a
    return None


def build_classifier_trainer(path: str, num_labels: int, *, lora: Optional[dict] = None,
                             n_threads: Optional[int] = None, seed: int = 0, multi_label: bool = False):
    """(trainer, hf config, engine config) of a bert model directory with a
    classification head of num_labels outputs (1: regression; multi_label:
    independent sigmoids).

    The pooler and classifier come from the checkpoint when it has them (a
    saved BertForSequenceClassification, or a BertModel's pooler); missing
    ones start as transformers initialises them: weights ~ N(0, initializer_range),
    biases 0.
    """
    cfg = hf.read_config(path)
    family, ecfg = hf.engine_config(cfg)
    if family != "bert":
        raise BadRequestError(f"a text classifier needs a bert encoder, not a {family} model", param="model")
    store = hf.TensorStore(hf.safetensors_files(path))
    tr = _core.Trainer(ecfg, n_threads, False, lora, int(num_labels), bool(multi_label))
    plan, _ = hf.weight_plan("bert", cfg, ecfg, store)
    for slot, fetch, transposed in plan:
        tr.set_tensor(slot, fetch(), transposed)
    C = ecfg["d_model"]
    std = float(cfg.get("initializer_range", 0.02))
    rng = np.random.default_rng(seed)
    pw = _head_tensor(store, ("bert.pooler.dense.weight", "pooler.dense.weight"), (C, C))
    pb = _head_tensor(store, ("bert.pooler.dense.bias", "pooler.dense.bias"), (C,))
    if pw is None or pb is None:
        pw, pb = rng.normal(0.0, std, (C, C)), np.zeros(C)
    cw = _head_tensor(store, ("classifier.weight",), (num_labels, C))
    cb = _head_tensor(store, ("classifier.bias",), (num_labels,))
    if cw is None or cb is None:
        cw, cb = rng.normal(0.0, std, (num_labels, C)), np.zeros(num_labels)
    for name, a in (("pooler.weight", pw), ("pooler.bias", pb), ("classifier.weight", cw),
                    ("classifier.bias", cb)):
        tr.set_tensor(name, np.asarray(a, np.float32))
    tr.finalize()
    return tr, cfg, ecfg


# -------------------------------------------------------------- classifier

def _resolve_path(model_or_path) -> Tuple[str, Any]:
    """(model directory, tokenizer or None) of a Model, a directory or a registered name."""
    from .model import Model

    if isinstance(model_or_path, Model):
        if model_or_path.path is None or not os.path.isdir(model_or_path.path):
            raise BadRequestError("this model was not loaded from a directory; pass its path", param="model")
        return model_or_path.path, model_or_path.tokenizer
    if not isinstance(model_or_path, (str, os.PathLike)):
        raise BadRequestError("model must be a Model, a model directory or a model name", param="model")
    path = os.fspath(model_or_path)
    if os.path.isdir(path):
        return path, None
    from . import registry

    local = registry.resolve(path)
    if local is None or not os.path.isdir(local):
        raise NotFoundError(f"model '{path}' is neither a bert model directory nor a known encoder name",
                            param="model")
    return local, None


def _tokenizer(path: str, tok):
    if tok is not None:
        return tok
    from .tokenizer import Tokenizer

    return Tokenizer.from_file(path)


def _encode(tok, texts: Sequence[str], max_length: int):
    enc = tok.encode_batch(list(texts), max_length=max_length)
    return (np.ascontiguousarray(enc.input_ids, dtype=np.int32),
            np.ascontiguousarray(enc.attention_mask, dtype=np.uint8),
            np.ascontiguousarray(enc.token_type_ids, dtype=np.int32))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


class TextClassifier:
    """A bert encoder with a pooler and a classification (or regression) head.

    The encoder runs in the C inference engine (sequences packed, padding
    skipped); the head is two small products in NumPy.
    """

    def __init__(self, model, head: Dict[str, np.ndarray], labels: Optional[List[str]], *,
                 problem_type: str = "single_label_classification", max_length: int = 128, hf_config=None):
        self.model = model
        self.head = {k: np.asarray(v, np.float32) for k, v in head.items()}
        self.labels = list(labels) if labels is not None else None
        self.problem_type = problem_type
        self.max_length = int(max_length)
        self.hf_config = dict(hf_config or model.config)

    @property
    def num_labels(self) -> int:
        return int(self.head["classifier.weight"].shape[0])

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def __repr__(self) -> str:
        kind = "regression" if self.problem_type == "regression" else f"{self.num_labels} classes {self.labels}"
        return f"<ecomlm TextClassifier on {self.model.name!r}: {kind}>"

    def _texts(self, texts) -> List[str]:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise BadRequestError("texts must not be empty", param="texts")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadRequestError(f"texts[{i}] must be a string, got {type(t).__name__}", param="texts")
        return texts

    def logits(self, texts, batch_size: int = 64) -> np.ndarray:
        """Raw head outputs (N, num_labels)."""
        texts = self._texts(texts)
        tok = self.model.tokenizer
        if tok is None:
            raise BadRequestError("the classifier's model has no tokenizer", param="model")
        out = []
        for i in range(0, len(texts), batch_size):
            ids, mask, types = _encode(tok, texts[i:i + batch_size], self.max_length)
            cls = self.model.embed(ids, mask, types, pooling="cls", normalize=False)  # last hidden state of [CLS]
            pooled = np.tanh(cls @ self.head["pooler.weight"].T + self.head["pooler.bias"])
            out.append(pooled @ self.head["classifier.weight"].T + self.head["classifier.bias"])
        return np.concatenate(out, axis=0).astype(np.float32)

    def predict_proba(self, texts, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, num_labels), columns in the order of ``labels``."""
        if self.problem_type == "regression":
            raise BadRequestError("a regression head has no class probabilities; use predict()", param="texts")
        z = self.logits(texts, batch_size).astype(np.float64)
        if self.problem_type == MULTI:  # each label on its own
            return _sigmoid(z).astype(np.float32)
        return _softmax(z).astype(np.float32)

    def predict(self, texts, batch_size: int = 64, threshold: float = 0.5):
        """The most likely label of each text (its name), the regression value,
        or for a multi-label head the list of labels whose probability reaches threshold."""
        z = self.logits(texts, batch_size)
        if self.problem_type == "regression":
            return z[:, 0]
        if self.problem_type == MULTI:
            p = _sigmoid(z.astype(np.float64))
            names = self.labels or [str(i) for i in range(self.num_labels)]
            return [[names[j] for j in np.flatnonzero(row >= threshold)] for row in p]
        best = z.argmax(axis=1)
        return [self.labels[i] for i in best] if self.labels else best.tolist()

    # --------------------------------------------------------- save / load
    def save(self, out_dir: str | os.PathLike) -> str:
        """A Hugging Face BertForSequenceClassification directory: config.json,
        model.safetensors (fp32) and the tokenizer files."""
        from .safetensors import save_file

        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        tensors = _hf_tensors(self._encoder_arrays(), self.head, self.hf_config)
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
        cfg = dict(self.hf_config)
        names = self.labels or [str(i) for i in range(self.num_labels)]
        cfg.update(architectures=["BertForSequenceClassification"], model_type="bert",
                   num_labels=self.num_labels, problem_type=self.problem_type,
                   id2label={str(i): n for i, n in enumerate(names)},
                   label2id={n: i for i, n in enumerate(names)},
                   ecomlm_classifier={"max_length": self.max_length, "labels": self.labels})
        cfg.pop("_name_or_path", None)
        _write_json(os.path.join(out_dir, "config.json"), cfg)
        src = self.model.path
        for f in _TOKENIZER_FILES:
            if src and os.path.isfile(os.path.join(src, f)) and os.path.abspath(src) != os.path.abspath(out_dir):
                shutil.copyfile(os.path.join(src, f), os.path.join(out_dir, f))
        return out_dir

    def _encoder_arrays(self) -> Dict[str, np.ndarray]:
        arrays = getattr(self, "_encoder", None)
        if arrays is None:
            raise BadRequestError("this classifier holds no copy of its encoder weights to save", param="model")
        return arrays

    @classmethod
    def load(cls, path: str | os.PathLike, n_threads: Optional[int] = None) -> "TextClassifier":
        """A classifier saved by save() (or any BertForSequenceClassification directory)."""
        from .model import load

        path = os.fspath(path)
        cfg = hf.read_config(path)
        store = hf.TensorStore(hf.safetensors_files(path))
        C = hf.engine_config(cfg)[1]["d_model"]
        nl = int(cfg.get("num_labels", len(cfg.get("id2label") or {}) or 2))
        head = {}
        for name, src, shape in (("pooler.weight", "bert.pooler.dense.weight", (C, C)),
                                 ("pooler.bias", "bert.pooler.dense.bias", (C,)),
                                 ("classifier.weight", "classifier.weight", (nl, C)),
                                 ("classifier.bias", "classifier.bias", (nl,))):
            a = _head_tensor(store, (src, src.replace("bert.", "", 1)), shape)
            if a is None:
                raise ModelFormatError(f"{path} has no '{src}' of shape {shape}: not a sequence classifier",
                                       param="path")
            head[name] = a
        extra = cfg.get("ecomlm_classifier") or {}
        labels = extra.get("labels")
        if labels is None and isinstance(cfg.get("id2label"), dict):
            labels = [cfg["id2label"].get(str(i), str(i)) for i in range(nl)]
        problem = cfg.get("problem_type") or ("regression" if nl == 1 else "single_label_classification")
        model = load(path, n_threads)
        clf = cls(model, head, labels if problem != "regression" else None, problem_type=problem,
                  max_length=int(extra.get("max_length", model.max_seq_length)), hf_config=cfg)
        plan, _ = hf.weight_plan("bert", cfg, model.engine_config, store)
        clf._encoder = {slot: (np.ascontiguousarray(f().T) if t else f()) for slot, f, t in plan}
        return clf


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def _hf_tensors(enc: Dict[str, np.ndarray], head: Dict[str, np.ndarray], cfg: dict) -> Dict[str, np.ndarray]:
    """Engine slots to BertForSequenceClassification's tensor names."""
    L = int(cfg["num_hidden_layers"])
    out = {"bert.embeddings.word_embeddings.weight": enc["tok_embd"],
           "bert.embeddings.position_embeddings.weight": enc["pos_embd"],
           "bert.embeddings.token_type_embeddings.weight": enc["type_embd"],
           "bert.embeddings.LayerNorm.weight": enc["emb_norm.weight"],
           "bert.embeddings.LayerNorm.bias": enc["emb_norm.bias"]}
    for i in range(L):
        h, s = f"bert.encoder.layer.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            qkv = enc[s + "qkv." + kind]
            n = qkv.shape[0] // 3
            for j, x in enumerate(("query", "key", "value")):
                out[h + f"attention.self.{x}.{kind}"] = np.ascontiguousarray(qkv[j * n:(j + 1) * n])
            out[h + f"attention.output.dense.{kind}"] = enc[s + "proj." + kind]
            out[h + f"attention.output.LayerNorm.{kind}"] = enc[s + "attn_out_norm." + kind]
            out[h + f"intermediate.dense.{kind}"] = enc[s + "up." + kind]
            out[h + f"output.dense.{kind}"] = enc[s + "down." + kind]
            out[h + f"output.LayerNorm.{kind}"] = enc[s + "ffn_out_norm." + kind]
    out["bert.pooler.dense.weight"] = head["pooler.weight"]
    out["bert.pooler.dense.bias"] = head["pooler.bias"]
    out["classifier.weight"] = head["classifier.weight"]
    out["classifier.bias"] = head["classifier.bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


# ------------------------------------------------------------------- data

def _check_texts(texts, what: str) -> List[str]:
    if isinstance(texts, str) or texts is None:
        raise BadRequestError(f"{what} must be a list of strings", param=what.split()[0])
    texts = list(texts)
    if not texts:
        raise BadRequestError(f"{what} must not be empty", param=what.split()[0])
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BadRequestError(f"{what}[{i}] must be a string, got {type(t).__name__}", param=what.split()[0])
    return texts


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _multi_hot(labels, names: Optional[List[str]], what: str):
    """(N, n_labels) float32 targets of a multi-label head, and the label names.
    Each entry is a list of label names or ids (possibly empty)."""
    param = what.split()[0]
    rows = []
    for i, x in enumerate(labels):
        if isinstance(x, (str, bytes)) or not isinstance(x, (list, tuple, set, frozenset)):
            raise BadRequestError(f"{what}[{i}] must be a list of labels (multi-label), got {x!r}", param=param)
        rows.append(list(x))
    if names is None:
        flat = [v for r in rows for v in r]
        if flat and all(isinstance(v, str) for v in flat):
            names = sorted(set(flat))
        elif flat and all(_is_int(v) for v in flat) and min(flat) >= 0:
            names = [str(i) for i in range(max(flat) + 1)]
        else:
            raise BadRequestError(f"{what}: give each text a list of label names or ids (not a mix)", param=param)
    index = {nm: j for j, nm in enumerate(names)}
    y = np.zeros((len(rows), len(names)), np.float32)
    for i, r in enumerate(rows):
        for v in r:
            if isinstance(v, str) and v in index:
                y[i, index[v]] = 1.0
            elif _is_int(v) and 0 <= v < len(names):
                y[i, int(v)] = 1.0
            else:
                raise BadRequestError(f"{what}[{i}]: unknown label {v!r} (labels: {names})", param=param)
    return y, list(names)


def _label_ids(labels, n: int, names: Optional[List[str]], regression: bool, what: str, multi: bool = False):
    """(array of class ids or float values, class names)."""
    if isinstance(labels, (str, bytes)) or labels is None:
        raise BadRequestError(f"{what} must be a list with one label per text", param=what.split()[0])
    if multi and isinstance(labels, np.ndarray) and labels.ndim == 2:  # 0/1 rows
        if len(labels) != n:
            raise BadRequestError(f"{what} has {len(labels)} rows for {n} texts", param=what.split()[0])
        names = names or [str(j) for j in range(labels.shape[1])]
        if labels.shape[1] != len(names) or not np.isin(labels, (0, 1)).all():
            raise BadRequestError(f"{what}: 0/1 rows of {len(names)} labels expected", param=what.split()[0])
        return labels.astype(np.float32), list(names)
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(labels) != n:
        raise BadRequestError(f"{what} has {len(labels)} entries for {n} texts", param=what.split()[0])
    if multi:
        return _multi_hot(labels, names, what)
    if regression:
        if not all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in labels):
            raise BadRequestError(f"{what} of a regression must be numbers", param=what.split()[0])
        vals = np.asarray(labels, dtype=np.float64)
        if not np.isfinite(vals).all():
            raise BadRequestError(f"{what} must be finite numbers", param=what.split()[0])
        return vals.astype(np.float32), None
    if names is None:
        if all(isinstance(x, str) for x in labels):
            names = sorted(set(labels))
        elif all(_is_int(x) for x in labels):
            if min(labels) < 0:
                raise BadRequestError(f"{what}: class id {min(labels)} is negative", param=what.split()[0])
            names = [str(i) for i in range(max(labels) + 1)]
        else:
            raise BadRequestError(f"{what} must be class names (strings) or class ids (integers), not a mix "
                                  "or other values", param=what.split()[0])
    index = {nm: i for i, nm in enumerate(names)}
    ids = []
    for i, x in enumerate(labels):
        if isinstance(x, str):
            if x not in index:
                raise BadRequestError(f"{what}[{i}]: unknown label {x!r} (labels: {names})", param=what.split()[0])
            ids.append(index[x])
        elif _is_int(x):
            if not 0 <= x < len(names):
                raise BadRequestError(f"{what}[{i}]: class id {x} is out of range [0, {len(names)})", param=what.split()[0])
            ids.append(int(x))
        else:
            raise BadRequestError(f"{what}[{i}] must be a class name or id, got {x!r}", param=what.split()[0])
    return np.asarray(ids, np.int32), list(names)


class ClassifierHistory(list):
    """Per-step records (step, epoch, loss, lr, grad_norm, examples_per_s, and
    val_loss / val_accuracy at evaluations): ``pandas.DataFrame(history)``."""

    classifier: Optional[TextClassifier] = None


def _evaluate(tr, tok, texts, y, batch_size, max_length, regression, multi=False):
    """(mean loss, accuracy or None) of the trainer's current weights, without
    dropout. Multi-label: the share of (text, label) decisions right at 0.5."""
    total, correct = 0.0, 0
    p, tr.dropout = tr.dropout, 0.0
    try:
        for i in range(0, len(texts), batch_size):
            ids, mask, types = _encode(tok, texts[i:i + batch_size], max_length)
            yb = y[i:i + batch_size]
            loss = tr.forward(ids, yb, mask, types)
            total += loss * len(yb)
            if multi:
                correct += int(((tr.logits() >= 0) == (yb >= 0.5)).sum())
            elif not regression:
                correct += int((tr.logits().argmax(axis=1) == yb).sum())
    finally:
        tr.dropout = p
    n = len(texts) * (y.shape[1] if multi else 1)
    return total / len(texts), (None if regression else correct / n)


def fine_tune_classifier(model_or_path, texts: Sequence[str], labels: Sequence, *, validation=None,
                         label_names: Optional[Sequence[str]] = None, problem_type: Optional[str] = None,
                         epochs: int = 3, lr: Optional[float] = None, batch_size: int = 16, max_length: int = 128,
                         warmup: float = 0.1, min_lr: float = 0.0, weight_decay: float = 0.01, beta1: float = 0.9,
                         beta2: float = 0.999, eps: float = 1e-8, grad_clip: float = 1.0, lora_rank: int = 0,
                         lora_alpha: Optional[float] = None, lora_dropout: float = 0.0,
                         lora_targets: Sequence[str] = ("q", "v"), dropout: Optional[float] = 0.0,
                         eval_every: Optional[int] = None,
                         max_steps: Optional[int] = None, seed: int = 0, n_threads: Optional[int] = None,
                         progress: bool = True, callback: Optional[Callable[[dict], None]] = None
                         ) -> Tuple[TextClassifier, ClassifierHistory]:
    """Fine-tune a bert encoder (a directory, a Model or a name such as
    ``all-minilm-l6-v2``) with a sequence-classification head on texts and
    their labels, full or LoRA (lora_rank > 0: adapters on lora_targets and
    the classifier train, the rest stays frozen).

    labels: class names (strings) or class ids (integers); label_names fixes
    the classes and their order. problem_type="regression" trains one output
    with the mean squared error on numeric labels; "multi_label_classification"
    takes a list of labels per text (names or ids, possibly empty), or an
    (N, n_labels) array of 0/1, and trains one sigmoid per label (binary
    cross-entropy).
    validation: a fraction of the data held out (stratified by nothing: a
    seeded shuffle), or (texts, labels); evaluated every ``eval_every`` steps
    (default: each epoch end) for val_loss and val_accuracy.
    dropout: hidden dropout while training (embeddings, attention and MLP
    outputs, pooled output; not the attention probabilities). Default 0: on
    the shop's reviews, 3 epochs of all-MiniLM-L6-v2 reached higher held-out
    accuracy without it (docs/classify.md); None takes the checkpoint's
    hidden_dropout_prob, as transformers trains.
    The learning rate (default 1e-4 full, 3e-3 LoRA) warms up linearly over
    ``warmup`` (a fraction of the steps if < 1, else a step count), then
    follows a cosine to min_lr. AdamW decays the matrices by weight_decay;
    gradients are clipped to grad_clip.

    Returns (classifier, history).
    """
    from tqdm.auto import tqdm

    from .finetune import TrainingDivergedError, trainer_to_model
    from .model import Model

    if problem_type not in (None,) + PROBLEM_TYPES:
        raise BadRequestError(f"problem_type must be one of {', '.join(PROBLEM_TYPES)}", param="problem_type")
    regression, multi = problem_type == "regression", problem_type == MULTI
    for name, val, lo in (("epochs", epochs, 1), ("batch_size", batch_size, 1), ("max_length", max_length, 2),
                          ("lora_rank", lora_rank, 0)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise BadRequestError(f"{name} must be an integer >= {lo}, got {val!r}", param=name)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer))
                                  or max_steps < 1):
        raise BadRequestError(f"max_steps must be a positive integer, got {max_steps!r}", param="max_steps")
    for t in lora_targets:
        if t not in LORA_TARGETS:
            raise BadRequestError(f"unknown lora target {t!r} ({', '.join(LORA_TARGETS)})", param="lora_targets")
    for name, val in (("lr", lr), ("weight_decay", weight_decay), ("warmup", warmup), ("min_lr", min_lr),
                      ("dropout", dropout)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float)) or not np.isfinite(val)
                                or val < 0):
            raise BadRequestError(f"{name} must be a non-negative number, got {val!r}", param=name)
    if dropout is not None and dropout >= 1:
        raise BadRequestError(f"dropout must be in [0, 1), got {dropout!r}", param="dropout")

    texts = _check_texts(texts, "texts")
    names = list(label_names) if label_names is not None else None
    if names is not None and (not names or len(set(names)) != len(names)):
        raise BadRequestError("label_names must be distinct and not empty", param="label_names")
    y, names = _label_ids(labels, len(texts), names, regression, "labels", multi)
    if not regression and not multi and len(names) < 2:
        raise BadRequestError(f"a classifier needs at least 2 classes, got {names}", param="labels")
    rng = random.Random(seed)
    if validation is None or isinstance(validation, (float, int)) and not isinstance(validation, bool):
        frac = float(validation or 0.0)
        if not 0.0 <= frac < 1.0:
            raise BadRequestError("validation as a fraction must be in [0, 1)", param="validation")
        order = list(range(len(texts)))
        rng.shuffle(order)
        n_val = int(round(len(texts) * frac))
        if frac > 0 and (n_val < 1 or n_val >= len(texts)):
            raise BadRequestError(f"validation={frac} of {len(texts)} examples leaves no training or "
                                  "validation data", param="validation")
        val_idx, tr_idx = order[:n_val], order[n_val:]
        val_texts = [texts[i] for i in val_idx]
        val_y = y[val_idx] if n_val else y[:0]
        texts, y = [texts[i] for i in tr_idx], y[tr_idx]
    elif isinstance(validation, (tuple, list)) and len(validation) == 2:
        val_texts = _check_texts(validation[0], "validation texts")
        val_y, _ = _label_ids(validation[1], len(val_texts), names, regression, "validation labels", multi)
    else:
        raise BadRequestError("validation must be a fraction or (texts, labels)", param="validation")

    path, tok = _resolve_path(model_or_path)
    tok = _tokenizer(path, tok)
    num_labels = 1 if regression else len(names)
    lcfg = None
    if lora_rank:
        lcfg = dict(rank=int(lora_rank), alpha=float(lora_alpha if lora_alpha is not None else 2 * lora_rank),
                    dropout=float(lora_dropout), targets=list(lora_targets), seed=int(seed))
    if lr is None:  # what all-MiniLM-L6-v2 learned best with on the shop's reviews (docs/classify.md)
        lr = 3e-3 if lora_rank else 1e-4
    tr, cfg, ecfg = build_classifier_trainer(path, num_labels, lora=lcfg, n_threads=n_threads, seed=seed,
                                             multi_label=multi)
    if dropout is None:
        dropout = cfg.get("hidden_dropout_prob", 0.1)
        dropout = float(dropout) if isinstance(dropout, (int, float)) and 0 <= dropout < 1 else 0.0
    tr.dropout = float(dropout)
    max_length = min(int(max_length), ecfg["max_pos"])

    n = len(texts)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warm = int(round(warmup * total)) if warmup < 1 else int(warmup)
    history = ClassifierHistory()
    bar = tqdm(total=total, desc="fine-tune classifier", disable=not progress)
    step = 0
    try:
        for epoch in range(epochs):
            order = list(range(n))
            rng.shuffle(order)
            for b0 in range(0, n, batch_size):
                if step >= total:
                    break
                idx = order[b0:b0 + batch_size]
                ids, mask, types = _encode(tok, [texts[i] for i in idx], max_length)
                t0 = time.perf_counter()
                cur_lr = _core.lr_schedule(step, float(lr), float(min_lr), warm, total)
                tr.zero_grad()
                loss = tr.forward_backward(ids, y[idx], mask, types)
                if not np.isfinite(loss):
                    raise TrainingDivergedError(f"the loss became {loss} at step {step + 1}")
                norm = tr.step(cur_lr, beta1, beta2, eps, weight_decay, grad_clip)
                dt = time.perf_counter() - t0
                step += 1
                rec = dict(step=step, epoch=epoch + (b0 + len(idx)) / n, loss=float(loss), lr=float(cur_lr),
                           grad_norm=float(norm), examples_per_s=len(idx) / dt if dt > 0 else float("nan"))
                end_of_epoch = b0 + batch_size >= n or step == total
                if len(val_texts) and ((eval_every and step % eval_every == 0) or
                                       (not eval_every and end_of_epoch) or step == total):
                    vl, va = _evaluate(tr, tok, val_texts, val_y, batch_size, max_length, regression, multi)
                    rec["val_loss"] = vl
                    if va is not None:
                        rec["val_accuracy"] = va
                history.append(rec)
                bar.update(1)
                bar.set_postfix({k: round(v, 4) for k, v in rec.items() if k in ("loss", "val_loss", "val_accuracy")})
                if callback is not None:
                    callback(rec)
    finally:
        bar.close()
    model = Model(trainer_to_model(tr, ecfg, n_threads), "bert", cfg, ecfg,
                  sum(int(np.prod(s)) for _, s in tr.slots()), path=path)
    model.tokenizer = tok
    head = {n_: tr.export(n_, True) for n_ in ("pooler.weight", "pooler.bias", "classifier.weight",
                                               "classifier.bias")}
    clf = TextClassifier(model, head, None if regression else names,
                         problem_type=problem_type or "single_label_classification",
                         max_length=max_length, hf_config=cfg)
    clf._encoder = {s: tr.export(s, True) for s, _ in tr.slots() if ".lora_" not in s and s not in head}
    history.classifier = clf
    tr.close()  # the classifier holds copies; the training state goes with the trainer
    return clf, history
