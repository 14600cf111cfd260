"""``openai.error`` of the 0.x SDK: ``except openai.error.InvalidRequestError``."""

from .errors import *  # noqa: F401,F403
from .errors import __all__  # noqa: F401
