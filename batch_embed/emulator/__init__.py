"""A local emulator of Segmind's v2 async queue API for embedding models.

A real aiohttp server on loopback (``python -m batch_embed.emulator --port 0`` prints
``listening http://HOST:PORT`` first), speaking the protocol of ``shared/segmind-v2.md``
and never easier than the real API. Its vectors are deterministic in the text
(:func:`expected_vector`), so tests can prove each output row carries its own text's vector.

Endpoints (``x-api-key`` required; any non-empty key unless ``api_key`` is set)::

    POST /v2/{slug}                  {"prompt": text} -> 200 {request_id, status: QUEUED,
                                     status_url, response_url, poll_url} (absolute URLs)
    GET  /v2/requests/{id}/status    {status, request_id, metrics}; FAILED -> 422 {.., error}
    GET  /v2/requests/{id}           COMPLETED -> {status, request_id, output, metrics:
                                     {inference_time}}; FAILED -> 422; before: the status body
    GET  /v1/requests/{id}           the old poll_url: same as /status
    POST /v1/{slug}                  sync: the model output itself, after the latency
    GET  /v1/get-user-credits        {"credits": float, "free-credits": float}
    GET  /_emulator/stats            counters (no key); POST /_emulator/config {field: value};
                                     POST /_emulator/reset-stats

Errors are ``{"error": message}``: 400 missing/empty/non-string/over-long text (over
``max_tokens`` cl100k tokens), 401 missing/wrong key, 404 unknown slug, unknown id, id past
``retention`` (from submit) or a completed body past ``result_ttl`` (from completion; the
status still says COMPLETED), 406 credits spent, 429 limits (``Retry-After`` sometimes, in
seconds or as an HTTP-date), injected 500/502/504 (some as a proxy's HTML page).

Job states are computed lazily from the submit time and the drawn latency (QUEUED for the
cold start plus a quarter of the latency, then PROCESSING): there is no task per job.

Test markers in the prompt (deterministic)::

    [[blocked]]              ends FAILED (422), error "Content blocked by safety filter: ..."
    [[bad-output:nan]]       COMPLETED; the first float is the literal NaN
    [[bad-output:zeros]]     COMPLETED; an all-zeros vector
    [[bad-output:short]]     COMPLETED; a vector of half the dimensions
    [[bad-output:garbage]]   COMPLETED; an output no known shape matches
    [[slow:SECONDS]]         the job's latency is exactly SECONDS
    [[fail-submit:CODE]]     the submit answers HTTP CODE (400-599), no job, not billed

``output`` shapes (``output_shape``): ``openai-string`` (default; OpenAI's embeddings
object serialized in a JSON string), ``openai-object``, ``list``, ``embedding``,
``embeddings``, ``data``.

Measured ceiling (``benchmarks/emulator_ceiling.py``: latency 0, no limits, 64 concurrent
aiohttp requests from one process; this 2-core machine, client and server sharing it)::

    submit          ~9,200 req/s
    status         ~15,000 req/s
    result          ~4,000 req/s   (first fetch: vector + serialization of 3072 floats)
    result, cached  ~9,500 req/s

That is four orders of magnitude above a 50 RPM plan: the emulator is not the bottleneck.
"""

from __future__ import annotations

from .app import build_app
from .config import OUTPUT_SHAPES, EmulatorConfig, OutputShape, parse_range, parse_rate
from .jobs import JobState
from .markers import BLOCKED_ERROR
from .server import Emulator, EmulatorThread
from .vectors import expected_vector

__all__ = [
    "BLOCKED_ERROR",
    "OUTPUT_SHAPES",
    "Emulator",
    "EmulatorConfig",
    "EmulatorThread",
    "JobState",
    "OutputShape",
    "build_app",
    "expected_vector",
    "parse_range",
    "parse_rate",
]
