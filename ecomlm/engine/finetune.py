"""Fine-tuning: full or LoRA, on OpenAI fine-tuning JSONL, in the C engine.

>>> import ecomlm
>>> m = ecomlm.load("path/to/hf-model-dir")
>>> history = m.fine_tune("train.jsonl", epochs=2, lora_rank=8)
>>> import pandas; pandas.DataFrame(history).plot(x="step", y=["loss", "val_loss"])

The C engine (``_core.Trainer``) owns the fp32 master weights, gradients,
Adam moments and activations; this module owns the policy: reading and
validating data, packing it to the context length, the schedule, checkpoints
and the progress bar.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _core
from ..errors import APIError, BadRequestError
from . import hf

__all__ = ["FineTuneConfig", "build_trainer", "trainer_to_model", "read_jsonl", "tokenize_examples", "pack",
           "fine_tune", "TrainingDivergedError", "LORA_TARGETS"]

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


class TrainingDivergedError(APIError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ----------------------------------------------------------------- trainer

def _tied(family: str, cfg: dict, store) -> bool:
    """Whether lm_head is the token embedding (the same rule as hf.weight_plan)."""
    if family == "gpt2":
        return bool(cfg.get("tie_word_embeddings", True) or not store.has("lm_head.weight"))
    return bool(cfg.get("tie_word_embeddings", False) or not store.has("lm_head.weight"))


def build_trainer(path: str, *, lora: Optional[dict] = None, n_threads: Optional[int] = None):
    """(trainer, family, hf config, engine config) for a Hugging Face model directory.

    lora: None for full fine-tuning, or dict(rank, alpha, dropout, targets, seed).
    """
    cfg = hf.read_config(path)
    family, ecfg = hf.engine_config(cfg)
    if family not in ("gpt2", "llama"):
        raise BadRequestError(f"fine-tuning supports gpt2 and llama models, not {family}", param="model")
    store = hf.TensorStore(hf.safetensors_files(path))
    tied = _tied(family, cfg, store)
    tr = _core.Trainer(ecfg, n_threads, tied, lora)
    slots = dict(tr.slots())
    plan, _ = hf.weight_plan(family, cfg, ecfg, store)
    for slot, fetch, transposed in plan:
        if slot not in slots:
            continue  # tied lm_head, or a bias this configuration does not carry
        tr.set_tensor(slot, fetch(), transposed)
    tr.finalize()
    return tr, family, cfg, ecfg


def trainer_to_model(tr, ecfg: dict, n_threads: Optional[int] = None) -> "_core.Model":
    """A _core.Model for inference with the trainer's weights, LoRA merged in."""
    core = _core.Model(ecfg, n_threads)
    names = {n for n, _ in tr.slots()}
    for slot, _shape in core.slots():
        src = "tok_embd" if slot == "lm_head.weight" and slot not in names else slot
        core.set_tensor(slot, tr.export(src, True))
    core.finalize()
    return core
