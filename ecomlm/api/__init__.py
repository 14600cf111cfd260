"""The OpenAI-shaped surface over the engine: response objects, the 0.x
module-level calls, the v1 client, and the model table they share.

The HTTP server (``ecomlm.server``) calls the same ``create_*`` functions with
the JSON body, so in-process calls and HTTP calls are checked and answered alike.
"""

from .chat import create_chat_completion
from .client import AsyncOpenAI, OpenAI
from .completions import create_completion
from .embeddings import create_embedding
from .files import create_file, delete_file, file_content, list_files, retrieve_file
from .fine_tuning import cancel_job, create_job, list_events, list_jobs, resume_jobs, retrieve_job
from .legacy import ChatCompletion, Completion, Embedding, File, FineTune, FineTuningJob
from .models import (Limits, close_all, delete_model, get_model, list_models, register_model, retrieve_model,
                     unregister_model)
from .objects import OpenAIObject

__all__ = ["OpenAI", "AsyncOpenAI", "Completion", "ChatCompletion", "Embedding", "File", "FineTune",
           "FineTuningJob", "OpenAIObject", "Limits", "register_model", "unregister_model", "get_model",
           "list_models", "retrieve_model", "delete_model", "close_all", "create_completion",
           "create_chat_completion", "create_embedding", "create_file", "retrieve_file", "list_files",
           "delete_file", "file_content", "create_job", "retrieve_job", "list_jobs", "cancel_job", "list_events",
           "resume_jobs"]
