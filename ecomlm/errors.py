"""Exceptions raised by ecomlm, shaped like OpenAI's.

Both generations of the OpenAI SDK are mirrored: the v1 names
(``BadRequestError``, ``NotFoundError``, ...) and the 0.x names
(``InvalidRequestError``, ``openai.error.*``). Every class carries
``message``, ``param`` (the offending field, when one is to blame), ``code``
and ``http_status``, so the HTTP server can answer with the same JSON body
OpenAI sends. Errors about bad input also subclass the matching Python
built-in (``ValueError``, ``LookupError``), so plain Python code can catch
them without knowing ecomlm.
"""

from __future__ import annotations

__all__ = [
    "OpenAIError", "APIError", "APIStatusError", "APIConnectionError", "APITimeoutError",
    "Timeout", "BadRequestError", "InvalidRequestError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "ConflictError", "UnprocessableEntityError",
    "RateLimitError", "InternalServerError", "ModelFormatError", "ServiceUnavailableError",
]


class OpenAIError(Exception):
    """Base class of every ecomlm error."""

    http_status: int = 500
    default_type: str = "api_error"

    def __init__(self, message: str = "", param: str | None = None, code: str | None = None,
                 http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if http_status is not None:
            self.http_status = http_status

    @property
    def status_code(self) -> int:  # the v1 SDK's name for it
        return self.http_status

    @property
    def body(self) -> dict:
        return self.to_dict()["error"]

    def to_dict(self) -> dict:
        """The JSON error body OpenAI's HTTP API returns."""
        return {"error": {"message": self.message, "type": self.default_type,
                          "param": self.param, "code": self.code}}

    def __str__(self) -> str:
        return self.message


class APIError(OpenAIError):
    """The engine failed (out of memory, I/O): not the caller's fault."""


class APIStatusError(APIError):
    pass


class APIConnectionError(APIError):
    default_type = "connection_error"


class APITimeoutError(APIConnectionError):
    default_type = "timeout"


Timeout = APITimeoutError


class BadRequestError(APIStatusError, ValueError):
    """An argument or input is invalid (HTTP 400)."""

    http_status = 400
    default_type = "invalid_request_error"


InvalidRequestError = BadRequestError  # the 0.x SDK's name


class ModelFormatError(BadRequestError):
    """A model file is malformed, truncated or hostile."""

    def __init__(self, message: str = "", param: str | None = None, code: str | None = "invalid_model_file",
                 http_status: int | None = None):
        super().__init__(message, param, code, http_status)


class AuthenticationError(APIStatusError):
    http_status = 401
    default_type = "authentication_error"


class PermissionDeniedError(APIStatusError):
    http_status = 403
    default_type = "permission_error"


class NotFoundError(APIStatusError, LookupError):
    """A model, file, job or tensor does not exist (HTTP 404)."""

    http_status = 404
    default_type = "invalid_request_error"


class ConflictError(APIStatusError):
    http_status = 409


class UnprocessableEntityError(APIStatusError):
    http_status = 422


class RateLimitError(APIStatusError):
    http_status = 429
    default_type = "rate_limit_error"


class InternalServerError(APIStatusError):
    http_status = 500


class ServiceUnavailableError(APIStatusError):
    http_status = 503
