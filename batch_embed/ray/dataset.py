"""``embed_dataset``: a ``ray.data.Dataset`` of texts in, the same rows with vectors out.

Wiring only: it creates (or finds) the account's budget actor and this run's registry
actor, and maps :class:`~batch_embed.ray.worker.EmbedWorker` over the batches with an actor
pool of ``workers``. Nothing runs until the dataset is consumed (Ray Data is lazy);
consuming it twice polls and fetches again but submits nothing twice while the jobs are
kept (the registry remembers them), so materialize it once when both halves are wanted
(:func:`split_results` does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import ray

from ..api_root import DEFAULT_ROOT, normalize_root
from ..client import API_KEY_ENV, Secret
from ..config import DEFAULT_READ_RATE, DEFAULT_RPM
from ..errors import ConfigError
from ..models import DEFAULT_MODEL, model_spec
from ..retry import RetryPolicy
from ..spending import DEFAULT_MAX_RESUBMITS
from .budget import budget_actor, budget_key
from .claims import SubmittedJob
from .columns import OUTPUT_COLUMNS, error_rows, vector_rows
from .registry import registry_actor
from .worker import EmbedWorker, Limiting, WorkerSettings

DEFAULT_WORKERS = 2
DEFAULT_BATCH_SIZE = 64
WORKER_CPUS = 0.25
"""Each actor waits on the network: a quarter CPU lets 4 share a core with Ray Data's reads."""


def embed_dataset(
    ds: ray.data.Dataset,
    *,
    text_column: str = "text",
    id_column: str = "id",
    model: str = DEFAULT_MODEL,
    rpm: float = DEFAULT_RPM,
    read_rate: float = DEFAULT_READ_RATE,
    base_url: str = DEFAULT_ROOT,
    api_key: str | None = None,
    workers: int = DEFAULT_WORKERS,
    dimensions: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_resubmits: int = DEFAULT_MAX_RESUBMITS,
    max_submits: int | None = None,
    policy: RetryPolicy | None = None,
    allow_insecure_http: bool = False,
    limiting: Limiting = "shared",
    num_cpus: float = WORKER_CPUS,
    run_id: str | None = None,
    resume: Sequence[SubmittedJob] = (),
) -> ray.data.Dataset:
    """Embed ``ds[text_column]`` through Segmind's v2 queue with ``workers`` Ray actors.

    Returns the rows of ``ds``, each once, with ``embedding``
    (``fixed_size_list<float32>[dim]``, null on error), ``error_kind`` and ``error``
    (null on success) added. ``rpm`` (submits per minute) and ``read_rate`` (polls and
    fetches per second) are budgets for the whole cluster, held by one budget actor per
    account; identical texts are submitted once. ``id_column`` names the rows' identity
    (it must not be one of the output columns). ``api_key`` defaults to
    ``$SEGMIND_API_KEY``. ``limiting="per-actor"`` is the naive baseline for benchmarks
    (each actor allows itself the whole rate; 429s teach nothing).

    ``max_submits`` caps the texts submitted (each a paid call) across the whole run: rows
    whose text the cap kept back come out with ``error_kind`` ``"capped"``, to be embedded
    by a later run. ``run_id`` names the run's registry actor, so the caller can journal
    the jobs as they are submitted (:func:`~batch_embed.ray.registry.find_registry`,
    ``published_since``); ``resume`` re-attaches to jobs an earlier, killed run submitted:
    their texts are polled and fetched, not paid for again (a job the API no longer has is
    resubmitted).
    """
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    if not key:
        raise ConfigError(f"api_key: no API key; set {API_KEY_ENV} (or pass api_key=...)")
    spec = model_spec(model, dimensions)
    root = normalize_root(base_url, allow_insecure_http=allow_insecure_http)
    for name, value in (("rpm", rpm), ("read_rate", read_rate)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name}: expected a number > 0, got {value!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected an integer >= 1, got {workers!r}")
    if max_submits is not None and (
        isinstance(max_submits, bool) or not isinstance(max_submits, int) or max_submits < 0
    ):
        raise ConfigError(f"max_submits: expected an integer >= 0, got {max_submits!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if limiting not in ("shared", "per-actor"):
        raise ConfigError(f"limiting: expected 'shared' or 'per-actor', got {limiting!r}")
    for name, column in (("text_column", text_column), ("id_column", id_column)):
        if column in OUTPUT_COLUMNS:
            raise ConfigError(f"{name}: {column!r} is an output column of embed_dataset")
    settings = WorkerSettings(
        base_url=root,
        api_key=Secret(key),
        model=spec.slug,
        dimensions=dimensions,
        text_column=text_column,
        policy=policy or RetryPolicy(),
        allow_insecure_http=allow_insecure_http,
        limiting=limiting,
        submit_rate=rpm / 60.0,
        read_rate=float(read_rate),
    )
    budget = budget_actor(budget_key(root, key), submit_rate=rpm / 60.0, read_rate=read_rate)
    registry = registry_actor(
        run_id or uuid.uuid4().hex, max_resubmits=max_resubmits, max_submits=max_submits
    )
    if resume:
        ray.get(registry.adopt_many.remote(list(resume)))
    return ds.map_batches(
        EmbedWorker,
        fn_constructor_args=(settings, budget, registry),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=num_cpus,
        zero_copy_batch=True,
    )


def split_results(ds: ray.data.Dataset) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """``(vectors, errors)`` of an ``embed_dataset`` result, materialized once.

    ``vectors`` has the rows with an embedding (no error columns); ``errors`` the others
    (no embedding column).
    """
    done = ds.materialize()
    return (
        done.map_batches(_vector_rows, batch_format="pyarrow"),
        done.map_batches(_error_rows, batch_format="pyarrow"),
    )


def _vector_rows(batch: pa.Table) -> pa.Table:
    return vector_rows(batch)


def _error_rows(batch: pa.Table) -> pa.Table:
    return error_rows(batch)


def stats_of(actor: Any) -> Any:
    """The stats of a budget or registry actor (blocking)."""
    return ray.get(actor.stats.remote())
