"""The exception tree of batch_embed.

Every error raised by the package derives from :class:`BatchEmbedError`::

    BatchEmbedError
    ├── ConfigError                  a bad setting; names the argument
    ├── InputError                   a bad input file (file-level; names file, line/row, field)
    ├── JournalLocked                another run holds the output's journal
    ├── WriteFailed                  a file of the run could not be written (disk full, EIO...)
    └── ApiError                     one failed exchange with the API
        ├── TransportError           no usable HTTP answer
        │   ├── RequestTimeout       the request timed out
        │   └── ConnectionDropped    the connection broke (the request may have been sent)
        ├── HttpError                an HTTP error status with a non-terminal body
        │   ├── BadRequest           400: bad parameters (the row is at fault; never retried)
        │   ├── AuthError            401: missing or invalid key
        │   ├── Forbidden            403
        │   ├── NotFound             404: unknown model, or unknown/expired request_id
        │   ├── InsufficientCredits  406
        │   ├── RateLimited          429: carries ``retry_after`` when the server sent one
        │   └── ServerError          5xx (500, 502, 504, ...)
        ├── JobFailed                the job ended FAILED (HTTP 422); ``detail`` is Segmind's text
        ├── MalformedResponse        a body we cannot use: not JSON, fields missing
        │   ├── ForeignOrigin        a job URL off the configured origin (never followed)
        │   └── AnswerTooLarge       a body over the answer cap (``cap``), left unread
        └── BadVector                an output we cannot turn into a valid vector

Attributes carry the facts (``status``, ``request_id``, ``retry_after``, ``detail``,
``body_excerpt``), so no caller ever parses a message string. No message or attribute
ever holds the API key: the client never passes it to an exception.
"""

from __future__ import annotations

BODY_EXCERPT_CHARS = 200


def excerpt(body: str | bytes, limit: int = BODY_EXCERPT_CHARS) -> str:
    """Return the first ``limit`` characters of a body, decoded leniently, for messages."""
    if isinstance(body, bytes):
        body = body[: limit * 4].decode("utf-8", errors="replace")
    return body[:limit]


class BatchEmbedError(Exception):
    """Base class of every error batch_embed raises."""


class ConfigError(BatchEmbedError, ValueError):
    """A setting is invalid; the message names the argument and the accepted values."""


class InputError(BatchEmbedError):
    """An input file cannot be used as a whole (missing, unreadable, wrong format or schema).

    ``path`` names the file; ``location`` (``"line 12"``, ``"row 3"``) and ``field`` are set
    when the problem has a place inside it.
    """

    def __init__(
        self, message: str, *, path: str, location: str | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.location = location
        self.field = field
        where = path if location is None else f"{path}, {location}"
        if field is not None:
            where = f"{where}, field {field!r}"
        super().__init__(f"{where}: {message}")
        self.reason = message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields: the default (args-only) pickle could not rebuild it, and a
        # Ray worker's InputError must reach the driver whole.
        return _input_error, (self.reason, self.path, self.location, self.field)


def _input_error(reason: str, path: str, location: str | None, field: str | None) -> InputError:
    return InputError(reason, path=path, location=location, field=field)


class JournalLocked(BatchEmbedError):
    """Another live run holds the lock on this output's journal."""


class WriteFailed(BatchEmbedError):
    """A file the run writes (journal, part, output, errors, summary) could not be written.

    ``path`` names the file, ``reason`` the operating system's (or SQLite's) words, such as
    "No space left on device" or "database or disk is full".
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"could not write {path}: {reason}")
        self.path = path
        self.reason = reason


class ApiError(BatchEmbedError):
    """One failed exchange with the Segmind API.

    ``status`` is the HTTP status (``None`` when no answer came), ``request_id`` the job it
    concerns (``None`` for a submit), ``retry_after`` the server's requested delay in seconds
    (``None`` when not sent), ``detail`` the server's error text, ``body_excerpt`` the first
    200 characters of the body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.detail = detail
        self.body_excerpt = body_excerpt

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self)!r}, status={self.status!r}, "
            f"request_id={self.request_id!r}, retry_after={self.retry_after!r})"
        )


class TransportError(ApiError):
    """No usable HTTP answer arrived."""


class RequestTimeout(TransportError):
    """The request did not complete within its timeout (it may have reached the server)."""


class ConnectionDropped(TransportError):
    """The connection failed or broke; ``maybe_sent`` tells whether the server may have acted."""

    def __init__(self, message: str, *, maybe_sent: bool = True, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.maybe_sent = maybe_sent


class HttpError(ApiError):
    """An HTTP error status whose body names no terminal job state."""


class BadRequest(HttpError):
    """400: the request's parameters were rejected."""


class AuthError(HttpError):
    """401: the API key is missing or invalid."""


class Forbidden(HttpError):
    """403: the key may not use this model or endpoint."""


class NotFound(HttpError):
    """404: unknown model or endpoint, or an unknown or expired request_id."""


class InsufficientCredits(HttpError):
    """406: the account's credits are spent."""


class RateLimited(HttpError):
    """429: too many requests; ``retry_after`` holds the server's delay when it sent one."""


class ServerError(HttpError):
    """5xx: the gateway or the model failed; worth retrying."""


class JobFailed(ApiError):
    """The job ended FAILED (served as HTTP 422); ``detail`` holds Segmind's error text."""


class MalformedResponse(ApiError):
    """The body cannot be used: not JSON, not an object, or required fields missing."""


class ForeignOrigin(MalformedResponse):
    """A status or response URL points off the configured origin; it is never followed."""


class AnswerTooLarge(MalformedResponse):
    """An answer's body is longer than ``cap`` bytes (counted after decompression).

    Reading stopped at the cap, so the rest was never read nor inflated. Retried as any
    malformed answer is; the message names the cap and the flag that sets it.
    """

    def __init__(self, message: str, *, cap: int, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.cap = cap


class BadVector(ApiError):
    """The job's output is not a valid vector (shape unknown, wrong length, NaN/inf, zeros)."""


STATUS_ERRORS: dict[int, type[HttpError]] = {
    400: BadRequest,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    406: InsufficientCredits,
    429: RateLimited,
}


def http_error_class(status: int) -> type[HttpError]:
    """Map an HTTP status to its exception class (5xx -> ServerError, others -> HttpError)."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    return HttpError
