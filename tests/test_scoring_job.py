"""Features, scoring and alerts in the running stream (Kinesis and DynamoDB on moto)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality

from config.aws import make_client
from config.exceptions import ModelError
from config.settings import Settings
from ml_model.artifacts import CARD_FILE
from ml_model.features import FEATURE_NAMES, compute_features, from_row
from ml_model.history import _frame, _row
from processor.alerts import AlertWriter, scan_alerts
from processor.job import ingest, lake_writer, scoring_writer, transform, write
from processor.scoring import frame_scorer
from processor.sinks import table_path
from producer.generator import GeneratorOptions, TransactionGenerator
from scripts.setup_aws import ensure_alerts_table, ensure_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_stream_features_scores_and_alerts(
    spark: Any, settings: Settings, trained_model: Path
) -> None:
    settings = settings.with_overrides(
        kinesis={"shard_count": 1},
        processor={"max_records_per_shard": 700},
        model={"path": str(trained_model)},
    )
    # Dense history for few cards and terminals, so state matters; event-time order on one
    # shard, so the stream sees exactly the order training does (see README: event time).
    generator = TransactionGenerator(
        GeneratorOptions(
            seed=21, num_transactions=2_000, fraud_rate=0.03, num_customers=120, num_terminals=40
        )
    )
    records = sorted(generator.records(), key=lambda r: json.loads(r.data)["event_time"])
    kinesis = make_client("kinesis", settings.aws)
    ensure_stream(kinesis, settings.kinesis.stream_name, 1)
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    # PutRecords calls in event-time order (the producer's writer holds back a card's second
    # record for the next call, which reorders dense history beyond the 10-minute watermark).
    for start in range(0, len(records), 500):
        chunk = records[start : start + 500]
        entries = [{"Data": r.data, "PartitionKey": r.partition_key} for r in chunk]
        response = kinesis.put_records(StreamName=settings.kinesis.stream_name, Records=entries)
        assert response["FailedRecordCount"] == 0

    alerts = AlertWriter(settings)
    writer = lake_writer(settings, frame_scorer(settings), alerts)
    query = write(transform(ingest(spark, settings), settings), settings, writer, True)
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
    assert_df_equality(
        scored.select("transaction_id", *FEATURE_NAMES),
        spark.createDataFrame(expected),
        ignore_row_order=True,
        allow_nan_equality=True,
    )

    # 2. Every ALERT is in DynamoDB and every item is an ALERT at or above the threshold.
    card = json.loads((trained_model / CARD_FILE).read_text())
    rows = scored.select("transaction_id", "fraud_score", "decision", "reason_codes").collect()
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
    spark: Any, settings: Settings, trained_model: Path, tmp_path: Path
) -> None:
    doctored = tmp_path / "doctored"
    shutil.copytree(trained_model, doctored)
    card = json.loads((doctored / CARD_FILE).read_text())
    card["feature_names"] = card["feature_names"][1:] + ["merchant_risk_score"]
    (doctored / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="merchant_risk_score"):
        scoring_writer(spark, settings.with_overrides(model={"path": str(doctored)}))
