"""ecomlm: small language models on the CPU for e-commerce, with an OpenAI-shaped API.

    import ecomlm
    m = ecomlm.load("all-minilm-l6-v2")     # a registered name or a model directory
    m.embed(["red running shoes"])          # numpy (N, 384)
"""

import os as _os

# OpenMP threads that wait at a barrier spin for GOMP_SPINCOUNT iterations
# (libgomp's default: 300000, about a millisecond) before they sleep. A decode
# step crosses ~150 barriers, and when the cores are shared with other
# processes the thread being waited for is often descheduled: each barrier
# then costs a whole scheduler slice, and two threads decode 50-100x slower
# than one (measured on a 2-core machine at load 12). A short spin keeps the
# fast path when the team runs together and yields the core when it does
# not. libgomp reads this when it loads, so it is set before the engine is
# imported, and only when the user has set neither variable.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"

from . import errors  # noqa: F401  (the C engine looks its exception classes up here)
from .errors import *  # noqa: F401,F403
from .engine.model import Model, load  # noqa: F401

__version__ = "0.1.0"
