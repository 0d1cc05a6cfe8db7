"""The fault campaign of issue 4: every fault at once, and still no row lost, doubled or wrong."""

from __future__ import annotations

import asyncio
from pathlib import Path

from batch_embed import RunConfig, embed
from batch_embed.emulator import Emulator, EmulatorConfig
from batch_embed.retry import RetryPolicy
from tests.pipeline_fixtures import assert_vectors, error_rows, output_rows, write_jsonl

KEY = "sk-test-faults-0123456789"
ROWS = 2000


async def test_all_faults_at_once_lose_nothing(tmp_path: Path) -> None:
    rows = []
    for i in range(ROWS):
        text = f"campaign text {i % 1800}"
        if i % 97 == 0:
            text += " [[blocked]]"
        rows.append({"id": i, "text": text})
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    texts = {r["id"]: r["text"] for r in rows}
    emulator = EmulatorConfig(
        latency=(0.02, 0.2),
        error_rate=0.03,
        drop_rate=0.02,
        lost_submit_rate=0.02,
        fail_rate=0.01,
        submit_limit="250/s",
        read_limit="600/s",
        retry_after_rate=0.5,
        result_ttl=2.0,
        seed=11,
    )
    async with Emulator(emulator) as emu:

        async def storms() -> None:
            """Two 429 storms: without Retry-After, then with it; then the limits lift."""
            await asyncio.sleep(1.0)
            emu.update(submit_limit="60/s", read_limit="150/s", retry_after_rate=0.0)
            await asyncio.sleep(0.7)
            emu.update(retry_after_rate=1.0, retry_after_date_rate=0.0)
            await asyncio.sleep(0.7)
            emu.update(submit_limit=None, read_limit=None)

        storm = asyncio.create_task(storms())
        result = await embed(
            RunConfig(
                inputs=(str(source),),
                output=tmp_path / "out.parquet",
                base_url=emu.url,
                api_key=KEY,
                id_field="id",
                rpm=60 * 300.0,
                read_rate=800.0,
                max_in_flight=256,
                retention=60.0,
                retention_margin=5.0,
                rows_per_part=300,
                retry=RetryPolicy(base=0.01, cap=0.1, max_attempts=10),
            )
        )
        stats = emu.stats()
        storm.cancel()
    got = output_rows(result.layout)  # fails on a duplicated id
    errors = error_rows(result.layout)  # fails on a duplicated id
    assert not set(got) & set(errors), "a row is both embedded and failed"
    assert set(got) | set(errors) == set(texts), "a row is missing"
    assert_vectors(got, texts)
    assert result.stats.unbalanced == []
    assert result.stats.rows_read == ROWS
    assert result.stats.rows_embedded + result.stats.rows_failed == ROWS
    for key, record in errors.items():
        assert record["kind"] and record["message"], key
        if "[[blocked]]" in texts[key]:
            assert record["kind"] == "failed" and "blocked" in str(record["message"]).lower()
    blocked = {k for k, t in texts.items() if "[[blocked]]" in t}
    assert blocked <= set(errors)
    # The faults really happened.
    assert stats["faults"]["error"] > 0 and stats["faults"]["drop"] > 0
    assert stats["faults"]["lost_submit"] > 0
    assert sum(stats["rate_limited"].values()) > 0
    # Every extra job the API billed is accounted for by a reason the run reports.
    extra = stats["jobs_created"] - stats["distinct_texts"]
    assert (
        extra
        <= result.stats.possibly_billed_twice
        + sum(result.stats.resubmits.values())
        + (stats["faults"]["lost_submit"])
    )
