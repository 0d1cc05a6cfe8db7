"""``--dimensions N`` through the real CLI, and the output read as users read it: pyarrow,
DuckDB (the README's nearest-neighbour query, run as written) and polars."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_embed.emulator import expected_vector
from tests.cli_fixtures import FAST, EmulatorProcess, batch_embed_cli, run_cli
from tests.pipeline_fixtures import write_jsonl

KEY = "sk-test-dimensions-0123456789"
README = Path(__file__).resolve().parents[1] / "README.md"
TEXTS = [f"a paragraph about topic {i}" for i in range(12)]


@pytest.fixture(scope="module")
def emu() -> EmulatorProcess:
    with EmulatorProcess("--latency", "0") as process:
        yield process  # type: ignore[misc]


def corpus(tmp_path: Path) -> Path:
    records = [{"id": i, "text": t} for i, t in enumerate(TEXTS)]
    records.append({"id": 42, "text": TEXTS[3]})  # row 42's nearest neighbour is row 3
    return write_jsonl(tmp_path / "in.jsonl", records)


def embed(emu: EmulatorProcess, source: Path, out: Path, *extra: str) -> tuple[int, str]:
    command = batch_embed_cli(
        "run", source, "--output", out, "--base-url", emu.url, *FAST, "--quiet", *extra
    )
    done = run_cli(command, KEY)
    return done.returncode, done.stderr


def prefix(text: str, n: int, full: int = 3072) -> npt.NDArray[np.float32]:
    head = expected_vector(text, full)[:n].astype(np.float64)
    return (head / np.linalg.norm(head)).astype(np.float32)


def read(out: Path) -> tuple[pa.Table, dict[bytes, bytes]]:
    table = pq.read_table(out)
    return table, dict(table.schema.metadata or {})


@pytest.mark.parametrize(
    ("model", "n", "full"),
    [("text-embedding-3-large", 256, 3072), ("text-embedding-3-small", 1024, 1536)],
)
def test_dimensions_cut_and_renormalise_the_openai_vectors(
    emu: EmulatorProcess, tmp_path: Path, model: str, n: int, full: int
) -> None:
    out = tmp_path / "v.parquet"
    code, err = embed(emu, corpus(tmp_path), out, "--model", model, "--dimensions", str(n))
    assert code == 0, err
    table, meta = read(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), n)
    assert meta[b"batch_embed.dim"] == str(n).encode()
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, n)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    for row, vector in zip(table.column("id").to_pylist(), vectors, strict=True):
        text = TEXTS[3] if row == 42 else TEXTS[row]
        np.testing.assert_allclose(vector, prefix(text, n, full), rtol=1e-5, atol=1e-6)


def test_gemini_is_asked_for_output_dimensionality(emu: EmulatorProcess, tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    model = ("--model", "gemini-embedding-001", "--dimensions", "768")
    code, err = embed(emu, corpus(tmp_path), out, *model)
    assert code == 0, err
    table = read(out)[0]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 768)
    vectors = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, 768)
    # The emulator answers Gemini's way: a 768-value prefix that is not unit length; the
    # client renormalises it.
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], prefix(TEXTS[0], 768), rtol=1e-5, atol=1e-6)


def test_another_n_on_the_same_output_is_refused_unless_fresh(
    emu: EmulatorProcess, tmp_path: Path
) -> None:
    source, out = corpus(tmp_path), tmp_path / "v.parquet"
    assert embed(emu, source, out, "--dimensions", "512")[0] == 0
    before = billed(emu)
    for extra in (("--dimensions", "256"), ()):
        code, err = embed(emu, source, out, *extra)
        assert code == 2, err
        assert "holds dim '512'" in err and "Traceback" not in err
    assert billed(emu) == before  # refused before any paid call
    code, err = embed(emu, source, out, "--dimensions", "256", "--fresh")
    assert code == 0, err
    assert read(out)[1][b"batch_embed.dim"] == b"256"


def billed(emu: EmulatorProcess) -> int:
    return int(emu.stats()["jobs_created"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--dimensions", "0"), "--dimensions"),
        (("--dimensions", "3073"), "dimensions: text-embedding-3-large takes 1 to 3072"),
        (
            ("--model", "gemini-embedding-001", "--dimensions", "64"),
            "dimensions: gemini-embedding-001 takes 128 to 3072",
        ),
    ],
)
def test_bad_dimensions_are_exit_2(
    emu: EmulatorProcess, tmp_path: Path, extra: tuple[str, ...], says: str
) -> None:
    code, err = embed(emu, corpus(tmp_path), tmp_path / "v.parquet", *extra)
    assert code == 2
    assert says in err and "Traceback" not in err


def readme_block(language: str, after: str) -> str:
    text = README.read_text()
    section = text[text.index(after) :]
    found = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_readme_duckdb_and_polars_searches_work(emu: EmulatorProcess, tmp_path: Path) -> None:
    out = tmp_path / "vectors.parquet"
    code, err = embed(emu, corpus(tmp_path), out, "--dimensions", "1024")
    assert code == 0, err
    sql = readme_block("sql", "## Reading the vectors")
    sql = sql.replace("'vectors.parquet'", f"'{out}'").replace("FLOAT[3072]", "FLOAT[1024]")
    dim_query, search = [q for q in sql.split(";") if q.strip()]
    assert duckdb.sql(dim_query).fetchall() == [("1024",)]
    rows = duckdb.sql(search).fetchall()
    assert len(rows) == 5
    assert rows[0][0] == 3 and rows[0][1] == pytest.approx(1.0, abs=1e-5)
    # Ranked as numpy ranks them from the expected vectors.
    query = prefix(TEXTS[3], 1024)
    scores = {i: float(prefix(t, 1024) @ query) for i, t in enumerate(TEXTS)}
    assert [r[0] for r in rows] == sorted(scores, key=lambda i: -scores[i])[:5]

    code = readme_block("python", "The same search in polars").replace(
        '"vectors.parquet"', repr(str(out))
    )
    code = code.replace("3072", "1024")
    scope: dict[str, object] = {}
    exec(compile(code, "README polars example", "exec"), scope)
    nearest = scope["nearest"]
    assert isinstance(nearest, pl.DataFrame)
    assert nearest["id"].to_list() == [r[0] for r in rows]
    assert pl.read_parquet(out).schema["embedding"] == pl.Array(pl.Float32, 1024)


def test_the_emulator_refuses_a_bad_output_dimensionality(emu: EmulatorProcess) -> None:
    import urllib.error
    import urllib.request

    for value in (64, 4000, "768", True):
        request = urllib.request.Request(
            emu.url + "/v2/gemini-embedding-001",
            data=orjson.dumps({"input": "x", "output_dimensionality": value}),
            headers={"x-api-key": KEY, "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=10)
        assert caught.value.code == 400
        assert b"output_dimensionality" in caught.value.read()
