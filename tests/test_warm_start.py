"""Warm start: a new checkpoint bootstrapped from history scores its first events with the
features training computes over the whole history; a cold one does not."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from chispa import assert_df_equality

from ml_model.features import FEATURE_NAMES, FeatureEvent, compute_features, from_row
from processor.checkpoint_files import CheckpointFiles
from processor.engine import EngineSettings, FeatureEngine, StateStore
from processor.engine.bootstrap import bootstrap_state, history_events
from processor.job import bootstrap_checkpoint
from processor.lake_tables import EVENT_TABLE, TRANSACTION_TABLE, event_table
from processor.parse import ContractParser
from producer.generator import GeneratorOptions, TransactionGenerator
from tests.engine_results import featured

KEY = os.environ["CARD_TOKEN_KEY"].encode()  # set by tests/conftest.py
MIN = 60_000
RETAIN = 35 * 1440 * MIN
ENGINE = EngineSettings(
    watermark_delay_ms=10 * MIN, idle_shard_timeout_ms=MIN, dedupe_retention_ms=RETAIN
)
ARRIVAL = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def stream() -> tuple[list[bytes], list[bytes]]:
    """Three days of two hundred customers' events: the first 85% is history, the rest new."""
    generator = TransactionGenerator(
        GeneratorOptions(seed=21, num_transactions=2_400, num_customers=200, fraud_rate=0.03)
    )
    payloads = [r.data for r in generator.records() if r.event_type is not None]
    cut = int(len(payloads) * 0.85)
    return payloads[:cut], payloads[cut:]


def parsed_rows(payloads: list[bytes]) -> list[dict[str, Any]]:
    """The payloads as the stream's parse step hands them to the engine (one shard, in order)."""
    n = len(payloads)
    batch = pa.RecordBatch.from_pydict(
        {
            "data": payloads,
            "streamName": ["s"] * n,
            "shardId": ["shard-0"] * n,
            "partitionKey": ["k"] * n,
            "sequenceNumber": [f"{i:030d}" for i in range(n)],
            "subSequenceNumber": [0] * n,
            "approximateArrivalTimestamp": pa.array([ARRIVAL] * n, pa.timestamp("us", "UTC")),
        }
    )
    parsed = pa.Table.from_batches([ContractParser("CARD_TOKEN_KEY")(batch)])
    rows = parsed.to_pylist()
    assert all(row["dead_letter_reason"] is None for row in rows)
    return rows


def streamed_features(checkpoint: Path, new: list[bytes]) -> pd.DataFrame:
    engine = FeatureEngine(StateStore(CheckpointFiles(str(checkpoint))), ENGINE)
    result = engine.process(parsed_rows(new), 0)
    return pd.DataFrame(
        [{"transaction_id": r["transaction_id"], **{n: r[n] for n in FEATURE_NAMES}}
         for r in featured(result)]
    )  # fmt: skip


def offline_features(history: list[bytes], new: list[bytes]) -> pd.DataFrame:
    """Training's batch feature code over the whole history, rows of the new events only."""
    events = [from_row(row) for row in parsed_rows([*history, *new])]
    frame = compute_features(events)
    new_ids = {json.loads(p).get("transaction_id") for p in new}
    return frame[frame["transaction_id"].isin(new_ids)]


def compare(spark: Any, streamed: pd.DataFrame, offline: pd.DataFrame) -> None:
    assert_df_equality(
        spark.createDataFrame(streamed.astype({n: float for n in FEATURE_NAMES})),
        spark.createDataFrame(offline.astype({n: float for n in FEATURE_NAMES})),
        ignore_row_order=True,
        ignore_nullable=True,
        allow_nan_equality=True,
    )


def test_bootstrapped_from_jsonl_the_next_features_equal_training(
    spark: Any, stream: tuple[list[bytes], list[bytes]], tmp_path: Path
) -> None:
    history, new = stream
    source = tmp_path / "history.jsonl"
    source.write_bytes(b"\n".join(history) + b"\n")
    store = StateStore(CheckpointFiles(str(tmp_path / "warm")))
    state = bootstrap_state(history_events(str(source), KEY), dedupe_retention_ms=RETAIN)
    store.save_bootstrap(state)

    offline = offline_features(history, new)
    assert len(offline) > 200
    compare(spark, streamed_features(tmp_path / "warm", new), offline)

    # Cold, the same events see an empty past: most of their features differ.
    cold = streamed_features(tmp_path / "cold", new).set_index("transaction_id")
    full = offline.set_index("transaction_id").loc[cold.index]
    differs = ~((cold == full) | (cold.isna() & full.isna())).all(axis=1)
    assert differs.mean() > 0.5, differs.mean()


def test_bootstrapped_from_parquet_the_next_features_equal_training(
    spark: Any, stream: tuple[list[bytes], list[bytes]], tmp_path: Path
) -> None:
    """A Parquet file of the lake's event columns (read through pandas, built into events as
    the stream builds its batches') warms the state as the JSONL file does."""
    history, new = stream
    source = tmp_path / "history.parquet"
    pd.DataFrame(parsed_rows(history)).to_parquet(source)
    events = history_events(str(source), KEY)
    assert len(events) == len(history)
    store = StateStore(CheckpointFiles(str(tmp_path / "warm")))
    store.save_bootstrap(bootstrap_state(events, dedupe_retention_ms=RETAIN))
    compare(spark, streamed_features(tmp_path / "warm", new), offline_features(history, new))


@pytest.mark.integration
def test_the_job_bootstraps_a_new_checkpoint_from_the_lake_once(
    spark: Any, stream: tuple[list[bytes], list[bytes]], settings: Any, tmp_path: Path
) -> None:
    history, new = stream
    rows = parsed_rows(history)
    lake = tmp_path / "lake"
    tables = {
        "transactions": (
            [r for r in rows if r["event_type"] == "transaction"],
            TRANSACTION_TABLE,
        ),
        "auth_events": ([r for r in rows if r["event_type"] == "auth"], EVENT_TABLE),
        "labels": ([r for r in rows if r["event_type"] == "chargeback"], EVENT_TABLE),
    }
    for name, (table_rows, schema) in tables.items():
        for row in table_rows:  # the lake's feature columns: not read by the bootstrap
            row.update(dict.fromkeys(FEATURE_NAMES, None))
        arrow = event_table(table_rows, schema)
        spark.createDataFrame(arrow).write.format("delta").save(str(lake / name))
    settings = settings.with_overrides(processor={"checkpoint_location": str(tmp_path / "cp")})

    assert bootstrap_checkpoint(spark, settings, str(lake)) is True
    assert bootstrap_checkpoint(spark, settings, str(lake)) is False  # once only
    # The lake's ids are the stream's dedupe keys: every one of them is held.
    seen = StateStore(CheckpointFiles(str(tmp_path / "cp"))).load(-1).seen
    assert len(seen) == len(rows)
    assert all(row["dedupe_key"] in seen for row in rows)
    compare(spark, streamed_features(tmp_path / "cp", new), offline_features(history, new))


def test_a_warm_start_drops_copies_of_history_and_scores_the_new(
    stream: tuple[list[bytes], list[bytes]], tmp_path: Path
) -> None:
    """History's ids are in the dedupe index: a copy of one, re-sent after the start, is
    dropped whatever its payload (history keeps none to compare), and new ids are scored."""
    history, new = stream
    state = bootstrap_state(history_events_of(history, tmp_path), dedupe_retention_ms=RETAIN)
    assert len(state.seen) == len(history)
    store = StateStore(CheckpointFiles(str(tmp_path / "warm")))
    store.save_bootstrap(state)

    resent = [p for p in history if json.loads(p)["event_type"] == "transaction"][-20:]
    changed = json.loads(resent[0])
    changed["amount"] = round(changed["amount"] + 1.0, 2)
    batch = [*resent, json.dumps(changed).encode(), *new]
    result = FeatureEngine(store, ENGINE).process(parsed_rows(batch), 0)

    assert result.duplicates == len(resent) + 1
    assert result.dead_letters == []
    resent_ids = {json.loads(p)["transaction_id"] for p in resent}
    scored = {row["transaction_id"] for row in result.transactions}
    assert not scored & resent_ids
    new_ids = {json.loads(p).get("transaction_id") for p in new} - {None}
    assert scored == new_ids


def test_a_warm_start_keeps_only_the_ids_within_the_dedupe_retention(
    stream: tuple[list[bytes], list[bytes]], tmp_path: Path
) -> None:
    history, _ = stream
    events = sorted(history_events_of(history, tmp_path), key=lambda e: e.time_ms)
    newest = events[-1].time_ms
    day = 1440 * MIN
    state = bootstrap_state(events, dedupe_retention_ms=day)
    kept = {f"{e.kind}:{e.event_id}" for e in events if e.time_ms + day > newest}
    assert 0 < len(kept) < len(events)
    assert len(state.seen) == len(kept)
    assert all(key in state.seen for key in kept)
    older = next(e for e in events if e.time_ms + day <= newest)
    assert f"{older.kind}:{older.event_id}" not in state.seen


def history_events_of(payloads: list[bytes], folder: Path) -> list[FeatureEvent]:
    source = folder / "history.jsonl"
    source.write_bytes(b"\n".join(payloads) + b"\n")
    return history_events(str(source), KEY)
