"""Per-record baseline consumer: the yardstick for issue 9's 20x throughput target.

    python -m scripts.bench_baseline --endpoint-url http://127.0.0.1:4566 --stream-name S \
        --model PATH --alerts-table T [--limit N] [--output bench-results/baseline.json]

Deliberately naive, no Spark: reads every shard from TRIM_HORIZON with GetRecords (shards in
turn, one page each, until each is drained) and handles each record on its own: parse and
validate, tokenise the card, update card and terminal features on dict state with the job's
update functions (one-event lists), score a one-row frame, one `put_item` per alert. No
checkpoints, Delta or watermark: events are taken in read order. The model predicts on
--model-threads OpenMP threads (default 1: per-row calls on more threads mostly wait on each
other, ~60 ms a row on a busy 2-core machine). Prints the figures and saves them to --output.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
from botocore.config import Config as BotoConfig
from threadpoolctl import threadpool_limits

from config.cli import configure_logging, new_parser, run_cli
from ml_model.artifacts import MODEL_FILE, load_model, read_artifact, read_card
from ml_model.features import ENTITIES_OF, ENTITY_KINDS, FEATURE_NAMES, entity_id, from_row
from ml_model.features.events import FEATURE_INPUTS, TRANSACTION, FeatureEvent
from ml_model.scorer import LocalScorer, check_features
from processor.card_tokens import card_token, load_key
from producer.contract import parse_event_time, parse_payload
from scripts.bench_results import save_results

logger = logging.getLogger(__name__)

KEY_ENV = "CARD_TOKEN_KEY"
DEFAULT_KEY = "benchmark-only-tokenisation-key"
TIME_FIELDS = ("event_time", "transaction_time")


@dataclass
class Tally:
    """What the run did, and where its time went (seconds, time.perf_counter)."""

    records: int = 0
    invalid: int = 0
    duplicates: int = 0
    transactions: int = 0
    alerts: int = 0
    read_s: float = 0.0  # GetRecords calls
    parse_s: float = 0.0  # parse, validate, tokenise, build the row
    features_s: float = 0.0  # FeatureEvent, dedupe, state updates
    scoring_s: float = 0.0  # one-row frame + LocalScorer.score
    alert_write_s: float = 0.0  # put_item calls


def _session(endpoint_url: str | None, region: str) -> boto3.Session:
    """The default credential chain; an emulator (endpoint given) takes any credentials."""
    session = boto3.Session(region_name=region)
    if endpoint_url and session.get_credentials() is None:
        return boto3.Session("testing", "testing", region_name=region)
    return session


def read_stream(
    kinesis: Any, stream: str, per_call: int, tally: Tally
) -> Iterator[tuple[bytes, datetime | None]]:
    """(data, arrival time) of every record; a shard is done at an empty, caught-up answer."""
    pages = kinesis.get_paginator("list_shards").paginate(StreamName=stream)
    shards = [shard["ShardId"] for page in pages for shard in page["Shards"]]
    start = {"StreamName": stream, "ShardIteratorType": "TRIM_HORIZON"}
    iterators: dict[str, str] = {
        shard: kinesis.get_shard_iterator(ShardId=shard, **start)["ShardIterator"]
        for shard in shards
    }
    while iterators:
        for shard_id, iterator in list(iterators.items()):
            began = time.perf_counter()
            answer = kinesis.get_records(ShardIterator=iterator, Limit=per_call)
            tally.read_s += time.perf_counter() - began
            following = answer.get("NextShardIterator")
            drained = not answer["Records"] and answer.get("MillisBehindLatest", 0) == 0
            if following is None or drained:  # closed shard, or nothing more to read
                del iterators[shard_id]
            else:
                iterators[shard_id] = following
            for record in answer["Records"]:
                yield record["Data"], record.get("ApproximateArrivalTimestamp")


class Baseline:
    """One record at a time: parse, features on dict state, score one row, alert."""

    def __init__(self, scorer: LocalScorer, key: bytes, dynamodb: Any, table: str) -> None:
        self.scorer = scorer
        self.key = key
        self.dynamodb = dynamodb
        self.table = table
        # entity kind (card, terminal) -> entity id (card token, terminal id) -> its state
        self.states: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in ENTITY_KINDS}
        self.seen: set[tuple[str, str]] = set()
        self.tally = Tally()

    def handle(self, data: bytes, arrival: datetime | None) -> None:
        tally = self.tally
        tally.records += 1
        began = time.perf_counter()
        event, _ = parse_payload(data, arrival)
        if event is None:
            tally.invalid += 1
            tally.parse_s += time.perf_counter() - began
            return
        row = {name: event.get(name) for name in FEATURE_INPUTS}
        row["card_token"] = card_token(event["card_number"], self.key)
        for name in TIME_FIELDS:
            if event.get(name):
                row[name] = parse_event_time(event[name])
        parsed = time.perf_counter()
        tally.parse_s += parsed - began
        features = self._features(from_row(row))
        tally.features_s += time.perf_counter() - parsed
        if features is not None:
            self._score(row, features)

    def _features(self, event: FeatureEvent) -> dict[str, float] | None:
        """The transaction's features (None for other events and for duplicates)."""
        if (event.kind, event.event_id) in self.seen:
            self.tally.duplicates += 1
            return None
        self.seen.add((event.kind, event.event_id))
        features: dict[str, float] = {}
        for kind in ENTITIES_OF[event.kind]:
            entity = entity_id(kind, event)
            if entity is None:
                continue
            fresh, update, _ = ENTITY_KINDS[kind]
            states = self.states[kind]
            state = states.get(entity)
            states[entity], produced = update(fresh() if state is None else state, [event])
            for _, values in produced:
                features.update(values)
        return features if event.kind == TRANSACTION else None

    def _score(self, row: dict[str, Any], features: dict[str, float]) -> None:
        tally = self.tally
        began = time.perf_counter()
        frame = pd.DataFrame([features], columns=list(FEATURE_NAMES))
        score = float(self.scorer.score(frame)["fraud_score"].iloc[0])
        scored = time.perf_counter()
        tally.scoring_s += scored - began
        tally.transactions += 1
        if score < self.scorer.threshold:
            return
        item = {
            "transaction_id": {"S": row["transaction_id"]},
            "card_token": {"S": row["card_token"]},
            "fraud_score": {"N": f"{score:.6f}"},  # the decimal text alert_item's Decimal gives
            "model_version": {"S": self.scorer.card.version},
        }
        self.dynamodb.put_item(TableName=self.table, Item=item)
        tally.alerts += 1
        tally.alert_write_s += time.perf_counter() - scored


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault(KEY_ENV, DEFAULT_KEY)
    card = read_card(args.model)  # as processor/scoring.py: card threshold, no overrides
    check_features(card, FEATURE_NAMES)
    scorer = LocalScorer(load_model(read_artifact(args.model, MODEL_FILE), card, args.model), card)
    session = _session(args.endpoint_url, args.region)
    config = BotoConfig(retries={"max_attempts": 8, "mode": "adaptive"})
    kinesis = session.client("kinesis", endpoint_url=args.endpoint_url, config=config)
    dynamodb = session.client("dynamodb", endpoint_url=args.endpoint_url, config=config)
    baseline = Baseline(scorer, load_key(KEY_ENV), dynamodb, args.alerts_table)
    records = read_stream(kinesis, args.stream_name, args.records_per_call, baseline.tally)
    load_before = os.getloadavg()
    with threadpool_limits(limits=args.model_threads or None):
        began = time.perf_counter()
        for data, arrival in records:
            baseline.handle(data, arrival)
            if args.limit is not None and baseline.tally.records >= args.limit:
                break
        seconds = time.perf_counter() - began
    logger.info("%d records in %.1f s", baseline.tally.records, seconds)
    return {
        "consumer": "per-record baseline",
        "stream": args.stream_name,
        "model_version": card.version,
        "threshold": scorer.threshold,
        "records_per_call": args.records_per_call,
        "model_threads": args.model_threads or "library default",
        **{key: round(value, 3) for key, value in asdict(baseline.tally).items()},
        "seconds": round(seconds, 3),
        "events_per_s": round(baseline.tally.records / seconds, 1) if seconds else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def main_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_baseline", __doc__, profile=False)
    parser.add_argument(
        "--endpoint-url", default=None, help="emulator endpoint (default: real AWS)"
    )
    parser.add_argument("--stream-name", required=True, help="Kinesis stream to read")
    parser.add_argument("--region", default="us-east-1", help="AWS region")
    parser.add_argument("--model", required=True, help="folder with model.joblib + card")
    parser.add_argument("--alerts-table", required=True, help="DynamoDB table of the alerts")
    parser.add_argument(
        "--limit", type=int, default=None, help="stop after N records (default: all)"
    )
    parser.add_argument("--records-per-call", type=int, default=1000, help="GetRecords Limit")
    parser.add_argument(
        "--model-threads", type=int, default=1, help="OpenMP threads; 0: library default"
    )
    parser.add_argument(
        "--output", default="bench-results/baseline.json", help="where the figures are saved"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = main_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    results = run(args)
    save_results(results, Path(args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
