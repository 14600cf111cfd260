"""ecomlm: small language models on the CPU for e-commerce, with an OpenAI-shaped API.

    import ecomlm
    m = ecomlm.load("all-minilm-l6-v2")     # a registered name or a model directory
    m.embed(["red running shoes"])          # numpy (N, 384)
"""

from . import errors  # noqa: F401  (the C engine looks its exception classes up here)
from .errors import *  # noqa: F401,F403
from .engine.model import Model, load  # noqa: F401

__version__ = "0.1.0"
