"""Make the sample corpus: prose paragraphs of the documentation that ships with Python.

Source: ``pydoc_data.topics``, the help texts behind ``help("assert")`` and friends. Every
paragraph of at least MIN_WORDS words that is prose (not an indented code block) becomes one
text, its hard-wrapped lines joined; a paragraph the docs repeat under several topics is kept
once. Whole topics go to one file or the other, so each file holds about half. A few texts
of the JSONL half are copied into the Parquet half under ``copy/...`` ids, so that a run
shows deduplication at work.

Deterministic: re-running with the same Python and pyarrow versions reproduces both files
byte for byte. Run from anywhere: ``python sample_data/make_sample_data.py``.
"""

from __future__ import annotations

import pydoc_data.topics
import re
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
JSONL_PATH = HERE / "python_docs.jsonl"
PARQUET_PATH = HERE / "python_docs.parquet"
MIN_WORDS = 20
COPY_EVERY = 40
"""Every 40th JSONL text is also written to the Parquet half, under a ``copy/...`` id."""
MAX_TOKENS = 2048
"""The smallest token limit among the known models; every text stays under it."""

Record = dict[str, str]


def paragraphs() -> list[Record]:
    """Return each distinct prose paragraph once, in topic then paragraph order.

    Some topics repeat others (``compound`` holds ``if``, ``while``, ...): a text keeps the
    first place it appears, so the only repeats in the corpus are the deliberate copies.
    """
    records, seen = [], set()
    for topic in sorted(pydoc_data.topics.topics):
        body = pydoc_data.topics.topics[topic]
        for index, paragraph in enumerate(re.split(r"\n[ \t]*\n", body)):
            # Indented paragraphs are code samples or grammar; short ones are headings.
            if paragraph.startswith((" ", "\n")) or len(paragraph.split()) < MIN_WORDS:
                continue
            text = " ".join(line.strip() for line in paragraph.strip().splitlines())
            if text not in seen:
                seen.add(text)
                records.append({"id": f"topic/{topic}/{index}", "text": text, "topic": topic})
    return records


def split(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """Split by whole topics into two halves of about equal size, then add the copies.

    Topics go, in sorted order, to whichever half is smaller so far.
    """
    halves: tuple[list[Record], list[Record]] = ([], [])
    for topic in sorted({r["topic"] for r in records}):
        smaller = min(halves, key=len)
        smaller.extend(r for r in records if r["topic"] == topic)
    jsonl, parquet = halves
    for original in jsonl[COPY_EVERY // 2 :: COPY_EVERY]:
        parquet.append({**original, "id": original["id"].replace("topic/", "copy/", 1)})
    return jsonl, parquet


def check(records: list[Record]) -> None:
    """Fail loudly if a text is empty or over the smallest model's token limit."""
    from batch_embed.tokens import encode  # the project's tokenizer (cl100k_base, offline)

    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "ids must be unique"
    for record in records:
        assert record["text"].strip(), record["id"]
        assert len(encode(record["text"])) <= MAX_TOKENS, record["id"]


def write(jsonl: list[Record], parquet: list[Record]) -> None:
    """Write both files with fixed settings so that their bytes only depend on the records."""
    JSONL_PATH.write_bytes(
        b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in jsonl)
    )
    columns = {
        name: pa.array([r[name] for r in parquet], pa.string()) for name in ("id", "text", "topic")
    }
    pq.write_table(pa.table(columns), PARQUET_PATH, compression="zstd", write_statistics=False)


def main() -> None:
    """Build, check and write the sample corpus; print what was written."""
    jsonl, parquet = split(paragraphs())
    check(jsonl + parquet)
    write(jsonl, parquet)
    texts = [r["text"] for r in jsonl + parquet]
    print(
        f"{JSONL_PATH.name}: {len(jsonl)} texts, {PARQUET_PATH.name}: {len(parquet)} texts, "
        f"{len(texts) - len(set(texts))} repeated texts "
        f"(Python {sys.version.split()[0]}, pyarrow {pa.__version__})"
    )


if __name__ == "__main__":
    main()
