"""Command-line options of the processor job; they override the profile's configuration.

    python -m processor.job --profile local --available-now

Options left out keep the profile's value (config/config.yaml, section `processor` unless
said otherwise). A bad option or configuration exits with status 2 and names it.
"""

from __future__ import annotations

import argparse

from config.cli import load_settings, new_parser
from config.settings import Settings

METRICS_HOST = "127.0.0.1"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("processor.job", __doc__)
    parser.add_argument(
        "--available-now", action="store_true", help="process what the stream holds now, then exit"
    )
    parser.add_argument(
        "--trigger-interval",
        default=None,
        help="time between micro-batches, e.g. '2 seconds' (default: the profile's)",
    )
    parser.add_argument(
        "--checkpoint-location",
        default=None,
        help="folder or s3a:// prefix of the query's checkpoint and the engine's state "
        "(default: the profile's)",
    )
    parser.add_argument(
        "--lake-path",
        default=None,
        help="folder or s3a:// prefix of the Delta tables (default: the profile's)",
    )
    parser.add_argument(
        "--shuffle-partitions",
        type=int,
        default=None,
        help="spark.sql.shuffle.partitions (default: the profile's)",
    )
    parser.add_argument(
        "--starting-position",
        choices=("TRIM_HORIZON", "LATEST"),
        default=None,
        help="where a new checkpoint starts reading each shard (default: the profile's)",
    )
    parser.add_argument(
        "--max-records-per-shard",
        type=int,
        default=None,
        help="most records read per shard per micro-batch (default: the profile's)",
    )
    parser.add_argument(
        "--watermark",
        default=None,
        help="how late (event time) an event may be before it is flagged late, e.g. "
        "'10 minutes' (default: the profile's)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus port; 0 disables it (default: the profile's)",
    )
    parser.add_argument(
        "--metrics-host",
        default=METRICS_HOST,
        help="address the Prometheus endpoint binds; 0.0.0.0 to reach it from outside a "
        "container or pod",
    )
    parser.add_argument(
        "--stream-name", default=None, help="Kinesis stream to read (default: the profile's)"
    )
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="AWS endpoint, e.g. an emulator's http://127.0.0.1:4566 (default: the profile's; "
        "none means real AWS)",
    )
    parser.add_argument(
        "--model-path",
        default=None,
        help="model folder or s3:// prefix (default: the profile's model.path)",
    )
    parser.add_argument(
        "--challenger",
        default=None,
        metavar="PATH",
        help="a shadow model's folder or s3:// prefix, scored locally beside the champion; its "
        "score and version go to the lake, it never decides or alerts (default: the profile's "
        "model.challenger_path)",
    )
    parser.add_argument(
        "--scorer",
        choices=("local", "sagemaker"),
        default=None,
        help="score in the job (local) or on a SageMaker endpoint (default: the profile's)",
    )
    parser.add_argument(
        "--endpoint-name",
        default=None,
        help="SageMaker endpoint, with --scorer sagemaker (default: the profile's)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="alert threshold in [0, 1] (default: the model card's)",
    )
    parser.add_argument(
        "--resume-from-lake",
        action="store_true",
        help="on a new (reset) checkpoint, start each shard right after the last record the lake "
        "holds, instead of at --starting-position; ignored when the checkpoint has progress",
    )
    parser.add_argument(
        "--bootstrap-from",
        default=None,
        metavar="LAKE|FILE.jsonl|FILE.parquet",
        help="on a new checkpoint, build the card and terminal feature state from this history "
        "(a lake folder, contract JSONL or lake-shaped Parquet) before the first batch; ignored "
        "when the checkpoint has progress",
    )
    parser.add_argument(
        "--source-option",
        type=_key_value,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra Kinesis source option; repeat for more",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    args.source_option = dict(args.source_option)
    return args


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.profile)
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
            "challenger_path": args.challenger,
            "scorer": args.scorer,
            "sagemaker_endpoint": args.endpoint_name,
            "threshold": args.threshold,
        }.items()
        if value is not None
    }
    aws = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    kinesis = {"stream_name": args.stream_name} if args.stream_name else {}
    return settings.with_overrides(processor=processor, aws=aws, kinesis=kinesis, model=model)
