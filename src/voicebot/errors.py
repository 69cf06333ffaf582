"""The voicebot error hierarchy: what went wrong, and whether trying again can help.

VoicebotError
├── ConfigError            a setting is wrong or missing; the message names it
│   └── ModelNotFoundError a model file/package is missing; names the setting and package
├── InputError             a file or value given on the command line is unusable
├── DownloadError          `voicebot models pull` could not fetch a model; says what to change
├── ProtocolError          a client broke the WebSocket protocol; carries an error code
└── ProviderError          an STT/LLM/TTS provider failed; `retryable` says if a retry may help
"""

from __future__ import annotations


class VoicebotError(Exception):
    """Base class for every error voicebot raises on purpose."""


class ConfigError(VoicebotError):
    """A configuration value is invalid or missing."""


class ModelNotFoundError(ConfigError):
    """A model the configuration asks for is not installed or not at the configured path."""


class InputError(VoicebotError, ValueError):
    """Input the user handed us (an audio file, a text) that cannot be used as it is."""


class DownloadError(VoicebotError):
    """`voicebot models pull` could not fetch or verify a model (hub unreachable, offline
    mode, a repository or file the hub does not have, a checksum that does not match)."""


class ProtocolError(VoicebotError):
    """A client message that breaks the WebSocket protocol.

    `code` is the machine-readable error code sent to the client in the `error` event.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ProviderError(VoicebotError):
    """A provider (STT, LLM or TTS backend) failed.

    Providers translate their SDK's errors into this at their boundary. `retryable` is
    true for failures that may pass (timeouts, dropped connections, 429, 5xx) and false
    for those that will not without a change (a wrong key, a bad request); whoever
    retries or fails over decides on it.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def is_retryable(error: BaseException) -> bool:
    """Whether trying the same provider again later may help (unknown errors: yes)."""
    if isinstance(error, ProviderError):
        return error.retryable
    cause = error.__cause__
    return is_retryable(cause) if cause is not None else True
