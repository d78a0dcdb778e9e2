"""Features, scoring and alerts in the running stream (Kinesis and DynamoDB on moto)."""

from __future__ import annotations

import json
import random
import shutil
import zlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from chispa import assert_df_equality

from config.aws import make_client
from config.exceptions import ModelError
from config.settings import Settings
from ml_model.artifacts import CARD_FILE
from ml_model.features import FEATURE_NAMES, compute_features, from_row
from ml_model.history import _frame, _row
from processor.alerts import AlertWriter, scan_alerts
from processor.batch_progress import read_progress
from processor.checkpoint_files import CheckpointFiles
from processor.job import ingest, lake_writer, write
from processor.scoring import frame_scorer
from processor.sinks import table_path
from producer.generator import GeneratorOptions, TransactionGenerator
from scripts.setup_aws import ensure_alerts_table, ensure_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_stream_features_scores_and_alerts(
    spark: Any, settings: Settings, trained_model: Path
) -> None:
    settings = settings.with_overrides(
        kinesis={"shard_count": 4},
        processor={"max_records_per_shard": 250},
        model={"path": str(trained_model)},
    )
    # Dense history for few cards and terminals, so state matters.
    generator = TransactionGenerator(
        GeneratorOptions(
            seed=21, num_transactions=2_000, fraud_rate=0.03, num_customers=120, num_terminals=40
        )
    )
    records = list(generator.records())
    kinesis = make_client("kinesis", settings.aws)
    ensure_stream(kinesis, settings.kinesis.stream_name, 4)
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    # Four shards holding 10%, 20%, 30% and 40% of the cards, each in event-time order (as a
    # producer writes a shard), sent in a shuffled interleaving. Read 250 per shard per batch,
    # the sparse shards run days ahead of the dense ones in event time, and every terminal
    # sees cards of all four: its features must not depend on which shard was read first.
    shards = [
        int(shard["HashKeyRange"]["StartingHashKey"])
        for shard in kinesis.list_shards(StreamName=settings.kinesis.stream_name)["Shards"]
    ]
    by_shard: list[list[Any]] = [[] for _ in shards]
    for record in sorted(records, key=lambda r: json.loads(r.data)["event_time"]):
        share = zlib.crc32(record.partition_key.encode()) % 10
        by_shard[(share >= 1) + (share >= 3) + (share >= 6)].append(record)
    rng = random.Random(5)
    interleaved = [shard for shard, rows in enumerate(by_shard) for _ in rows]
    rng.shuffle(interleaved)
    cursors = [iter(rows) for rows in by_shard]
    entries = [
        {
            "Data": (record := next(cursors[shard])).data,
            "PartitionKey": record.partition_key,
            "ExplicitHashKey": str(shards[shard]),
        }
        for shard in interleaved
    ]
    for start in range(0, len(entries), 500):
        response = kinesis.put_records(
            StreamName=settings.kinesis.stream_name, Records=entries[start : start + 500]
        )
        assert response["FailedRecordCount"] == 0

    alerts = AlertWriter(settings)
    writer = lake_writer(settings, frame_scorer(settings), alerts)
    handed: dict[str, list[float]] = {}  # what the transaction sinks get (the drift monitor)
    handed_scores: dict[str, float] = {}

    def record(rows: list[dict[str, Any]], batch_id: int, columns: Any = None) -> None:
        ids = [r["transaction_id"] for r in rows]
        handed.update(zip(ids, columns.features.tolist(), strict=True))
        handed_scores.update(zip(ids, columns.scores["fraud_score"], strict=True))
        # The rows an alert or a review is for carry their scores; the others, only columns.
        decisions = columns.scores["decision"]
        assert [r.get("decision") for r in rows] == [d if d != "OK" else None for d in decisions]

    writer.transaction_sinks.append(record)
    query = write(ingest(spark, settings), settings, writer, True)
    query.awaitTermination()
    assert query.exception() is None
    assert query.lastProgress is not None and query.lastProgress["batchId"] >= 2  # several batches

    scored = spark.read.format("delta").load(
        table_path(settings.processor.lake_path, "transactions")
    )

    # 1. Parity: the stream's features are the training module's features, bit for bit.
    history = _frame(_row(json.loads(r.data)) for r in records)
    expected = compute_features(from_row(row) for row in history.to_dict("records"))
    assert writer.stats.totals["dead_letters"] == 0
    got = scored.select("transaction_id", *FEATURE_NAMES).toPandas().set_index("transaction_id")
    want = expected.set_index("transaction_id").loc[got.index]
    differ = [
        (tx, name, got.at[tx, name], want.at[tx, name])
        for name in FEATURE_NAMES
        for tx in got.index[~((got[name] == want[name]) | (got[name].isna() & want[name].isna()))]
    ]
    assert not differ, f"{len(differ)} features differ, e.g. {differ[:5]}"
    # The transaction sinks get the same features, one matrix row per row they are handed.
    assert handed.keys() == set(got.index)
    sunk = pd.DataFrame.from_dict(handed, orient="index", columns=list(FEATURE_NAMES))
    assert sunk.loc[got.index].equals(got), "the sinks' features differ from the lake's"
    held = [p.held for p in read_progress(CheckpointFiles.of(settings))]
    assert max(held) > 0 and held[-1] == 0, held  # terminal events waited, then all went out
    assert_df_equality(
        scored.select("transaction_id", *FEATURE_NAMES),
        spark.createDataFrame(expected),
        ignore_row_order=True,
        allow_nan_equality=True,
    )

    # 2. Every ALERT is in DynamoDB and every item is an ALERT at or above the threshold.
    card = json.loads((trained_model / CARD_FILE).read_text())
    rows = scored.select("transaction_id", "fraud_score", "decision", "reason_codes").collect()
    assert handed_scores == {r.transaction_id: r.fraud_score for r in rows}
    above = {r.transaction_id for r in rows if r.fraud_score >= card["threshold"]}
    alerted = {r.transaction_id for r in rows if r.decision == "ALERT"}
    assert alerted == above and alerted, "decision must follow the card's threshold"
    assert all(r.reason_codes for r in rows if r.decision != "OK")
    items = scan_alerts(settings)
    assert {item["transaction_id"]["S"] for item in items} == alerted
    assert len(items) == len(alerted) == alerts.stats.written
    for item in items:
        assert float(item["fraud_score"]["N"]) >= card["threshold"]
        assert item["model_version"]["S"] == card["version"]
        assert len(item["card_last4"]["S"]) == 4 and item["card_token"]["S"]
        assert item["reason_codes"]["L"] and int(item["alert_latency_ms"]["N"]) > 0
        assert int(item["expires_at"]["N"]) > 0

    # 3. A replayed batch overwrites its own items: nothing new appears.
    last = scored.where("decision = 'ALERT'").limit(5).collect()
    alerts([row.asDict() for row in last], 99)
    assert len(scan_alerts(settings)) == len(items)


def test_a_model_with_other_features_refuses_to_start(
    settings: Settings, trained_model: Path, tmp_path: Path
) -> None:
    doctored = tmp_path / "doctored"
    shutil.copytree(trained_model, doctored)
    card = json.loads((doctored / CARD_FILE).read_text())
    card["feature_names"] = card["feature_names"][1:] + ["merchant_risk_score"]
    (doctored / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="merchant_risk_score"):
        frame_scorer(settings.with_overrides(model={"path": str(doctored)}))
