"""batch_embed: embed whole corpora through Segmind's v2 queue API into Parquet.

Reader -> submitter -> poller -> writer, wired in :mod:`batch_embed.pipeline`::

    from batch_embed import RunConfig, embed_sync
    result = embed_sync(RunConfig(inputs=("corpus.jsonl",), output=Path("vectors.parquet")))
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batch_embed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from .client import SegmindClient
from .config import RunConfig
from .errors import (
    ApiError,
    BatchEmbedError,
    ConfigError,
    InputError,
    JournalLocked,
)
from .pipeline import Outcome, RunResult, embed, embed_sync
from .records import ErrorKind, JobState

__all__ = [
    "ApiError",
    "BatchEmbedError",
    "ConfigError",
    "ErrorKind",
    "InputError",
    "JobState",
    "JournalLocked",
    "Outcome",
    "RunConfig",
    "RunResult",
    "SegmindClient",
    "__version__",
    "embed",
    "embed_sync",
]
