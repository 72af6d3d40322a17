"""The one error tree of llmserve.

Every error a user can see is an ``LLMServeError``; the HTTP layer maps it to an OpenAI error
envelope ``{"error": {"message", "type", "param", "code"}}`` in one exception handler, and the
CLI prints its message as one line.

::

    LLMServeError                      500 server_error
    ├── InvalidRequest                 400 invalid_request_error
    │   ├── ContextLengthExceeded      400 invalid_request_error / context_length_exceeded
    │   └── PromptTooLong              400 ... / context_length_exceeded (seen untokenized)
    ├── AuthenticationFailed           401 authentication_error / invalid_api_key
    ├── NotFound                       404 invalid_request_error / not_found
    │   └── ModelNotFound              404 invalid_request_error / model_not_found
    ├── TooManyRequests                429 rate_limit_error (Retry-After)
    │   ├── EngineOverloaded           429 rate_limit_error / engine_overloaded
    │   └── RateLimitExceeded          429 rate_limit_error / rate_limit_exceeded
    ├── ServiceUnavailable             503 server_error / service_unavailable
    │   └── InsufficientMemory         503 server_error / insufficient_memory (start: exit 2)
    ├── ConfigError                    start-up: invalid configuration (names the key)
    ├── ModelLoadError                 start-up: the model cannot be loaded
    └── ModelStoreError                pull / models / start-up: the Hub and the model store
        ├── LocalModelNotFound         no model of that name in the store
        ├── HubRepoNotFound            no such repository or revision (or private, no token)
        ├── HubAccessDenied            gated or private: HF_TOKEN missing or without access
        ├── NoMatchingFile             no GGUF in the repository matches the pattern
        ├── AmbiguousFile              several GGUFs match; the message lists them
        ├── UnsafeFileName             a repository file name would escape the model store
        ├── DownloadFailed             network or Hub failure; a partial download is kept
        ├── DiskFull                   not enough space; a partial download is kept
        └── ChecksumMismatch           the bytes are not the Hub's; the bad file is removed
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


class PromptTooLong(InvalidRequest):
    """The prompt text alone is longer than the context, as seen without tokenizing it."""

    code = "context_length_exceeded"

    def __init__(self, *, at_least_tokens: int, n_ctx: int, param: str) -> None:
        super().__init__(
            f"This model's maximum context length is {n_ctx} tokens. However, your prompt is "
            f"at least {at_least_tokens} tokens long. Please reduce the prompt.",
            param=param,
        )


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


class TooManyRequests(LLMServeError):
    """Not now: the client may retry after ``retry_after_s`` seconds."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineOverloaded(TooManyRequests):
    """Every slot is busy and the wait queue is full."""

    code = "engine_overloaded"


class RateLimitExceeded(TooManyRequests):
    """This client sent more requests than ``[server] rate_limit_rpm`` allows."""

    code = "rate_limit_exceeded"


class ServiceUnavailable(LLMServeError):
    """The server is loading, draining or shutting down."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class InsufficientMemory(ServiceUnavailable):
    """The configuration, or one more model, would not fit the memory limit.

    A 503 like the other "not now" server conditions, not 507 (WebDAV's "cannot store the
    representation"): at run time the load fits again once a busy model goes idle and unloads,
    and clients already retry a 503. At start it is a configuration error (exit status 2).
    """

    code = "insufficient_memory"
    PREFIX = "Resource error: Insufficient memory: "

    def __init__(self, detail: str) -> None:
        super().__init__(self.PREFIX + detail)


class ConfigError(LLMServeError):
    """The configuration is invalid; the message names the key."""

    code = "invalid_config"


class ModelLoadError(LLMServeError):
    """The model file cannot be loaded."""

    code = "model_load_failed"


class ModelStoreError(LLMServeError):
    """Downloading from the Hugging Face Hub or using the local model store failed."""

    code = "model_store_error"


class LocalModelNotFound(ModelStoreError):
    """No model of that name in the local store."""

    code = "local_model_not_found"


class HubRepoNotFound(ModelStoreError):
    """The Hub has no such repository or revision (a private one looks missing without a token)."""

    code = "hub_repo_not_found"


class HubAccessDenied(ModelStoreError):
    """The repository is gated or private and the token is missing or has no access."""

    code = "hub_access_denied"


class NoMatchingFile(ModelStoreError):
    """No GGUF file of the repository matches the pattern."""

    code = "no_matching_file"


class AmbiguousFile(ModelStoreError):
    """Several GGUF models match; the message lists them."""

    code = "ambiguous_file"


class UnsafeFileName(ModelStoreError):
    """A repository file name would land outside the model store (``../``, absolute)."""

    code = "unsafe_file_name"


class DownloadFailed(ModelStoreError):
    """The download broke off (network, Hub); what arrived is kept to resume from."""

    code = "download_failed"


class DiskFull(ModelStoreError):
    """The model store's disk has no room for the download; what arrived is kept."""

    code = "disk_full"


class ChecksumMismatch(ModelStoreError):
    """The downloaded file's hash differs from the one the Hub published; it was removed."""

    code = "checksum_mismatch"
