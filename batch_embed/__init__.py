"""batch_embed: embed whole corpora through Segmind's v2 queue API into Parquet.

Reader -> submitter -> poller -> writer, wired in :mod:`batch_embed.pipeline`::

    from batch_embed import RunConfig, embed_sync
    result = embed_sync(RunConfig(inputs=("corpus.jsonl",), output=Path("vectors.parquet")))
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batch_embed")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import SegmindClient
    from .config import RunConfig
    from .errors import ApiError, BatchEmbedError, ConfigError, InputError, JournalLocked
    from .pipeline import Outcome, RunResult, embed, embed_sync
    from .records import ErrorKind, JobState

# Imported on first use (PEP 562): ``import batch_embed`` stays light, so the command can
# take charge of signals before numpy, pyarrow and aiohttp load (batch_embed.entry).
_EXPORTS = {
    "ApiError": "errors",
    "BatchEmbedError": "errors",
    "ConfigError": "errors",
    "ErrorKind": "records",
    "InputError": "errors",
    "JobState": "records",
    "JournalLocked": "errors",
    "Outcome": "pipeline",
    "RunConfig": "config",
    "RunResult": "pipeline",
    "SegmindClient": "client",
    "embed": "pipeline",
    "embed_sync": "pipeline",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


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
