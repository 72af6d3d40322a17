"""The one error tree of llmserve.

Every error a user can see is an ``LLMServeError``; the HTTP layer maps it to an OpenAI error
envelope ``{"error": {"message", "type", "param", "code"}}`` in one exception handler, and the
CLI prints its message as one line.

::

    LLMServeError                      500 server_error
    ├── InvalidRequest                 400 invalid_request_error
    │   └── ContextLengthExceeded      400 invalid_request_error / context_length_exceeded
    ├── AuthenticationFailed           401 authentication_error / invalid_api_key
    ├── NotFound                       404 invalid_request_error / not_found
    │   └── ModelNotFound              404 invalid_request_error / model_not_found
    ├── EngineOverloaded               429 rate_limit_error / engine_overloaded (Retry-After)
    ├── ServiceUnavailable             503 server_error / service_unavailable
    ├── ConfigError                    start-up: invalid configuration (names the key)
    └── ModelLoadError                 start-up: the model cannot be loaded
"""

from __future__ import annotations


class LLMServeError(Exception):
    """Base of every error llmserve reports to a user."""

    status: int = 500
    type: str = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def envelope(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(LLMServeError):
    """The request is malformed or asks for something impossible."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class ContextLengthExceeded(InvalidRequest):
    """Prompt plus max_tokens does not fit the model's context."""

    code = "context_length_exceeded"

    def __init__(self, *, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
            f"{max_tokens} for the completion). Please reduce the prompt or max_tokens.",
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx


class AuthenticationFailed(LLMServeError):
    """Missing or wrong API key."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(LLMServeError):
    """No such route or resource."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    """The requested model is not served here."""

    code = "model_not_found"


class EngineOverloaded(LLMServeError):
    """Every slot is busy and the wait queue is full."""

    status = 429
    type = "rate_limit_error"
    code = "engine_overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(LLMServeError):
    """The server is loading, draining or shutting down."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class ConfigError(LLMServeError):
    """The configuration is invalid; the message names the key."""

    code = "invalid_config"


class ModelLoadError(LLMServeError):
    """The model file cannot be loaded."""

    code = "model_load_failed"
