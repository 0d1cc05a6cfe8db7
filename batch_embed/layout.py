"""Where a run's files go, derived from the output path the user names.

``OUT`` ending in ``.parquet`` is one file: parts are staged in ``OUT.batch_embed/parts/``
and merged into ``OUT`` atomically at the end. Any other ``OUT`` is a directory that
receives the part files themselves. Either way the journal (and its lock) lives in
``OUT.batch_embed/`` beside the output (or in ``--state-dir``), and rows that could not be
embedded go to ``<OUT without .parquet>.errors.jsonl`` beside it, unless ``--errors`` says
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_SUFFIX = ".batch_embed"


@dataclass(frozen=True, slots=True)
class OutputLayout:
    """The paths of one run."""

    output: Path
    single_file: bool
    parts_dir: Path
    state_dir: Path
    journal: Path
    errors: Path


def layout_for(
    output: Path, errors: Path | None = None, state_dir: Path | None = None
) -> OutputLayout:
    """Derive every path of a run from the output path (and explicit errors and state paths).

    ``state_dir`` (``--state-dir``) puts the journal and the staged parts elsewhere than
    ``OUT.batch_embed/`` (a faster disk, a directory the output's readers never see).
    """
    output = Path(output)
    single = output.suffix == ".parquet" and not output.is_dir()
    state_dir = (
        Path(state_dir) if state_dir is not None else output.with_name(output.name + STATE_SUFFIX)
    )
    stem = output.name[: -len(".parquet")] if output.name.endswith(".parquet") else output.name
    return OutputLayout(
        output=output,
        single_file=single,
        parts_dir=state_dir / "parts" if single else output,
        state_dir=state_dir,
        journal=state_dir / "journal.sqlite",
        errors=Path(errors) if errors is not None else output.with_name(stem + ".errors.jsonl"),
    )
