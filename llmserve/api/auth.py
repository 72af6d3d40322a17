"""Bearer-key guard for /v1 (and /metrics on request): on only when some API key is configured.

The accepted keys are ``[server] api_key``, ``api_keys`` and the lines of ``api_key_file``, read
once at start. Keys are compared in constant time and never logged: settings mask them, and the
log formatter redacts ``authorization``.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from attrs import field, frozen

from llmserve.config import ServerSettings
from llmserve.errors import AuthenticationFailed, ConfigError

MISSING_KEY = (
    "Missing API key. Provide it in an Authorization header using Bearer auth "
    "(Authorization: Bearer YOUR_KEY)."
)
INCORRECT_KEY = "Incorrect API key provided."
MISSING_X_API_KEY = (
    "Missing API key. Provide it in an x-api-key header (x-api-key: YOUR_KEY) or using Bearer "
    "auth (Authorization: Bearer YOUR_KEY)."
)


@frozen
class KeyRing:
    """The accepted API keys, as bytes; empty: authentication is off."""

    keys: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, authorization: str | None) -> None:
        """Raise AuthenticationFailed unless ``authorization`` is ``Bearer <an accepted key>``."""
        self.check_key(bearer_key(authorization), missing=MISSING_KEY)

    def check_key(self, presented: str | None, *, missing: str) -> None:
        """Raise AuthenticationFailed unless ``presented`` is an accepted key (``missing``
        says how to provide one when it is absent)."""
        if presented is None or not presented.strip():
            raise AuthenticationFailed(missing)
        # Constant-time, on bytes (compare_digest refuses non-ASCII str), and against every key
        # without stopping at a match: the time taken tells nothing about which key, if any.
        candidate = presented.strip().encode()
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            raise AuthenticationFailed(INCORRECT_KEY)


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None if it holds none."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip()


def check_bearer(authorization: str | None, api_key: str) -> None:
    """Raise AuthenticationFailed unless ``authorization`` is ``Bearer <api_key>``."""
    KeyRing((api_key.encode(),)).check(authorization)


def load_keys(server: ServerSettings) -> KeyRing:
    """Every configured key: ``api_key``, ``api_keys``, then ``api_key_file``'s lines.

    The file holds one key a line; blank lines and ``#`` comments are skipped. A missing or
    unreadable file is a ConfigError naming the key (never the file's content).
    """
    keys = [key.strip() for key in (server.api_key, *server.api_keys) if key]
    if server.api_key_file is not None:
        path = Path(server.api_key_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"invalid config: [server] api_key_file = {str(path)!r}: cannot read it: {reason}"
            ) from None
        lines = (line.strip() for line in text.splitlines())
        from_file = [line for line in lines if line and not line.startswith("#")]
        if not from_file:
            raise ConfigError(
                f"invalid config: [server] api_key_file = {str(path)!r}: holds no key"
            )
        keys += from_file
    return KeyRing(tuple(dict.fromkeys(key.encode() for key in keys)))
