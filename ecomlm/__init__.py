"""ecomlm: small language models on the CPU for e-commerce, with an OpenAI-shaped API."""

from . import errors  # noqa: F401  (the C engine looks its exception classes up here)
from .errors import *  # noqa: F401,F403

__version__ = "0.1.0"
