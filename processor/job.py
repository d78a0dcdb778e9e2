"""The streaming job: Kinesis -> parse + tokenise -> engine, scoring, alerts, Delta (foreachBatch).

    spark-submit processor/job.py --profile local [--available-now]
    python -m processor.job --profile local [--available-now]

ingest() reads the stream, which the source parses and tokenises where it reads the records
(processor/parse.py's `ContractParser`, ADR 0023); write() starts the foreachBatch query whose
sink (processor/sinks.py) runs the feature engine (processor/engine/: dedupe, per-shard
watermark, features, state per batch id), scores, writes alerts, then the four Delta tables.
SIGTERM (or Ctrl+C) stops the query after the batch in flight.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a file by spark-submit: make the project importable
    # Python put processor/ itself first on sys.path; the project root must take its place, or
    # the package's modules would shadow standard-library modules of the same name.
    _here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(_here)]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.cli import configure_logging, probe_endpoint, run_cli
from config.exceptions import FraudPipelineError
from processor.alerts import AlertWriter
from processor.card_tokens import load_key
from processor.checkpoint_files import CheckpointFiles
from processor.cli import parse_args, settings_from_args
from processor.dev_token_key import ensure_token_key
from processor.drift import DriftMonitor
from processor.engine import EngineSettings, FeatureEngine, StateStore, delay_ms
from processor.engine.bootstrap import bootstrap_state, history_events
from processor.kinesis_source import register
from processor.kinesis_source.spool import BatchSpool
from processor.metrics import ProgressMetrics
from processor.python_workers import start_python_workers
from processor.resume import checkpoint_has_progress, lake_positions
from processor.scoring import FrameScorer, frame_scorer, load_card
from processor.sinks import LakeWriter
from processor.spark_session import build_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from config.settings import Settings

logger = logging.getLogger("processor.job")


def source_options(settings: Settings) -> dict[str, str]:
    """The Kinesis source's options for a profile."""
    aws = settings.aws
    options = {
        "streamName": settings.kinesis.stream_name,
        "region": aws.region,
        "startingPosition": settings.processor.starting_position,
        "maxRecordsPerShard": str(settings.processor.max_records_per_shard),
    }
    if aws.endpoint_url:
        options["endpointUrl"] = aws.endpoint_url
    if aws.access_key_id and aws.secret_access_key:
        options["awsAccessKeyId"] = aws.access_key_id
        options["awsSecretKey"] = aws.secret_access_key
    # Parse and tokenise where the records are read: a backlogged shard's next batch is parsed
    # in the source's read ahead, while this batch is still in the sink (ADR 0023).
    options["recordParser"] = "processor.parse:contract_parser"
    options["recordParserArgument"] = settings.processor.tokenization_key_env
    return options


def ingest(
    spark: SparkSession,
    settings: Settings,
    extra: dict[str, str] | None = None,
    spool: BatchSpool | None = None,
) -> DataFrame:
    """The stream's parsed events and dead letters (processor/parse.py's PARSED_SCHEMA).

    With a `spool` (one per query), the source also writes each batch's parsed records there,
    for the sink to take on the driver without Spark (ADR 0048): give the writer the same."""
    load_key(settings.processor.tokenization_key_env)  # a missing key fails before the query
    if spool is None:
        # Spark's Python workers start on the second core while the source is looked up and
        # planned, which runs one Python process at a time.
        start_python_workers(spark)
    register(spark)
    reader = spark.readStream.format("kinesis")
    spooled = {} if spool is None else {"driverSpool": str(spool.directory)}
    for key, value in {**source_options(settings), **spooled, **(extra or {})}.items():
        reader = reader.option(key, value)
    return reader.load()


def resume_options(spark: SparkSession, settings: Settings) -> dict[str, str]:
    """Source options that start a new checkpoint where the lake ends (see processor/resume)."""
    checkpoint = settings.processor.checkpoint_location
    if checkpoint_has_progress(spark, checkpoint):
        logger.info("--resume-from-lake ignored: checkpoint %s has progress", checkpoint)
        return {}
    positions = lake_positions(spark, settings.processor.lake_path)
    logger.info("new checkpoint: resuming after the lake's last records %s", positions)
    return {"startingSequenceNumbers": json.dumps(positions)} if positions else {}


def bootstrap_checkpoint(spark: SparkSession, settings: Settings, source: str) -> bool:
    """Warm start (processor/engine/bootstrap.py): on a checkpoint without progress, save the
    feature state `source`'s history leaves. False when the checkpoint already has one or
    has progress (then the flag is ignored)."""
    checkpoint = settings.processor.checkpoint_location
    store = StateStore(CheckpointFiles.of(settings))
    if checkpoint_has_progress(spark, checkpoint) or store.has_bootstrap():
        logger.info("--bootstrap-from ignored: checkpoint %s has progress or state", checkpoint)
        return False
    key = load_key(settings.processor.tokenization_key_env)
    state = bootstrap_state(
        history_events(source, key, spark),
        dedupe_retention_ms=delay_ms(settings.processor.dedupe_retention),
    )
    written = store.save_bootstrap(state)
    logger.info(
        "warm start from %s: %d cards, %d terminals, %d ids (%d bytes)",
        source,
        len(state.cards),
        len(state.terminals),
        len(state.seen),
        written,
    )
    return True


def feature_engine(settings: Settings) -> FeatureEngine:
    processor = settings.processor
    return FeatureEngine(
        StateStore(CheckpointFiles.of(settings)),
        EngineSettings(
            watermark_delay_ms=delay_ms(processor.watermark),
            idle_shard_timeout_ms=delay_ms(processor.idle_shard_timeout),
            dedupe_retention_ms=delay_ms(processor.dedupe_retention),
        ),
    )


def lake_writer(
    settings: Settings,
    score: FrameScorer | None = None,
    alerts: AlertWriter | None = None,
) -> LakeWriter:
    """The foreachBatch sink: engine, scores (when a scorer is given), alerts and the lake."""
    return LakeWriter(
        settings.processor.lake_path,
        settings.processor.checkpoint_location,
        feature_engine(settings),
        score=score,
        transaction_sinks=[alerts] if alerts is not None else [],
    )


def scoring_writer(settings: Settings, score: FrameScorer) -> LakeWriter:
    """The job's sink around `score`, the model `frame_scorer` loaded and checked."""
    writer = lake_writer(settings, score, AlertWriter(settings))
    # After the alerts: measuring drift is diagnostics and never holds an alert back.
    writer.transaction_sinks.append(
        DriftMonitor(load_card(settings), writer.stats, history_ms=writer.engine.history_ms)
    )
    return writer


def write(
    parsed: DataFrame,
    settings: Settings,
    writer: Callable[[DataFrame, int], None],
    available_now: bool,
) -> StreamingQuery:
    stream = (
        parsed.writeStream.queryName("fraud-processor")
        .foreachBatch(writer)
        .option("checkpointLocation", settings.processor.checkpoint_location)
    )
    if available_now:
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=settings.processor.trigger_interval)
    return stream.start()


def _last_batch(query: StreamingQuery) -> int:
    progress = query.lastProgress
    return int(progress["batchId"]) if progress else -1


def run_until_stopped(query: StreamingQuery, stop: threading.Event) -> None:
    """Wait for the query; on a stop request, stop it once the batch in flight has finished.

    With a backlog the next batch starts the moment one ends, so waiting for an idle trigger
    could wait forever: wait for the last completed batch id to move past the one we saw.
    """
    while query.isActive:
        if stop.is_set():
            seen = _last_batch(query)
            deadline = time.monotonic() + 300
            while query.status.get("isTriggerActive") and time.monotonic() < deadline:
                if _last_batch(query) > seen:
                    break
                time.sleep(0.2)
            logger.info("stopping the query after the current batch")
            query.stop()
            break
        query.awaitTermination(1)


def main(argv: list[str] | None = None) -> int:
    """Run the job; configuration errors raise before the JVM starts (see config/cli.py)."""
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = settings_from_args(args)
    probe_endpoint(settings.aws)  # a closed emulator port fails now, not after JVM start-up
    ensure_token_key(settings)  # on `local` a development key, on any other profile a secret
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model") as loading:
        # The model loads (scikit-learn's import, the pickle, its checks: ~1 s) while the JVM
        # starts, which mostly waits on another process.
        model = loading.submit(frame_scorer, settings)
        spark = build_spark(settings)
    spark.sparkContext.setLogLevel("WARN")
    try:
        writer = scoring_writer(settings, model.result())  # ModelError: the model does not fit
        alerts = next(s for s in writer.transaction_sinks if isinstance(s, AlertWriter))
        drift = next(s for s in writer.transaction_sinks if isinstance(s, DriftMonitor))
        listener = ProgressMetrics(
            writer.stats, settings.processor.metrics_port, args.metrics_host, alerts.stats, drift
        )
        alerts.on_written = listener.observe_alert_latencies
    except (FraudPipelineError, OSError):  # no model, a bad one, or the metrics port is taken
        spark.stop()
        raise
    spark.streams.addListener(listener)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("signal %d received", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        extra = dict(args.source_option)
        if args.resume_from_lake:
            extra.update(resume_options(spark, settings))
        if args.bootstrap_from:
            bootstrap_checkpoint(spark, settings, args.bootstrap_from)
        writer.spool = BatchSpool.create()
        records = ingest(spark, settings, extra, writer.spool)
        query = write(records, settings, writer, args.available_now)
    except FraudPipelineError:
        spark.stop()
        if writer.spool is not None:
            writer.spool.close()
        raise
    run_until_stopped(query, stop)
    writer.wait_for_compaction()
    error = query.exception()
    spark.streams.removeListener(listener)
    spark.stop()
    writer.spool.close()
    if error is not None:
        logger.error("query failed: %s", error)
        return 1
    logger.info("written in total: %s", writer.stats.totals)
    return 0


def cli() -> int:
    """Console script `fraud-processor`; `python -m processor.job` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
