"""The only module that speaks HTTP to the Segmind v2 API: submit, status, result, credits.

One :class:`SegmindClient` owns one ``aiohttp.ClientSession`` for its whole life, opened and
closed through ``async with``. Every outcome that is not a usable answer becomes a typed
:mod:`~batch_embed.errors` exception carrying ``status``, ``request_id`` and
``retry_after``. The key travels only in ``x-api-key``, only to the configured root's
origin: a ``status_url`` or ``response_url`` elsewhere is refused, never followed. The key
never appears in a repr, a log line or an exception (server text is scrubbed of it too).
Every answer's body is read up to ``max_answer_bytes`` (after decompression) and no further
(:mod:`batch_embed.answer_body`): a longer one is an :class:`~batch_embed.errors.AnswerTooLarge`.

Retrying is not done here: the stages decide with :mod:`batch_embed.retry`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from . import errors
from .answer_body import DEFAULT_MAX_ANSWER_BYTES, MIN_MAX_ANSWER_BYTES, read_capped
from .api_root import DEFAULT_ROOT, normalize_root, origin
from .errors import ConfigError, excerpt
from .models import DEFAULT_MODEL, ModelSpec, model_spec
from .records import JobHandle, JobState, JobStatus
from .retry import parse_retry_after
from .vectors import Vector, fast_vector, parse_output, shorten

API_KEY_ENV = "SEGMIND_API_KEY"
_TERMINAL = frozenset({"COMPLETED", "FAILED"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Per-request time limits in seconds (``total`` bounds the whole exchange)."""

    total: float = 60.0
    connect: float = 10.0
    read: float = 30.0


@dataclass(frozen=True, slots=True)
class Credits:
    """The account's balance as ``GET /v1/get-user-credits`` reports it."""

    credits: float
    free_credits: float


class Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


class _SecretHeaders(dict[str, str]):
    """Request headers built once per client; the repr hides the key's value."""

    def __repr__(self) -> str:
        return repr({k: "<secret>" if k == "x-api-key" else v for k, v in self.items()})

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP exchange as read off the wire, before it is interpreted."""

    method: str
    url: str
    status: int
    raw: bytes
    retry_after: str | None
    location: str | None


def _what(method: str, url: str) -> str:
    """``GET /v2/requests/<id>/status``: how messages name a request (never its host)."""
    return f"{method} {urlsplit(url).path}"


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _scrubbing(
    method: Callable[Concatenate[SegmindClient, _P], Awaitable[_R]],
) -> Callable[Concatenate[SegmindClient, _P], Awaitable[_R]]:
    """Scrub the key from every ApiError leaving a public API method (one choke point)."""

    @functools.wraps(method)
    async def wrapper(self: SegmindClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except errors.ApiError as err:
            self._scrub_error(err)
            raise

    return wrapper


class SegmindClient:
    """Async client for one model on Segmind's v2 queue.

    Use as ``async with SegmindClient(model="text-embedding-3-large") as client:``;
    ``submit(text)`` returns a :class:`JobHandle`, ``status(job)`` a :class:`JobStatus`,
    ``result(job)`` the float32 vector.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str = DEFAULT_ROOT,
        model: str | ModelSpec = DEFAULT_MODEL,
        timeouts: Timeouts | None = None,
        max_connections: int = 256,
        allow_insecure_http: bool = False,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        if not key:
            raise ConfigError(
                f"api_key: no API key; set {API_KEY_ENV} (or pass api_key=...), "
                "or try the built-in emulator with --emulate"
            )
        if max_connections < 1:
            raise ConfigError(f"max_connections must be >= 1, got {max_connections}")
        if isinstance(max_answer_bytes, bool) or max_answer_bytes < MIN_MAX_ANSWER_BYTES:
            raise ConfigError(
                f"max_answer_bytes must be >= {MIN_MAX_ANSWER_BYTES}, got {max_answer_bytes!r}"
            )
        self.max_answer_bytes = max_answer_bytes
        self._key = Secret(key)
        self.root = normalize_root(base_url, allow_insecure_http=allow_insecure_http)
        self._origin = origin(self.root)
        self._prefix = self.root + "/"
        self._headers = _SecretHeaders({"x-api-key": key})
        self._json_headers = _SecretHeaders({"x-api-key": key, "Content-Type": "application/json"})
        self.model = model if isinstance(model, ModelSpec) else model_spec(model)
        self.timeouts = timeouts or Timeouts()
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SegmindClient(root={self.root!r}, model={self.model.slug!r})"

    async def __aenter__(self) -> SegmindClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the session (called by ``async with``); reopening a closed client fails."""
        if self._closed:
            raise RuntimeError("this SegmindClient is closed; create a new one")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=self.max_connections,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=self.timeouts.total,
                    connect=self.timeouts.connect,
                    # A read limit no shorter than the total adds nothing but a timer reset
                    # for every chunk received.
                    sock_read=self.timeouts.read
                    if self.timeouts.read < self.timeouts.total
                    else None,
                ),
                headers={"User-Agent": "batch-embed", "Accept": "application/json"},
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                raise_for_status=False,
            )

    async def close(self) -> None:
        """Close the session; safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- the API ---------------------------------------------------------------------------

    @_scrubbing
    async def submit(self, text: str) -> JobHandle:
        """``POST /v2/{slug}``: create one job for ``text``; a 2xx without the three ids fails."""
        url = f"{self.root}/v2/{self.model.slug}"
        sent_at = time.time()
        body = await self._call("POST", url, payload=self.model.request_body(text))
        request_id, status_url, response_url = (
            body.get("request_id"),
            body.get("status_url"),
            body.get("response_url"),
        )
        if not all(isinstance(v, str) and v for v in (request_id, status_url, response_url)):
            raise errors.MalformedResponse(
                "submit answered 2xx without request_id/status_url/response_url; "
                f"keys={sorted(body)}",
                body_excerpt=self._excerpt(orjson.dumps(body)),
            )
        assert isinstance(request_id, str) and isinstance(status_url, str)
        assert isinstance(response_url, str)
        for name, target in (("status_url", status_url), ("response_url", response_url)):
            self._check_origin(name, target, request_id)
        return JobHandle(request_id, status_url, response_url, submitted_at=sent_at)

    def handle(self, request_id: str, *, submitted_at: float = 0.0) -> JobHandle:
        """Rebuild a job handle from a request_id alone (used when resuming from a journal)."""
        base = f"{self.root}/v2/requests/{request_id}"
        return JobHandle(request_id, f"{base}/status", base, submitted_at=submitted_at)

    @_scrubbing
    async def status(self, job: JobHandle) -> JobStatus:
        """``GET`` the job's status URL; FAILED (served as 422) is an answer, not an error."""
        body = await self._call("GET", job.status_url, request_id=job.request_id)
        state = self._state(body, job.request_id)
        metrics = body.get("metrics")
        inference_time = metrics.get("inference_time") if isinstance(metrics, dict) else None
        error = body.get("error") if state is JobState.FAILED else None
        return JobStatus(
            state,
            error=self._scrub(str(error)) if error is not None else None,
            inference_time=inference_time if isinstance(inference_time, int | float) else None,
            raw=body,
        )

    @_scrubbing
    async def result(self, job: JobHandle) -> Vector:
        """``GET`` the job's response URL once COMPLETED; return its vector as float32.

        Raises JobFailed when the body says FAILED, BadVector when the output is unusable,
        MalformedResponse when the job is not finished.
        """
        answer = await self._exchange("GET", job.response_url, request_id=job.request_id)
        if 200 <= answer.status < 300:
            vector = fast_vector(answer.raw, dim=self.model.answer_dim)
            if vector is not None:
                return self._fit(vector, job.request_id)
        body = self._interpret(answer, request_id=job.request_id)
        state = self._state(body, job.request_id)
        if state is JobState.FAILED:
            detail = self._scrub(str(body.get("error") or "job FAILED"))
            raise errors.JobFailed(
                f"job {job.request_id} FAILED: {detail}",
                status=422,
                request_id=job.request_id,
                detail=detail,
            )
        if state is not JobState.COMPLETED:
            raise errors.MalformedResponse(
                f"result of {job.request_id} requested while {state.value}",
                request_id=job.request_id,
            )
        if "output" not in body:
            raise errors.BadVector(
                f"result of {job.request_id} has no output",
                request_id=job.request_id,
                body_excerpt=self._excerpt(orjson.dumps(body)),
            )
        output = body["output"]
        try:
            vector = parse_output(output, dim=self.model.answer_dim, request_id=job.request_id)
        except errors.BadVector as err:
            # parse_output quotes the output; scrub the whole of it before the 200-char cut.
            raw = output if isinstance(output, str | bytes) else orjson.dumps(output, default=str)
            shown = self._excerpt(raw)
            raise errors.BadVector(
                f"{err.detail}: {shown}",
                request_id=job.request_id,
                detail=err.detail,
                body_excerpt=shown,
            ) from None
        return self._fit(vector, job.request_id)

    def _fit(self, vector: Vector, request_id: str) -> Vector:
        """The vector at the asked dimensions: as answered, or shortened and renormalised."""
        if self.model.dimensions is None:
            return vector
        return shorten(vector, self.model.output_dim, request_id=request_id)

    @_scrubbing
    async def credits(self) -> Credits:
        """``GET /v1/get-user-credits``: the account's remaining balance."""
        body = await self._call("GET", f"{self.root}/v1/get-user-credits")
        try:
            return Credits(float(body["credits"]), float(body.get("free-credits", 0.0)))
        except (KeyError, TypeError, ValueError):
            raise errors.MalformedResponse(
                "credits answer lacks a numeric 'credits'",
                body_excerpt=self._excerpt(orjson.dumps(body)),
            ) from None

    # -- one exchange ----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        url: str,
        *,
        payload: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Send one request; return its JSON object body or raise the typed error."""
        answer = await self._exchange(method, url, payload=payload, request_id=request_id)
        return self._interpret(answer, request_id=request_id)

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        payload: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> _Answer:
        """Send one request and read its answer (up to the cap); transport failures become
        typed errors, a body over ``max_answer_bytes`` an AnswerTooLarge."""
        if self._session is None:
            raise RuntimeError("SegmindClient is not open; use 'async with SegmindClient(...)'")
        self._check_origin("url", url, request_id)
        data = None
        headers = self._headers
        if payload is not None:
            data = orjson.dumps(payload)
            headers = self._json_headers
        try:
            # Redirects are never followed: aiohttp would carry x-api-key to any origin.
            async with self._session.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as resp:
                try:
                    raw = await read_capped(
                        resp, self.max_answer_bytes, what=_what(method, url), request_id=request_id
                    )
                except errors.AnswerTooLarge as err:
                    err.status = resp.status  # a 2xx submit answer that is too large: paid
                    raise
                return _Answer(
                    method,
                    url,
                    resp.status,
                    raw,
                    resp.headers.get("Retry-After"),
                    resp.headers.get("Location"),
                )
        except TimeoutError as err:
            raise errors.RequestTimeout(
                f"{_what(method, url)}: timed out", request_id=request_id
            ) from err
        except aiohttp.ClientConnectorError as err:
            raise errors.ConnectionDropped(
                f"{_what(method, url)}: could not connect ({type(err).__name__})",
                maybe_sent=False,
                request_id=request_id,
            ) from err
        except (aiohttp.ClientError, ConnectionError) as err:
            raise errors.ConnectionDropped(
                f"{_what(method, url)}: connection dropped ({type(err).__name__})",
                maybe_sent=True,
                request_id=request_id,
            ) from err

    def _interpret(self, answer: _Answer, *, request_id: str | None) -> dict[str, Any]:
        """The JSON object body of an answer, or the typed error it means.

        A body naming a terminal job state is a valid answer whatever the HTTP status
        (Segmind serves FAILED with 422).
        """
        raw, status = answer.raw, answer.status
        body: Any
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            # Python providers write NaN/Infinity literals, which orjson refuses: parse them so
            # the result is a per-row BadVector, not a malformed (retried) answer.
            try:
                body = json.loads(raw, parse_int=float)  # no ints orjson cannot re-dump
            except (ValueError, RecursionError):
                body = None
        if isinstance(body, dict) and body.get("status") in _TERMINAL:
            return body
        what = _what(answer.method, answer.url)
        if 200 <= status < 300:
            if isinstance(body, dict):
                return body
            raise errors.MalformedResponse(
                f"{what}: HTTP {status} with a body that is not a JSON object: "
                f"{self._excerpt(raw)!r}",
                status=status,
                request_id=request_id,
                body_excerpt=self._excerpt(raw),
            )
        if 300 <= status < 400:
            target = self._excerpt(answer.location or "")
            raise errors.ForeignOrigin(
                f"{what}: HTTP {status} redirect to {target!r} not followed: the key is sent "
                f"only to {self.root!r}",
                request_id=request_id,
            )
        detail = None
        if isinstance(body, dict) and body.get("error") is not None:
            detail = self._scrub(str(body["error"]))
        shown = self._excerpt(raw)
        cls = errors.http_error_class(status)
        retry_after = parse_retry_after(answer.retry_after, now=time.time())
        reason = detail if detail is not None else (shown or "no body")
        raise cls(
            f"{what}: HTTP {status}: {reason}",
            status=status,
            request_id=request_id,
            retry_after=retry_after,
            detail=detail,
            body_excerpt=shown,
        )

    def _check_origin(self, name: str, url: str, request_id: str | None) -> None:
        # Under the root itself (the common case) needs no URL parsing.
        if not url.startswith(self._prefix) and origin(url) != self._origin:
            raise errors.ForeignOrigin(
                f"{name} {url!r} is not on the API origin {self.root!r}; refusing to send the "
                "key there",
                request_id=request_id,
            )

    def _state(self, body: dict[str, Any], request_id: str) -> JobState:
        value = body.get("status")
        try:
            return JobState(value)
        except ValueError:
            raise errors.MalformedResponse(
                f"job {request_id} has an unknown status {value!r}",
                request_id=request_id,
                body_excerpt=self._excerpt(orjson.dumps(body, default=str)),
            ) from None

    def _excerpt(self, raw: str | bytes) -> str:
        """The first 200 characters of a body, scrubbed of the key before the cut."""
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        return excerpt(self._scrub(text))

    def _scrub_error(self, err: errors.ApiError) -> None:
        """Remove the key from an error's message and attributes, in place."""
        err.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in err.args)
        if err.detail is not None:
            err.detail = self._scrub(err.detail)
        if err.request_id is not None:
            err.request_id = self._scrub(err.request_id)
        err.body_excerpt = self._scrub(err.body_excerpt)

    def _scrub(self, text: str) -> str:
        """Remove the key from server-provided text before it can reach a message or file."""
        key = self._key.value
        return text.replace(key, "<secret>") if key and key in text else text
