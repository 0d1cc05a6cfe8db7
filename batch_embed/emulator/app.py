"""The aiohttp application: v2 queue, v1 sync and credits endpoints, plus control endpoints.

Every API request passes one gate, in this order: slow answer (``slow_rate``), dropped
connection (``drop_rate``), random 5xx (``error_rate``), 401 (key), 429 (limits; only
accepted requests count), then the endpoint itself (400/404/406/422 and its answer).
``/_emulator/*`` endpoints skip the gate: no key, no faults, not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..models import MODELS, ModelSpec
from .config import EmulatorConfig
from .jobs import Job, JobState
from .markers import BLOCKED_ERROR, Markers, parse_markers
from .output import render_provider_json, render_result_body
from .responses import (
    DROPPED_KEY,
    INJECTED_STATUSES,
    drop,
    error_response,
    json_response,
    retry_after,
    server_error,
)
from .state import Clock, EmulatorState
from .vectors import exceeds_tokens, text_digest

STATE_KEY = web.AppKey("batch_embed_emulator_state", EmulatorState)
"""Where the app keeps its :class:`EmulatorState`."""

UNLIMITED_CREDITS = 1_000_000.0
"""The balance ``/v1/get-user-credits`` reports when credits are unlimited."""

MAX_BODY_BYTES = 16 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(config: EmulatorConfig, *, clock: Clock = time.monotonic) -> web.Application:
    """Build the emulator's application; ``clock`` drives job states, expiry and limits."""
    state = EmulatorState(config, clock)
    api = _Api(state)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    router = app.router
    router.add_get("/_emulator/stats", api.stats)
    router.add_post("/_emulator/config", api.set_config)
    router.add_post("/_emulator/reset-stats", api.reset_stats)
    router.add_get("/v1/get-user-credits", api.gate("credits", api.credits))
    router.add_get("/v2/requests/{request_id}/status", api.gate("status", api.status))
    router.add_get("/v2/requests/{request_id}", api.gate("result", api.result))
    router.add_get("/v1/requests/{request_id}", api.gate("poll", api.status))
    router.add_post("/v2/{slug}", api.gate("submit", api.submit))
    router.add_post("/v1/{slug}", api.gate("sync", api.sync))
    router.add_route("*", "/{tail:.*}", api.not_found)
    return app


def _light_body(job: Job, state: JobState) -> bytes:
    """The status body: state, id and metrics, never the output."""
    if state is JobState.QUEUED:
        metrics: dict[str, float] = {}
    elif state is JobState.PROCESSING:
        metrics = {"queue_time": round(job.started - job.submitted, 4)}
    else:
        metrics = {
            "queue_time": round(job.started - job.submitted, 4),
            "inference_time": round(job.finished - job.started, 4),
        }
    return orjson.dumps({"status": state.value, "request_id": job.request_id, "metrics": metrics})


def _failed_response(job: Job) -> web.Response:
    body = {"status": "FAILED", "request_id": job.request_id, "error": job.error}
    return json_response(422, orjson.dumps(body))


def _not_found(request_id: str) -> web.Response:
    return error_response(404, f"Request not found or expired: {request_id}")


class _Api:
    """The request handlers, sharing one :class:`EmulatorState`."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def gate(self, endpoint: str, handler: Handler) -> Handler:
        """Wrap ``handler`` in the faults, auth and limits every API request goes through."""
        state = self.state

        async def gated(request: web.Request) -> web.StreamResponse:
            response = await self._pass_gate(endpoint, request)
            if response is None:
                response = await handler(request)
            status: int | str = "dropped" if DROPPED_KEY in request else response.status
            state.stats.answered(endpoint, status)
            return response

        return gated

    async def _pass_gate(self, endpoint: str, request: web.Request) -> web.StreamResponse | None:
        """The answer that stops ``request`` before its endpoint, or None to go on."""
        state = self.state
        config = state.config
        rng = state.fault_rng
        if config.slow_rate and rng.random() < config.slow_rate:
            state.stats.faults["slow"] += 1
            await asyncio.sleep(rng.uniform(*config.slow))
            config = state.config
        if config.drop_rate and rng.random() < config.drop_rate:
            state.stats.faults["drop"] += 1
            return drop(request)
        if config.error_rate and rng.random() < config.error_rate:
            return self._injected_error()
        key = request.headers.get("x-api-key")
        if not key:
            return error_response(401, "Unauthorized: missing x-api-key header")
        if config.api_key is not None and key != config.api_key:
            return error_response(401, "Unauthorized: invalid API key")
        full = state.limit_wait(endpoint, state.clock())
        if full is not None:
            name, wait = full
            state.stats.rate_limited[name] += 1
            headers = None
            if rng.random() < config.retry_after_rate:
                headers = {
                    "Retry-After": retry_after(wait, rng, config.retry_after_date_rate),
                }
            return error_response(
                429, f"Rate limit exceeded ({name} requests): too many requests", headers=headers
            )
        return None

    def _injected_error(self) -> web.Response:
        """A random 500/502/504, JSON or (``html_error_rate``) a proxy's HTML page."""
        state = self.state
        rng = state.fault_rng
        status = rng.choice(INJECTED_STATUSES)
        html = rng.random() < state.config.html_error_rate
        state.stats.faults["error"] += 1
        if html:
            state.stats.faults["error_html"] += 1
        return server_error(status, html=html)

    async def _read_text(
        self, request: web.Request
    ) -> tuple[ModelSpec, str, Markers, int | None] | web.Response:
        """Validate a submit: the model, the JSON body, its text field and Gemini's
        ``output_dimensionality`` (400/404/413)."""
        slug = request.match_info["slug"]
        spec = MODELS.get(slug)
        if spec is None:
            return error_response(404, f"Model not found: {slug}")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "Request body too large")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error_response(400, "Invalid JSON body")
        field = spec.text_field
        if not isinstance(body, dict):
            return error_response(400, "Invalid request: the body must be a JSON object")
        if field not in body:
            return error_response(400, f"Missing required parameter: '{field}'")
        text = body[field]
        if not isinstance(text, str):
            return error_response(400, f"Invalid parameter '{field}': expected a string")
        if not text:
            return error_response(400, f"Invalid parameter '{field}': must not be empty")
        tokens = exceeds_tokens(text, spec.max_tokens)
        if tokens is not None:
            return error_response(
                400,
                f"Invalid parameter '{field}': {tokens} tokens, the maximum is "
                f"{spec.max_tokens} tokens",
            )
        cut: int | None = None
        if spec.dimensions_field is not None and spec.dimensions_field in body:
            cut = body[spec.dimensions_field]
            if (
                isinstance(cut, bool)
                or not isinstance(cut, int)
                or not spec.min_dimensions <= cut <= spec.dim
            ):
                return error_response(
                    400,
                    f"Invalid parameter '{spec.dimensions_field}': expected an integer from "
                    f"{spec.min_dimensions} to {spec.dim}",
                )
        markers = parse_markers(text)
        if markers.fail_submit is not None:
            return error_response(markers.fail_submit, "Injected failure ([[fail-submit]] marker)")
        if not self.state.can_afford():
            return error_response(406, "Insufficient credits: please top up your account")
        return spec, text, markers, cut

    def _lose_answer(self, request: web.Request) -> web.Response | None:
        """For a billed call: the lost answer (a drop or a 502) with ``lost_submit_rate``."""
        state = self.state
        rng = state.fault_rng
        rate = state.config.lost_submit_rate
        if not rate or rng.random() >= rate:
            return None
        state.stats.faults["lost_submit"] += 1
        if rng.random() < 0.5:
            return drop(request)
        return server_error(502, html=rng.random() < state.config.html_error_rate)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/{slug}``: create a job, answer its id and absolute URLs."""
        checked = await self._read_text(request)
        if isinstance(checked, web.Response):
            return checked
        spec, text, markers, cut = checked
        state = self.state
        digest = text_digest(text)
        job = state.new_job(
            slug=spec.slug, dim=spec.dim, text=text, digest=digest, markers=markers, cut=cut
        )
        state.bill(spec.slug, digest)
        lost = self._lose_answer(request)
        if lost is not None:
            return lost
        state.stats.submits_accepted += 1
        root = f"{request.scheme}://{request.host}"
        request_id = job.request_id
        body = {
            "request_id": request_id,
            "status": "QUEUED",
            "status_url": f"{root}/v2/requests/{request_id}/status",
            "response_url": f"{root}/v2/requests/{request_id}",
            "poll_url": f"{root}/v1/requests/{request_id}",
        }
        return json_response(200, orjson.dumps(body))

    async def status(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2/requests/{id}/status``: the light body; FAILED as 422."""
        state = self.state
        state.stats.polls += 1
        request_id = request.match_info["request_id"]
        now = state.clock()
        job = state.store.get(request_id, now, state.config.retention)
        if job is None or parse_markers(job.text).lost:
            return _not_found(request_id)
        job_state = job.state(now)
        if job_state is JobState.FAILED:
            return _failed_response(job)
        return json_response(200, _light_body(job, job_state))

    async def result(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2/requests/{id}``: the full body once COMPLETED (cached per job)."""
        state = self.state
        state.stats.result_fetches += 1
        request_id = request.match_info["request_id"]
        now = state.clock()
        config = state.config
        job = state.store.get(request_id, now, config.retention)
        if job is None or parse_markers(job.text).lost:
            return _not_found(request_id)
        job_state = job.state(now)
        if job_state is JobState.FAILED:
            return _failed_response(job)
        if job_state is not JobState.COMPLETED:
            return json_response(200, _light_body(job, job_state))
        if now - job.finished >= config.effective_result_ttl:
            return _not_found(request_id)
        shape = config.output_shape
        body = state.store.cached_body(request_id, shape)
        if body is None:
            body = render_result_body(
                request_id=request_id,
                slug=job.slug,
                text=job.text,
                digest=job.digest,
                dim=job.dim,
                cut=job.cut,
                shape=shape,
                bad=job.bad_output,
                inference_time=job.finished - job.started,
            )
            state.store.cache_body(request_id, shape, body)
        return json_response(200, body)

    async def sync(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/{slug}``: wait the latency, answer the model output itself."""
        checked = await self._read_text(request)
        if isinstance(checked, web.Response):
            return checked
        spec, text, markers, cut = checked
        state = self.state
        digest = text_digest(text)
        state.bill(spec.slug, digest)
        state.stats.sync_calls += 1
        blocked = markers.blocked or (
            state.config.fail_rate > 0 and state.job_rng.random() < state.config.fail_rate
        )
        await asyncio.sleep(state.draw_sync_latency(markers))
        lost = self._lose_answer(request)
        if lost is not None:
            return lost
        if blocked:
            return error_response(422, BLOCKED_ERROR)
        shape = state.config.output_shape
        output = render_provider_json(
            slug=spec.slug,
            text=text,
            digest=digest,
            dim=spec.dim,
            cut=cut,
            shape="openai-object" if shape == "openai-string" else shape,
            bad=markers.bad_output,
        )
        return json_response(200, output)

    async def credits(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/get-user-credits``: the balances."""
        state = self.state
        if state.config.credits_status is not None:
            status = state.config.credits_status
            return error_response(status, "Injected failure (credits_status)")
        balance = UNLIMITED_CREDITS if state.balance is None else state.balance
        body = {"credits": float(balance), "free-credits": float(state.free_balance)}
        return json_response(200, orjson.dumps(body))

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        """Any other path or method: 404 in the API's error shape."""
        self.state.stats.answered("other", 404)
        return error_response(404, f"Not found: {request.method} {request.path}")

    async def stats(self, request: web.Request) -> web.StreamResponse:
        """``GET /_emulator/stats``: every counter (no key, no faults)."""
        return json_response(200, orjson.dumps(self.state.snapshot()))

    async def set_config(self, request: web.Request) -> web.StreamResponse:
        """``POST /_emulator/config``: change switches; answers the new config or 400."""
        try:
            changes: Any = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, "Invalid JSON body")
        if not isinstance(changes, dict):
            return error_response(400, "Expected a JSON object of config fields")
        try:
            config = self.state.update(changes)
        except (ValueError, TypeError) as err:
            return error_response(400, str(err))
        return json_response(200, orjson.dumps(config.to_json()))

    async def reset_stats(self, request: web.Request) -> web.StreamResponse:
        """``POST /_emulator/reset-stats``: zero the counters."""
        self.state.reset_stats()
        return json_response(200, b'{"ok":true}')
