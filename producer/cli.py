"""Command line of the producer.

    python -m producer.main [send options]      generate (or --replay FILE) and send
    python -m producer.main test [--profile P]  check connectivity and the stream
    python -m producer.main serve [--port N]    the HTTP control API

Every argument is checked before anything is sent; a bad one exits with status 2 and names it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING

from config.aws import make_client
from config.cli import (
    EXIT_INTERRUPTED,
    configure_logging,
    load_settings,
    new_parser,
    probe_endpoint,
    run_cli,
)
from config.settings import Settings
from producer.generator import NETWORK_PROFILES, GeneratorOptions, TransactionGenerator
from producer.replay import read_replay_file
from producer.runner import Pacing, run
from producer.sinks import check_stream, file_sink, kinesis_sink, stdout_sink

if TYPE_CHECKING:
    from collections.abc import Iterable

    from producer.records import OutgoingRecord
    from producer.sinks import Sink

logger = logging.getLogger("producer")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be between 0 and 0.5, got {value}")
    return value


def _batch_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and 500 (PutRecords limit), got {value}"
        )
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="AWS endpoint, e.g. an emulator's http://127.0.0.1:4566 (default: the profile's; "
        "none means real AWS)",
    )
    parser.add_argument(
        "--stream-name", default=None, help="Kinesis stream (default: the profile's)"
    )
    parser.add_argument("--region", default=None, help="AWS region (default: the profile's)")
    parser.add_argument("-v", "--verbose", action="store_true", help="same as --log-level DEBUG")


def _logging(args: argparse.Namespace) -> None:
    configure_logging("DEBUG" if args.verbose else args.log_level, args.log_format)


def build_send_parser() -> argparse.ArgumentParser:
    parser = new_parser("producer.main", __doc__)
    _common(parser)
    parser.add_argument(
        "--num-transactions",
        type=_positive_int,
        default=None,
        help="transactions to generate (default: unbounded; stop with --duration or Ctrl+C)",
    )
    parser.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        help="records per PutRecords call, 1-500 (default: the profile's producer.batch_size)",
    )
    parser.add_argument(
        "--rate",
        type=_non_negative_float,
        default=None,
        help="events per second, 0 = as fast as possible (default: the profile's)",
    )
    parser.add_argument(
        "--duration",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS (default: no limit)",
    )
    parser.add_argument(
        "--fraud-rate",
        type=_fraction,
        default=None,
        help="share of fraudulent transactions, 0-0.5 (default: the profile's)",
    )
    parser.add_argument(
        "--anomaly-rate",
        type=_fraction,
        default=None,
        help="share of broken records, 0-0.5 (default: the profile's)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed; same seed, same bytes (default: the profile's)",
    )
    parser.add_argument(
        "--network",
        choices=NETWORK_PROFILES,
        default=None,
        help="delivery delay profile (default: the profile's producer.network)",
    )
    parser.add_argument(
        "--start-time-ms",
        type=int,
        default=None,
        help="event time of the first event, epoch ms (default: 2026-01-01T00:00:00Z)",
    )
    parser.add_argument(
        "--sink",
        choices=("kinesis", "stdout", "file"),
        default="kinesis",
        help="where the records go: the stream, JSON lines on stdout, or a file (--output)",
    )
    parser.add_argument("--output", default=None, help="JSONL path, required with --sink file")
    parser.add_argument(
        "--replay",
        default=None,
        metavar="FILE",
        help="send a JSONL file of events instead of generating them",
    )
    parser.add_argument(
        "--pace",
        choices=("rate", "event-time"),
        default="rate",
        help="replay pacing: --rate, or the events' own times",
    )
    parser.add_argument(
        "--speedup", type=float, default=1.0, help="event-time pacing speed-up factor"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.profile)
    aws: dict[str, object] = {}
    if args.endpoint_url:
        aws["endpoint_url"] = args.endpoint_url
    if args.region:
        aws["region"] = args.region
    kinesis = {"stream_name": args.stream_name} if args.stream_name else {}
    return settings.with_overrides(aws=aws, kinesis=kinesis)


def _records(args: argparse.Namespace, settings: Settings) -> Iterable[OutgoingRecord]:
    if args.replay:
        return read_replay_file(args.replay)
    p = settings.producer
    options = GeneratorOptions(
        seed=p.seed if args.seed is None else args.seed,
        num_transactions=args.num_transactions,
        fraud_rate=p.fraud_rate if args.fraud_rate is None else args.fraud_rate,
        anomaly_rate=p.anomaly_rate if args.anomaly_rate is None else args.anomaly_rate,
        network=args.network or p.network,
        **({"start_time_ms": args.start_time_ms} if args.start_time_ms is not None else {}),
    )
    return TransactionGenerator(options).records()


def _sink(args: argparse.Namespace, settings: Settings) -> Sink:
    if args.sink == "stdout":
        return stdout_sink()
    if args.sink == "file":
        return file_sink(args.output)
    probe_endpoint(settings.aws)  # a closed emulator port fails at once, not after retries
    return kinesis_sink(settings, batch_size=args.batch_size)


def send(argv: list[str]) -> int:
    parser = build_send_parser()
    args = parser.parse_args(argv)
    _logging(args)
    if args.sink == "file" and not args.output:
        parser.error("argument --output: required with --sink file")
    if args.speedup <= 0:
        parser.error("argument --speedup: must be > 0")
    settings = _settings(args)
    records = _records(args, settings)  # validates generator options / the replay file
    sink = _sink(args, settings)  # checks the stream exists before anything is sent
    if args.num_transactions is None and args.duration is None and not args.replay:
        logger.info("no --num-transactions or --duration: sending until Ctrl+C")
    rate = settings.producer.rate if args.rate is None else args.rate
    pacing = Pacing(
        rate=rate,
        by_event_time=bool(args.replay) and args.pace == "event-time",
        speedup=args.speedup,
        duration_s=args.duration,
    )
    interrupted = False
    try:
        run(
            records,
            sink,
            pacing,
            stats_interval_s=settings.producer.stats_interval_s,
            on_stats=lambda line: logger.info("stats %s", line),
        )
    except KeyboardInterrupt:
        interrupted = True
        sink.close()
    summary = sink.stats.snapshot()
    summary["failed_records_file"] = (
        settings.producer.failed_records_path if summary["failed"] else None
    )
    print(
        json.dumps({"summary": summary}), file=sys.stderr if args.sink == "stdout" else sys.stdout
    )
    if interrupted:
        return EXIT_INTERRUPTED
    return 1 if summary["failed"] else 0


def build_test_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "producer.main", "Check that the stream is reachable and ACTIVE.", prog_suffix="test"
    )
    _common(parser)
    return parser


def test_connection(argv: list[str]) -> int:
    args = build_test_parser().parse_args(argv)
    _logging(args)
    settings = _settings(args)
    probe_endpoint(settings.aws)
    summary = check_stream(make_client("kinesis", settings.aws), settings.kinesis.stream_name)
    status = summary["StreamStatus"]
    print(
        f"stream {settings.kinesis.stream_name}: {status}, "
        f"{summary['OpenShardCount']} open shards, "
        f"endpoint {settings.aws.endpoint_url or 'AWS'}"
    )
    return 0 if status == "ACTIVE" else 1


def build_serve_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "producer.main", "The producer's HTTP control API (docs at /docs).", prog_suffix="serve"
    )
    _common(parser)
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind; 0.0.0.0 to reach it from outside a container or pod "
        "(default: the profile's producer.api_host, 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: the profile's producer.api_port)"
    )
    return parser


def serve(argv: list[str]) -> int:
    args = build_serve_parser().parse_args(argv)
    _logging(args)
    settings = _settings(args)
    import uvicorn

    from producer.api import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host or settings.producer.api_host,
        port=args.port or settings.producer.api_port,
        log_config=None,  # uvicorn's records go through our handler (--log-format)
        log_level="debug" if args.verbose else args.log_level.lower(),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "test":
        return test_connection(argv[1:])
    if argv and argv[0] == "serve":
        return serve(argv[1:])
    if argv and argv[0] == "send":
        argv = argv[1:]
    return send(argv)


def cli() -> int:
    """Console script `fraud-producer`; `python -m producer.main` runs the same."""
    return run_cli(main)
