"""ecomlm: small language models on the CPU for e-commerce, with an OpenAI-shaped API.

    import ecomlm
    m = ecomlm.load("all-minilm-l6-v2")     # a registered name or a model directory
    m.embed(["red running shoes"])          # numpy (N, 384)

    import ecomlm as openai                 # code written for OpenAI's SDK, 0.x or v1
    openai.Completion.create(engine="text-davinci-002", prompt="...", max_tokens=50)
    openai.OpenAI().chat.completions.create(model="gpt-4o-mini", messages=[...])
"""

import os as _os

# OpenMP threads that wait at a barrier spin for GOMP_SPINCOUNT iterations
# (libgomp's default: 300000, about a millisecond) before they sleep. A prompt's
# forward crosses hundreds of libgomp's barriers, and when the cores are shared
# with other processes the thread being waited for is often descheduled: each
# barrier then costs a whole scheduler slice, and two threads ran 50-100x
# slower than one (measured on a 2-core machine at load 12). A short spin
# keeps the fast path when the team runs together and yields the core when it
# does not. (A decode step runs in one parallel region with barriers of its
# own, csrc/team.c, which decide when to spin by themselves; for it this
# setting made no measurable difference between 1000 and 100000.) libgomp
# reads this when it loads, so it is set before the engine is imported, and
# only when the user has set neither variable.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.environ["GOMP_SPINCOUNT"] = "1000"

from . import errors  # noqa: F401  (the C engine looks its exception classes up here)
from .errors import *  # noqa: F401,F403
from .engine.model import Model, load  # noqa: F401

__version__ = "0.1.0"

from . import error  # noqa: E402,F401  (openai.error.InvalidRequestError of the 0.x SDK)
from .api import (AsyncOpenAI, ChatCompletion, Completion, Embedding, File, FineTune, FineTuningJob,  # noqa: E402,F401
                  OpenAI, OpenAIObject)
from .api.legacy import model_list as _model_list, model_retrieve as _model_retrieve  # noqa: E402

# `ecomlm.Model` is the engine's class (what `ecomlm.load` returns) and also the
# 0.x SDK's `openai.Model`: the two class methods below are bound here, at the
# package root, so the engine layer itself knows nothing of the API above it.
Model.list = classmethod(_model_list)
Model.retrieve = classmethod(_model_retrieve)

# the 0.x SDK's module settings: accepted and ignored (nothing leaves the machine)
api_key = None
api_key_path = None
api_base = "local"
api_type = "open_ai"
api_version = None
organization = None
proxy = None
