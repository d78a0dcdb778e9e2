"""Command-line options of the processor job; they override the profile's configuration."""

from __future__ import annotations

import argparse

from config.settings import Settings, load_config


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="processor.job", description=__doc__)
    parser.add_argument("--profile", default=None, help="config profile (default: local)")
    parser.add_argument(
        "--available-now", action="store_true", help="process what the stream holds now, then exit"
    )
    parser.add_argument("--trigger-interval", default=None, help="e.g. '2 seconds'")
    parser.add_argument("--checkpoint-location", default=None)
    parser.add_argument("--lake-path", default=None, help="folder or s3a:// prefix of the tables")
    parser.add_argument("--shuffle-partitions", type=int, default=None)
    parser.add_argument("--starting-position", choices=("TRIM_HORIZON", "LATEST"), default=None)
    parser.add_argument("--max-records-per-shard", type=int, default=None)
    parser.add_argument("--watermark", default=None, help="e.g. '10 minutes'")
    parser.add_argument("--metrics-port", type=int, default=None, help="0 disables Prometheus")
    parser.add_argument("--stream-name", default=None)
    parser.add_argument("--endpoint-url", default=None)
    parser.add_argument("--model-path", default=None, help="model folder or s3:// prefix")
    parser.add_argument("--scorer", choices=("local", "sagemaker"), default=None)
    parser.add_argument(
        "--endpoint-name", default=None, help="SageMaker endpoint (--scorer sagemaker)"
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="override the card's threshold"
    )
    parser.add_argument(
        "--resume-from-lake",
        action="store_true",
        help="on a new (reset) checkpoint, start each shard right after the last record the lake "
        "holds, instead of at --starting-position; ignored when the checkpoint has progress",
    )
    parser.add_argument(
        "--source-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra Kinesis source option",
    )
    args = parser.parse_args(argv)
    args.source_option = dict(args.source_option)
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_config(args.profile)
    processor = {
        name: value
        for name, value in {
            "trigger_interval": args.trigger_interval,
            "checkpoint_location": args.checkpoint_location,
            "lake_path": args.lake_path,
            "shuffle_partitions": args.shuffle_partitions,
            "starting_position": args.starting_position,
            "max_records_per_shard": args.max_records_per_shard,
            "watermark": args.watermark,
            "metrics_port": args.metrics_port,
        }.items()
        if value is not None
    }
    model = {
        name: value
        for name, value in {
            "path": args.model_path,
            "scorer": args.scorer,
            "sagemaker_endpoint": args.endpoint_name,
            "threshold": args.threshold,
        }.items()
        if value is not None
    }
    aws = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    kinesis = {"stream_name": args.stream_name} if args.stream_name else {}
    return settings.with_overrides(processor=processor, aws=aws, kinesis=kinesis, model=model)
