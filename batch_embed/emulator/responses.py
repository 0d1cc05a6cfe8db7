"""Answers the emulator sends: JSON bodies, proxy-style HTML errors, dropped connections."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from email.utils import formatdate

import orjson
from aiohttp import web

from .limits import retry_after_seconds

DROPPED_KEY = web.RequestKey("batch_embed_emulator_dropped", bool)
"""Request key set when the connection was dropped instead of answered."""

_JSON_HEADERS = {"Content-Type": "application/json"}

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}

_ERROR_MESSAGES = {
    500: "Internal server error",
    502: "Bad gateway: service temporarily unavailable",
    504: "Gateway timeout: the request timed out",
}

INJECTED_STATUSES = (500, 502, 504)


def json_response(
    status: int, body: bytes, *, headers: dict[str, str] | None = None
) -> web.Response:
    """A response with an already serialized JSON body."""
    all_headers = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
    return web.Response(status=status, body=body, headers=all_headers)


def error_response(
    status: int, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """The API's error answer: ``{"error": message}``."""
    return json_response(status, orjson.dumps({"error": message}), headers=headers)


def html_error_response(status: int) -> web.Response:
    """A 5xx page as a reverse proxy in front of the API would send it."""
    reason = _REASONS.get(status, "Server Error")
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def server_error(status: int, *, html: bool) -> web.Response:
    """An injected 5xx, as JSON or as a proxy's HTML page."""
    if html:
        return html_error_response(status)
    return error_response(status, _ERROR_MESSAGES.get(status, "Server error"))


def drop(request: web.Request) -> web.Response:
    """Abort the connection: the client gets no answer at all (a disconnect).

    The returned response is never written: aiohttp ignores the write to the aborted
    transport quietly.
    """
    request[DROPPED_KEY] = True
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=499)


def retry_after(
    wait: float,
    rng: random.Random,
    date_rate: float,
    wall_clock: Callable[[], float] = time.time,
) -> str:
    """A ``Retry-After`` value for a wait: whole seconds rounded up, or an HTTP-date.

    The date is rounded up to the next whole second so it never promises a slot too early.
    """
    seconds = retry_after_seconds(wait)
    if date_rate and rng.random() < date_rate:
        return formatdate(math.ceil(wall_clock() + wait), usegmt=True)
    return str(seconds)
