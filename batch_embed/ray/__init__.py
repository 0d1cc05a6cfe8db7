"""batch_embed on a Ray cluster: ``embed_dataset(ds)`` maps Segmind embeddings over a
``ray.data.Dataset`` with a pool of actors that share one rate budget and submit each
distinct text once.

Rooms, in the order a row meets them::

    dataset.py         embed_dataset / split_results: creates the actors, maps the workers
    worker.py          EmbedWorker: one batch in, the same rows with vectors out
    texts.py           one text: claim, submit or join, poll, fetch
    calls.py           the one retry loop (429 -> budget, 5xx -> RetryPolicy, 404 -> lost)
    shared_limiter.py  a ratelimit.Limiter over the budget actor (slots granted in leases)
    budget.py          the budget actor (submit and read rates for the whole cluster)
    slots.py           the pure slot granting behind it, on ratelimit.RateController
    registry.py        the registry actor: one submit per text across actors
    claims.py          the pure claim states behind it
    columns.py         the added columns; the vectors / errors split
    fixed_rate.py      the naive per-actor limiter (benchmark baseline)
    cli_run.py         ``batch-embed run --engine ray``: the flags -> one streaming pass
    cli_inputs.py      its inputs: resolved, preflighted, read by Ray Data, shaped into rows
    cli_outputs.py     its outputs: a subdirectory per run, what earlier runs hold, errors
    job_journal.py     its journal: the request_ids submitted, so a killed run pays no more

Requires ``pip install 'batch_embed[ray]'``; the rest of batch_embed never imports this.
"""

from __future__ import annotations

from .claims import SubmittedJob
from .columns import EMBEDDING, ERROR, ERROR_KIND
from .dataset import embed_dataset, split_results

__all__ = ["EMBEDDING", "ERROR", "ERROR_KIND", "SubmittedJob", "embed_dataset", "split_results"]
