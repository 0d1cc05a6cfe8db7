"""The examples and notes under each command's ``--help`` (the parser is :mod:`.cli_args`)."""

from __future__ import annotations

from .client import API_KEY_ENV

RUN_EPILOG = f"""\
examples:
  batch-embed run sample_data/ --output out/vectors.parquet --emulate
  batch-embed run corpus/ --output vectors.parquet --max-submits 20000   # a nightly slice
  SEGMIND_API_KEY=... batch-embed run corpus/*.jsonl.gz --output vectors/ --rpm 50
  batch-embed run docs.parquet --text-field body --id-field meta.doc_id --output v.parquet
  batch-embed run --config nightly.toml --log-format json   # settings from a file, for cron
  batch-embed run s3://corpora/docs/ --output v.parquet --dimensions 1024
  batch-embed run s3://corpora/docs/ --output s3://vectors/docs   # parts in the bucket
  batch-embed run s3://corpora/docs/ --id-field id --output s3://vectors/docs --engine ray

The API key comes from ${API_KEY_ENV}. Output: a .parquet file, or a directory of part
files; columns id, embedding (fixed_size_list<float32>[dim]), text_sha256. Rows that could
not be embedded go to <output>.errors.jsonl (or --errors). The run's journal lives in
<output>.batch_embed/: running the same command again resumes (skips committed rows,
re-attaches to jobs submitted within the hour); --fresh starts over. An output in object
storage keeps its journal on local disk, under ~/.cache/batch_embed/ (or --state-dir).

A re-run pays only for what changed: rows whose key and text the output already holds
are skipped (the output is the record, even with the journal gone), a changed text is
embedded again and its old vector replaced, a known text under a new key is copied.

--engine ray (or --ray-address ADDR) has a Ray cluster read, embed and write through Ray
Data: OUT is a directory or prefix with one run-<time>-<random>/ subdirectory per run,
errors are Parquet in OUT.errors/, and --fresh, --prune and the local engine's tuning
flags are refused. Rows are judged as on one machine (file, line, field in every error).
It too pays only for the texts OUT does not hold (a known text under a new id is copied),
re-attaches to the jobs a killed run submitted, and --max-submits (or --max-cost) caps
the whole cluster's submits.

exit codes:
  0  every row embedded (or skipped)      4  the API stopped the run (401/403/406/model)
  1  internal error (a bug)               5  interrupted (SIGINT/SIGTERM); re-run resumes
  2  usage error, bad input or setting    6  stopped at the cap: run again to continue
  3  some rows failed (see the errors)    7  could not write: free space and run again
"""


PLAN_EPILOG = """\
examples:
  batch-embed plan corpus/ --output vectors.parquet --price-per-call 0.0005
  batch-embed plan corpus/ --output vectors.parquet --summary-json plan.json

The plan reads the inputs and what the output (or its journal) already holds, and makes
no request to the API. It prints rows read, new, changed, unchanged and gone, identical
texts folded, to_submit (the paid calls the run would make on a healthy service), their
cl100k tokens, rows over the token limit, the time at the budget (--rpm, --read-rate) and,
with --price-per-call, the cost. --summary-json writes the same as JSON. A plan never
writes to the output or its journal, and works while a run holds it.
"""


CONFIG_EPILOG = """\
examples:
  batch-embed config --config nightly.toml
  BATCH_EMBED_RPM=100 batch-embed config --config nightly.toml --json

A config file (TOML) takes the long flag names as keys:

  input = ["corpus/"]
  output = "vectors.parquet"
  id-field = "doc_id"
  rpm = 50
  max-submits = 20000
  price-per-call = 0.0005
  shared-limit = false
  # api-key = "..."   read only when the file is readable by you alone (chmod 600)

Every flag is also an environment variable: BATCH_EMBED_ and the flag in upper case,
- as _ (BATCH_EMBED_MAX_SUBMITS=20000). Precedence: flag > environment > file > default.
"""


STATUS_EPILOG = """\
examples:
  batch-embed status vectors.parquet
  batch-embed status vectors.parquet --json | jq .last_run.outcome

A run with no end is "running" while the process that locked the output is alive, and
"killed" once it is not (run the same command again: it re-attaches to the jobs in flight
whose hour has not passed). Exit 2 when OUT has neither an output nor a journal.
"""
