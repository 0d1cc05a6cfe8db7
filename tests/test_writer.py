"""Tests of the Parquet sink: schema, exact round trips, atomic parts, resume, merge, memory."""

from __future__ import annotations

import gc
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import duckdb
import numpy as np
import numpy.typing as npt
import psutil  # type: ignore[import-untyped]
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from batch_embed import writer as writer_module
from batch_embed.errors import ConfigError, WriteFailed
from batch_embed.models import ModelSpec
from batch_embed.records import RowKey, text_hash
from batch_embed.writer import (
    CommittedPart,
    PartWriter,
    finalize_single_file,
    output_schema,
    read_output,
)

MODEL = ModelSpec(slug="test-model", dim=8)
BIG = ModelSpec(slug="text-embedding-3-large", dim=3072)


def vectors(n: int, dim: int = MODEL.dim, seed: int = 0) -> npt.NDArray[np.float32]:
    """Random unit vectors, with awkward float32 values planted in the first row."""
    rng = np.random.default_rng(seed)
    out = rng.standard_normal((n, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    specials = np.array([-0.0, 1e-45, np.finfo(np.float32).max, np.float32(1 / 3)], np.float32)
    out[0, : min(dim, 4)] = specials[: min(dim, 4)]
    return out


def write_rows(
    parts_dir: Path, keys: Sequence[RowKey], vecs: npt.NDArray[np.float32], **kwargs: object
) -> list[CommittedPart]:
    """Write rows through a fresh PartWriter and return every committed part."""
    committed: list[CommittedPart] = []
    key_type: Literal["int", "str"] = "int" if isinstance(keys[0], int) else "str"
    with PartWriter(
        parts_dir,
        model=ModelSpec(slug=MODEL.slug, dim=vecs.shape[1]),
        key_type=key_type,
        on_commit=committed.append,
        **kwargs,  # type: ignore[arg-type]
    ) as writer:
        for key, vec in zip(keys, vecs, strict=True):
            writer.add(key, text_hash(str(key)), vec)
    return committed


def part_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_schema_types_and_metadata(tmp_path: Path) -> None:
    for key_type, id_type in (("int", pa.int64()), ("str", pa.string())):
        schema = output_schema(MODEL, key_type)  # type: ignore[arg-type]
        assert schema.names == ["id", "embedding", "text_sha256"]
        assert schema.field("id").type == id_type
        assert schema.field("embedding").type == pa.list_(pa.float32(), MODEL.dim)
        assert schema.field("text_sha256").type == pa.string()
        assert schema.metadata[b"batch_embed.model"] == b"test-model"
        assert schema.metadata[b"batch_embed.dim"] == b"8"
        assert b"batch_embed.version" in schema.metadata

    write_rows(tmp_path, [1, 2], vectors(2))
    on_disk = pq.read_schema(tmp_path / "part-000000.parquet")
    assert on_disk.equals(output_schema(MODEL, "int"), check_metadata=False)
    assert on_disk.metadata[b"batch_embed.model"] == b"test-model"
    assert on_disk.metadata[b"batch_embed.dim"] == b"8"


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key_type"):
        output_schema(MODEL, "float")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rows_per_part"):
        PartWriter(tmp_path, model=MODEL, key_type="int", rows_per_part=0)


@pytest.mark.parametrize("keys", [[10, -3, 2**63 - 1, 0], ["a", "é/ü", "", "file.jsonl:7"]])
def test_round_trip_is_bit_exact_and_keeps_key_type(tmp_path: Path, keys: list[RowKey]) -> None:
    vecs = vectors(len(keys))
    write_rows(tmp_path, keys, vecs, rows_per_part=3)
    table = read_output(tmp_path)
    assert table.column("id").to_pylist() == keys
    assert table.column("text_sha256").to_pylist() == [text_hash(str(k)) for k in keys]
    got = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(keys), -1)
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), vecs.view(np.uint32))


def test_float64_vectors_are_stored_as_float32(tmp_path: Path) -> None:
    vec = vectors(1)[0].astype(np.float64)
    write_rows(tmp_path, [1], vec[None, :])
    stored = read_output(tmp_path).column("embedding")[0].values.to_numpy()
    assert np.array_equal(stored, vec.astype(np.float32))


def test_add_commits_when_full_and_reports_keys(tmp_path: Path) -> None:
    seen: list[CommittedPart] = []
    writer = PartWriter(
        tmp_path, model=MODEL, key_type="int", rows_per_part=3, on_commit=seen.append
    )
    returned = [writer.add(i, "h", v) for i, v in enumerate(vectors(7))]
    assert [r is not None for r in returned] == [False, False, True, False, False, True, False]
    assert writer.pending == 1
    writer.close()
    assert writer.pending == 0
    assert [p.keys for p in seen] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [p.rows for p in seen] == [3, 3, 1]
    assert [p.path.name for p in seen] == [f"part-00000{i}.parquet" for i in range(3)]
    assert returned[2] == seen[0] and returned[5] == seen[1]
    for part in seen:
        assert pq.read_table(part.path).column("id").to_pylist() == part.keys


def test_bad_rows_are_refused_alone(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, model=MODEL, key_type="int", rows_per_part=10)
    writer.add(1, "h", vectors(1)[0])
    with pytest.raises(TypeError):
        writer.add("2", "h", vectors(1)[0])
    with pytest.raises(TypeError):
        writer.add(True, "h", vectors(1)[0])
    with pytest.raises(ValueError, match="int64"):
        writer.add(2**63, "h", vectors(1)[0])
    with pytest.raises(TypeError):
        writer.add(2, None, vectors(1)[0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        writer.add(2, "h", np.zeros(MODEL.dim + 1, np.float32))
    with pytest.raises(ValueError, match="shape"):
        writer.add(2, "h", np.float32(1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        writer.add(2, "h", np.array(["x"] * MODEL.dim))
    assert writer.pending == 1
    writer.close()
    assert read_output(tmp_path).column("id").to_pylist() == [1]

    str_writer = PartWriter(tmp_path / "s", model=MODEL, key_type="str")
    with pytest.raises(TypeError):
        str_writer.add(1, "h", vectors(1)[0])
    str_writer.close()


def test_commit_empty_close_idempotent_and_closed_writer_refuses(tmp_path: Path) -> None:
    writer = PartWriter(tmp_path, model=MODEL, key_type="int")
    writer.add(1, "h", vectors(1)[0])
    assert writer.commit() is not None
    assert writer.commit() is None
    writer.close()
    writer.close()
    assert part_names(tmp_path) == ["part-000000.parquet"]
    with pytest.raises(ValueError, match="closed"):
        writer.add(2, "h", vectors(1)[0])
    with pytest.raises(ValueError, match="closed"):
        writer.commit()


def test_an_exception_leaving_the_block_discards_the_buffer(tmp_path: Path) -> None:
    seen: list[CommittedPart] = []
    with (
        pytest.raises(KeyError),
        PartWriter(tmp_path, model=MODEL, key_type="int", on_commit=seen.append) as writer,
    ):
        writer.add(1, "h", vectors(1)[0])
        assert writer.commit() is not None
        writer.add(2, "h", vectors(1)[0])
        raise KeyError("the journal failed")
    assert writer.pending == 0
    assert [p.keys for p in seen] == [[1]]
    assert read_output(tmp_path).column("id").to_pylist() == [1]
    with pytest.raises(ValueError, match="closed"):
        writer.add(3, "h", vectors(1)[0])
    writer.close()  # still idempotent


def test_close_without_rows_leaves_an_empty_output_with_the_schema(tmp_path: Path) -> None:
    PartWriter(tmp_path, model=MODEL, key_type="str").close()
    table = read_output(tmp_path)
    assert table.num_rows == 0
    assert table.schema.equals(output_schema(MODEL, "str"), check_metadata=False)
    # A later run with no rows either does not add a second empty part.
    PartWriter(tmp_path, model=MODEL, key_type="str").close()
    assert part_names(tmp_path) == ["part-000000.parquet"]


def test_numbering_continues_across_writers(tmp_path: Path) -> None:
    first = write_rows(tmp_path, [1, 2, 3], vectors(3), rows_per_part=2)
    second = write_rows(tmp_path, [4, 5], vectors(2), rows_per_part=2)
    assert [p.path.name for p in first + second] == [
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]
    # A gap (a part deleted by hand) does not make numbering reuse a lower name.
    (tmp_path / "part-000000.parquet").rename(tmp_path / "part-000041.parquet")
    third = write_rows(tmp_path, [6], vectors(1))
    assert third[0].path.name == "part-000042.parquet"
    assert sorted(read_output(tmp_path).column("id").to_pylist()) == [1, 2, 3, 4, 5, 6]


def test_resume_with_another_model_is_refused(tmp_path: Path) -> None:
    write_rows(tmp_path, [1], vectors(1))
    with pytest.raises(ConfigError, match="model"):
        PartWriter(tmp_path, model=ModelSpec(slug="other", dim=MODEL.dim), key_type="int")
    with pytest.raises(ConfigError, match="model"):
        PartWriter(tmp_path, model=MODEL, key_type="str")
    with pytest.raises(ConfigError, match="model"):
        PartWriter(tmp_path, model=ModelSpec(slug=MODEL.slug, dim=4), key_type="int")


def test_stray_tmp_is_removed_on_open_and_ignored_by_readers(tmp_path: Path) -> None:
    write_rows(tmp_path, [1, 2], vectors(2))
    stray = tmp_path / ".part-000001.parquet.tmp"
    stray.write_bytes(b"PAR1 truncated")
    unrelated = tmp_path / ".journal"
    unrelated.write_bytes(b"not ours")
    # Readers ignore the dot file while it is there ...
    assert read_output(tmp_path).num_rows == 2
    count = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/*.parquet')")
    assert count is not None and count.fetchall() == [(2,)]
    # ... and the next writer removes it, leaving other files alone.
    writer = PartWriter(tmp_path, model=MODEL, key_type="int")
    assert not stray.exists()
    assert unrelated.exists()
    writer.add(3, "h", vectors(1)[0])
    assert writer.commit() is not None
    writer.close()
    assert part_names(tmp_path) == [".journal", "part-000000.parquet", "part-000001.parquet"]


def test_failed_rename_leaves_no_part_and_rows_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[CommittedPart] = []
    writer = PartWriter(
        tmp_path, model=MODEL, key_type="int", rows_per_part=2, on_commit=seen.append
    )
    vecs = vectors(3)
    writer.add(1, "h", vecs[0])

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("batch_embed.output_store.os.replace", broken_replace)
    with pytest.raises(WriteFailed, match=r"could not write .*part-000000\.parquet: disk gone"):
        writer.add(2, "h", vecs[1])  # fills the buffer, so commits
    assert part_names(tmp_path) == []  # no final name, no tmp left behind
    assert writer.pending == 2
    assert seen == []
    with pytest.raises(RuntimeError, match="commit"):
        writer.add(3, "h", vecs[2])  # the full buffer is not overwritten
    monkeypatch.undo()

    part = writer.commit()
    assert part is not None and part.keys == [1, 2]
    assert part.path.name == "part-000000.parquet"
    assert seen == [part]
    writer.add(3, "h", vecs[2])
    writer.close()
    table = read_output(tmp_path)
    assert table.column("id").to_pylist() == [1, 2, 3]
    got = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(3, -1)
    assert np.array_equal(got, vecs)


def test_failed_fsync_leaves_no_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = PartWriter(tmp_path, model=MODEL, key_type="int")
    writer.add(1, "h", vectors(1)[0])

    def broken_fsync(fd: int) -> None:
        raise OSError("io error")

    monkeypatch.setattr("batch_embed.output_store.os.fsync", broken_fsync)
    with pytest.raises(WriteFailed, match=r"part-000000\.parquet: io error"):
        writer.commit()
    assert part_names(tmp_path) == []
    assert writer.pending == 1


def test_a_part_is_complete_before_it_gets_its_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    checked: list[str] = []

    def checking_replace(src: str | Path, dst: str | Path) -> None:
        src, dst = Path(src), Path(dst)
        assert src.name.startswith(".") and src.name.endswith(".tmp")
        assert not dst.exists()
        assert pq.read_table(src).num_rows == 5  # the whole part is already readable
        checked.append(dst.name)
        real_replace(src, dst)

    monkeypatch.setattr("batch_embed.output_store.os.replace", checking_replace)
    write_rows(tmp_path, list(range(10)), vectors(10), rows_per_part=5)
    assert checked == ["part-000000.parquet", "part-000001.parquet"]


def test_killed_writer_leaves_only_complete_parts(tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from batch_embed.models import ModelSpec
        from batch_embed.writer import PartWriter
        w = PartWriter(Path({str(parts)!r}), model=ModelSpec(slug="m", dim=3072),
                       key_type="int", rows_per_part=256)
        vec = np.ones(3072, np.float32)
        i = 0
        while True:
            w.add(i, "h", vec)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while len(list(parts.glob("part-*.parquet"))) < 3:
            assert proc.poll() is None, "the writer process died"
            assert time.monotonic() < deadline, "the writer process made no progress"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finals = sorted(parts.glob("part-*.parquet"))
    for path in finals:
        table = pq.read_table(path)
        assert table.num_rows == 256
    writer = PartWriter(parts, model=ModelSpec(slug="m", dim=3072), key_type="int")
    assert not list(parts.glob(".*.tmp"))
    writer.add(-1, "h", np.zeros(3072, np.float32))
    part = writer.commit()
    writer.close()
    assert part is not None
    assert part.path.name == f"part-{len(finals):06d}.parquet"
    assert read_output(parts).num_rows == 256 * len(finals) + 1


def test_finalize_streams_parts_into_one_file(tmp_path: Path) -> None:
    staging, final = tmp_path / "staging", tmp_path / "out.parquet"
    keys = list(range(100, 111))
    vecs = vectors(11)
    write_rows(staging, keys, vecs, rows_per_part=4)
    assert finalize_single_file(staging, final) == 11

    with pq.ParquetFile(final) as parquet:
        # One row group per part: the merge copied row groups, it never concatenated tables.
        assert parquet.metadata.num_row_groups == 3
        assert [parquet.metadata.row_group(i).num_rows for i in range(3)] == [4, 4, 3]
    table = read_output(final)
    assert table.schema.equals(output_schema(MODEL, "int"), check_metadata=False)
    assert table.schema.metadata[b"batch_embed.model"] == b"test-model"
    assert b"batch_embed.part_id" not in table.schema.metadata
    assert table.column("id").to_pylist() == keys
    got = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(11, -1)
    assert np.array_equal(got.view(np.uint32), vecs.view(np.uint32))
    assert part_names(staging) == []
    assert part_names(tmp_path) == ["out.parquet", "staging"]


def test_finalize_appends_a_resumed_run_to_the_existing_file(tmp_path: Path) -> None:
    staging, final = tmp_path / "staging", tmp_path / "out.parquet"
    write_rows(staging, ["a", "b"], vectors(2, seed=1))
    assert finalize_single_file(staging, final) == 2
    write_rows(staging, ["c"], vectors(1, seed=2))
    assert finalize_single_file(staging, final) == 3
    assert read_output(final).column("id").to_pylist() == ["a", "b", "c"]
    # Nothing new: the file is kept as it is.
    PartWriter(staging, model=MODEL, key_type="str").close()
    assert finalize_single_file(staging, final) == 3
    assert read_output(final).column("id").to_pylist() == ["a", "b", "c"]
    assert part_names(staging) == []


def test_finalize_killed_before_cleanup_does_not_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, final = tmp_path / "staging", tmp_path / "out.parquet"
    write_rows(staging, [1, 2, 3], vectors(3), rows_per_part=2)

    def no_cleanup(paths: list[Path]) -> None:
        raise KeyboardInterrupt  # the process dies right after the rename

    monkeypatch.setattr(writer_module, "_remove", no_cleanup)
    with pytest.raises(KeyboardInterrupt):
        finalize_single_file(staging, final)
    monkeypatch.undo()
    assert len(part_names(staging)) == 2  # merged, but still there
    write_rows(staging, [4], vectors(1))  # the resumed run adds a part
    assert finalize_single_file(staging, final) == 4
    assert read_output(final).column("id").to_pylist() == [1, 2, 3, 4]
    assert part_names(staging) == []


def test_failed_finalize_keeps_parts_and_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, final = tmp_path / "staging", tmp_path / "out.parquet"
    write_rows(staging, [1], vectors(1))
    finalize_single_file(staging, final)
    before = final.read_bytes()
    write_rows(staging, [2], vectors(1))

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("batch_embed.output_store.os.replace", broken_replace)
    with pytest.raises(WriteFailed, match=r"out\.parquet: disk gone"):
        finalize_single_file(staging, final)
    assert final.read_bytes() == before
    assert part_names(staging) == ["part-000000.parquet"]
    assert part_names(tmp_path) == ["out.parquet", "staging"]  # no .out.parquet.tmp


def test_finalize_refuses_mixed_models(tmp_path: Path) -> None:
    staging, final = tmp_path / "staging", tmp_path / "out.parquet"
    write_rows(staging, [1], vectors(1))
    finalize_single_file(staging, final)
    with PartWriter(staging, model=ModelSpec(slug="other", dim=8), key_type="int") as writer:
        writer.add(2, "h", vectors(1)[0])
    with pytest.raises(ConfigError, match="model"):
        finalize_single_file(staging, final)
    assert read_output(final).num_rows == 1


def test_finalize_with_nothing_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "staging").mkdir()
    assert finalize_single_file(tmp_path / "staging", tmp_path / "out.parquet") == 0
    assert not (tmp_path / "out.parquet").exists()


def test_pyarrow_dataset_and_duckdb_read_both_layouts(tmp_path: Path) -> None:
    parts_dir, staging, final = tmp_path / "dir", tmp_path / "staging", tmp_path / "one.parquet"
    keys = list(range(9))
    vecs = vectors(9)
    write_rows(parts_dir, keys, vecs, rows_per_part=4)
    write_rows(staging, keys, vecs, rows_per_part=4)
    finalize_single_file(staging, final)
    expected = output_schema(MODEL, "int")

    for out, glob in ((parts_dir, f"{parts_dir}/*.parquet"), (final, str(final))):
        dataset = ds.dataset(out, format="parquet")
        assert dataset.schema.equals(expected, check_metadata=False)
        assert dataset.schema.metadata[b"batch_embed.model"] == b"test-model"
        assert sorted(dataset.to_table().column("id").to_pylist()) == keys

        rel = duckdb.sql(f"select * from read_parquet('{glob}') order by id")
        assert rel is not None
        assert rel.columns == ["id", "embedding", "text_sha256"]
        assert [str(t) for t in rel.types] == ["BIGINT", "FLOAT[]", "VARCHAR"]
        rows = rel.fetchall()
        assert [r[0] for r in rows] == keys
        assert np.array_equal(np.array([r[1] for r in rows], np.float32), vecs)
        assert [r[2] for r in rows] == [text_hash(str(k)) for k in keys]


def test_committing_many_parts_does_not_grow_memory(tmp_path: Path) -> None:
    process = psutil.Process()
    vec = vectors(1, dim=BIG.dim)[0]
    writer = PartWriter(tmp_path, model=BIG, key_type="int", rows_per_part=256)  # 3 MB buffer
    key = 0

    def commit_parts(count: int) -> None:
        nonlocal key
        for _ in range(count * 256):
            writer.add(key, "h", vec)
            key += 1

    commit_parts(4)  # warm up the allocators
    gc.collect()
    before = process.memory_info().rss
    commit_parts(60)  # 180 MB of vectors written
    gc.collect()
    grown = process.memory_info().rss - before
    writer.close()
    assert grown < 48 * 2**20, f"RSS grew by {grown / 2**20:.0f} MB over 60 parts"
    assert len(list(tmp_path.glob("part-*.parquet"))) == 64


def test_commit_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def logging_fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def logging_replace(src: str | Path, dst: str | Path) -> None:
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr("batch_embed.output_store.os.fsync", logging_fsync)
    monkeypatch.setattr("batch_embed.output_store.os.replace", logging_replace)
    writer = PartWriter(tmp_path / "parts", model=MODEL, key_type="int")
    writer.add(1, "h", vectors(1)[0])
    writer.commit()
    assert events == ["fsync file", "replace", "fsync dir"]
    events.clear()
    finalize_single_file(tmp_path / "parts", tmp_path / "out.parquet")
    assert events == ["fsync file", "replace", "fsync dir"]
