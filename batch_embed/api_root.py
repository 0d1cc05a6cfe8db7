"""The API's root URL: validated once, and the origin every request must stay on.

The key is sent only to the configured root's origin (scheme, host, port), and over plain
http only to a loopback host (the emulator) unless the user allows it explicitly.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_ROOT = "https://api.segmind.com"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_root(url: str, *, allow_insecure_http: bool = False) -> str:
    """Validate the API root and strip a trailing ``/``, ``/v1`` or ``/v2``.

    ``http://`` is accepted only for loopback hosts (the emulator), unless
    ``allow_insecure_http`` is set: anywhere else the key would cross the network in clear.
    """
    root = url.strip().rstrip("/")
    for suffix in ("/v1", "/v2"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    try:
        parts = urlsplit(root)
        parts.port  # noqa: B018 -- raises ValueError on a non-numeric or out-of-range port
    except ValueError as err:
        raise ConfigError(f"base_url: not a valid URL ({err}), got {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"base_url: expected an http(s) URL such as {DEFAULT_ROOT}, got {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("base_url: must not carry credentials, a query or a fragment")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ConfigError(
            f"base_url: plain http is allowed only for loopback addresses, got {url!r}; "
            "use https, or pass allow_insecure_http (--allow-insecure-http) to send the key "
            "unencrypted"
        )
    return root


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``: what must match for the key to be sent there."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a bad port or IPv6 literal: an origin that matches nothing
        return "", "", -1
    return parts.scheme, (parts.hostname or "").lower(), port
