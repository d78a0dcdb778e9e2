"""Scoring benchmark: features + scoring + sinks on local[2], alert latency, vectorised scoring.

    python -m scripts.bench_scoring [--events 20000] [--rates 1000,200] [--duration 30]

Starts its own moto server and trains a small model (or uses --model PATH). Three figures:
1. throughput: a pre-loaded stream through the whole job (features, scoring, Delta, DynamoDB)
   with an availableNow trigger, events/s;
2. latency: the job running continuously (1 s trigger, --trigger) while a producer process of
   its own sends at each of --rates for --duration seconds, each event stamped with its send
   time as event time; p50/p95/p99 of event time -> alert written in DynamoDB (the first tenth
   dropped as warm-up), and for every transaction arrival -> its batch's alerts written (the
   latency its alert had or would have had: a p99 of thousands, not of a few hundred alerts).
   A rate above what the job sustains shows as latency growing with the backlog;
3. the same batch of transactions scored vectorised (one call) and row by row (one call per
   row): the ratio of the two.
Prints the figures and saves them to bench-results/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from config.aws import make_client
from config.settings import Settings, load_config
from ml_model.artifacts import read_model
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import LocalScorer
from ml_model.train import main as train_main
from processor.alerts import AlertWriter
from processor.job import ingest, lake_writer, write
from processor.kinesis_source.spool import BatchSpool
from processor.metrics import batch_summary
from processor.scoring import frame_scorer
from processor.sinks import table_path
from processor.spark_session import build_spark
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats
from scripts import bench_baseline
from scripts.bench_results import RESULTS, save_results
from scripts.bench_streams import latency_records, restamped
from scripts.local_aws import LocalAws, free_port, start, stop
from scripts.setup_aws import ensure_alerts_table, ensure_stream

SMALL_MODEL = ["--days", "16", "--customers", "300", "--terminals", "120", "--fraud-rate", "0.03",
               "--warmup-days", "3", "--gap-days", "1", "--validation-days", "4",
               "--test-days", "4", "--no-search"]  # fmt: skip


def _run_settings(base: Settings, root: Path, name: str) -> Settings:
    return base.with_overrides(
        kinesis={"stream_name": f"bench-{name}"},
        dynamodb={"alerts_table": f"bench-{name}-alerts"},
        processor={
            "lake_path": str(root / name / "lake"),
            "checkpoint_location": str(root / name / "checkpoint"),
        },
    )


def _prepare(settings: Settings) -> None:
    """The run's stream and alerts table."""
    kinesis = make_client("kinesis", settings.aws)
    ensure_stream(kinesis, settings.kinesis.stream_name, settings.kinesis.shard_count)
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)


def _writer(settings: Settings) -> KinesisWriter:
    failed = Path(settings.processor.lake_path).parent / "failed_records.jsonl"
    kinesis = make_client("kinesis", settings.aws)
    return KinesisWriter(kinesis, settings.kinesis.stream_name, SendStats(), failed)


def send_at_rate(settings: Settings, rate: int, duration: float, sent: Any) -> None:
    """The latency runs' producer: `rate` events/s for `duration` s, each stamped with its send
    time as event time. It runs in a process of its own, as a producer does in a deployment: in
    the driver's process its Python competed with the job's for the GIL (py-spy: 41% of the
    driver process's samples were the sender's)."""
    sender = _writer(settings)
    records = latency_records()
    tick = 0.1
    per_tick = max(1, int(rate * tick))
    next_at = time.monotonic()
    ends_at = next_at + duration
    while time.monotonic() < ends_at:
        now_ms = int(time.time() * 1000)
        sender.put(restamped(next(records), now_ms) for _ in range(per_tick))
        sender.flush()
        sent.value = sender.stats.sent
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))


def _descendants() -> dict[int, str]:
    """This process and its descendants (the JVM, Spark's Python workers, the source's
    driver-side process, moto), each with its role: driver, java, moto, source, workers."""
    parents: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((line for line in text.splitlines() if line.startswith("PPid:")), "PPid: 0")
        parents[int(status.parent.name)] = int(ppid.split()[1])
    me = os.getpid()

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
        return False

    roles: dict[int, str] = {}
    for pid in parents:
        if not descends(pid):
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if pid == me:
            roles[pid] = "driver"
        elif "moto_server" in command:
            roles[pid] = "moto"
        elif "python_streaming_source_runner" in command:
            roles[pid] = "source"
        elif "pyspark.daemon" in command or "pyspark.worker" in command:
            roles[pid] = "workers"
        elif "java" in command.split(" ", 1)[0]:
            roles[pid] = "java"
        else:
            roles[pid] = "other"
    return roles


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory (VmHWM) of the driver, the JVM, Spark's Python workers and moto
    (processes of one role summed), read when called: a process that has ended (the source's,
    with its query) is not in it."""
    out: dict[str, float] = {}
    for pid, role in _descendants().items():
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                out[role] = round(out.get(role, 0.0) + int(line.split()[1]) / 1024, 1)
    return out


CpuReading = dict[int, tuple[str, float]]


def cpu_seconds() -> CpuReading:
    """CPU seconds (user + system) each process of `_descendants` has used so far, with its
    role. Children's time is left out: a reaped child was read while it lived (`cpu_used`)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: CpuReading = {}
    for pid, role in _descendants().items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command: state is field 3, utime and stime fields 14 and 15.
        out[pid] = (role, (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_used(before: CpuReading, readings: list[CpuReading], seconds: float) -> dict[str, Any]:
    """CPU seconds per role since `before`, from each process's last reading (the source's
    driver-side process ends with the query, so it is read after every batch too)."""
    last: CpuReading = {}
    for reading in readings:
        for pid, (role, total) in reading.items():
            # A process that has exited but is not yet reaped has no command line any more:
            # it keeps the role it was seen with while it ran.
            seen = last.get(pid, (role, 0.0))[0]
            last[pid] = (role if seen == "other" else seen, total)
    used: dict[str, float] = {}
    for pid, (role, total) in last.items():
        used[role] = used.get(role, 0.0) + total - before.get(pid, (role, 0.0))[1]
    return {
        "seconds_by_role": {role: round(value, 1) for role, value in sorted(used.items())},
        "cores_busy": round(sum(used.values()) / seconds, 2),
    }


def state_report(writer: Any) -> dict[str, Any]:
    """Bytes of the engine's state per entity kind (pickled, as it is saved)."""
    import pickle

    state = writer.engine.state
    if state is None:
        return {}
    report: dict[str, Any] = {}
    for name, table in (
        ("cards", state.cards),
        ("terminals", state.terminals),
        ("ids", state.seen),
    ):
        size = len(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))
        report[name] = {
            "count": len(table),
            "bytes": size,
            "bytes_per_entity": round(size / max(len(table), 1)),
        }
    return report


def _since(began_at: float, timestamp: str) -> int:
    """Milliseconds from `began_at` (epoch seconds) to a progress `timestamp` (ISO, UTC)."""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    return round((moment - began_at) * 1000)


def throughput(
    spark: Any, settings: Settings, events: int, customers: int = 2_000
) -> dict[str, Any]:
    _prepare(settings)
    sender = _writer(settings)
    options = GeneratorOptions(
        seed=5, num_transactions=events, fraud_rate=0.02, num_customers=customers
    )
    sender.put(TransactionGenerator(options).records())
    sender.flush()
    alerts = AlertWriter(settings)
    writer = lake_writer(settings, frame_scorer(settings), alerts)
    writer.spool = BatchSpool.create()
    timings: list[dict[str, int]] = []
    rows_in: dict[int, int] = {}  # batch id -> records (Spark counts none of a spooled batch)
    cpu_readings: list[CpuReading] = []

    def timed(batch: Any, batch_id: int) -> None:
        writer(batch, batch_id)
        timings.append(dict(writer.stats.timings_ms))
        rows_in[batch_id] = writer.stats.rows_in
        cpu_readings.append(cpu_seconds())  # a few ms: /proc of ~100 processes

    cpu_before = cpu_seconds()
    began, began_at = time.perf_counter(), time.time()
    query = write(ingest(spark, settings, spool=writer.spool), settings, timed, True)
    query.awaitTermination()
    elapsed = time.perf_counter() - began
    writer.spool.close()
    cpu = cpu_used(cpu_before, [*cpu_readings, cpu_seconds()], elapsed)
    assert query.exception() is None, query.exception()
    delivered = sum(writer.stats.totals.values())
    data = [p for p in query.recentProgress if rows_in.get(p["batchId"])]
    batches = [(rows_in[p["batchId"]], p["batchDuration"]) for p in data]
    # Steady batches: every data batch but the first (which starts the Python workers).
    steady = sorted(duration for _, duration in batches[1:])
    steady_rows = sum(rows for rows, _ in batches[1:])
    steady_ms = sum(duration for _, duration in batches[1:])
    sink_ms = sum(sum(t.values()) for t in timings[1:])
    return {
        "records": delivered,
        "seconds": round(elapsed, 1),
        "events_per_s": round(delivered / elapsed),
        "alerts": alerts.stats.written,
        "tables": writer.stats.totals,
        "data_batches": len(batches),
        "first_batch_ms": batches[0][1] if batches else None,
        # From the query's start to its first batch's trigger: the source's start and probes.
        "before_first_batch_ms": _since(began_at, data[0]["timestamp"]) if data else None,
        # Between the batches: the run's seconds that no batch's duration covers.
        "between_batches_ms": round(elapsed * 1000 - sum(p["batchDuration"] for p in data)),
        "steady_batch_median_ms": steady[len(steady) // 2] if steady else None,
        "steady_events_per_s": round(steady_rows * 1000 / steady_ms) if steady_ms else None,
        "steady_us_per_event": round(steady_ms * 1000 / steady_rows) if steady_rows else None,
        "steady_sink_us_per_event": round(sink_ms * 1000 / steady_rows) if steady_rows else None,
        "event_time_days": round(
            (writer.stats.watermark_ms or 0) / 86_400_000 - options.start_time_ms / 86_400_000, 1
        ),
        "state": state_report(writer),
        "peak_rss_mb": peak_rss_mb(),
        # Where the two cores went while the backlog drained (moto stands in for Kinesis).
        "cpu": cpu,
        "batches": batches,
        "sink_ms_per_batch": timings,
        # Spark's own split of each data batch (latestOffset, queryPlanning, addBatch = the sink,
        # walCommit, commitOffsets, ...): what a batch pays besides the sink.
        "spark_ms_per_batch": [p["durationMs"] for p in data],
    }


def latency(
    spark: Any, settings: Settings, rate: int, duration: float, trigger: str = "1 second"
) -> dict[str, Any]:
    _prepare(settings)
    run = settings.with_overrides(processor={"trigger_interval": trigger})
    alerts = AlertWriter(run)
    writer = lake_writer(run, frame_scorer(run), alerts)
    writer.spool = BatchSpool.create()  # as the job does (ADR 0048)
    rows_in: dict[int, int] = {}  # batch id -> records (Spark counts none of a spooled batch)
    committed: list[int] = []
    alerted: list[int] = []
    phases: dict[int, dict[str, int]] = {}  # batch id -> the sink's split (ms)
    walls: dict[int, BatchWall] = {}
    sink_ended = [time.monotonic()]

    def timed(batch: Any, batch_id: int) -> None:
        started = time.monotonic()
        writer(batch, batch_id)
        alerted.extend(writer.stats.arrival_to_alerts_ms)
        committed.extend(writer.stats.arrival_to_commit_ms)
        phases[batch_id] = dict(writer.stats.timings_ms)
        rows_in[batch_id] = writer.stats.rows_in
        ended = time.monotonic()
        walls[batch_id] = BatchWall(
            round((started - sink_ended[0]) * 1000),
            round((ended - started) * 1000),
            writer.stats.arrival_to_alerts_ms,
        )
        sink_ended[0] = ended

    query = write(ingest(spark, run, spool=writer.spool), run, timed, False)
    stop_sending = threading.Event()
    spawn = multiprocessing.get_context("spawn")  # no fork of a process that holds a JVM
    sent = spawn.Value("q", 0)
    producer = spawn.Process(target=send_at_rate, args=(settings, rate, duration, sent))
    lag: list[tuple[float, int]] = []  # (seconds since sending began, max MillisBehindLatest)

    def sample_lag(began: float) -> None:
        while not stop_sending.wait(1.0):
            progress = query.lastProgress
            behind = (
                batch_summary(progress, writer.stats)["max_source_lag_ms"] if progress else None
            )
            if behind is not None:
                lag.append((time.monotonic() - began, behind))

    time.sleep(15)  # the query's first (empty) batches: start-up is not latency
    producer.start()
    sampler = threading.Thread(target=sample_lag, args=(time.monotonic(),), daemon=True)
    sampler.start()
    producer.join(duration + 120)
    stop_sending.set()
    sampler.join()
    if producer.exitcode != 0:
        raise RuntimeError(f"the producer process ended with {producer.exitcode}")
    time.sleep(20)  # let the last batches finish
    query.stop()
    writer.spool.close()
    data_batches = [p for p in query.recentProgress if rows_in.get(p["batchId"])]
    latencies = list(alerts.stats.latencies_ms)  # the most recent 20,000: a run has fewer
    warm = latencies[len(latencies) // 10 :]
    commits = committed[len(committed) // 10 :]  # the first tenth is warm-up
    alert_steps = alerted[len(alerted) // 10 :]

    def percentiles(values: list[int]) -> dict[str, int | None]:
        if not values:
            return {"p50": None, "p95": None, "p99": None}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50": round(p50), "p95": round(p95), "p99": round(p99)}

    return {
        "rate_per_s": rate,
        "duration_s": duration,
        "trigger": trigger,
        "sent": sent.value,
        "alerts_measured": len(warm),
        "event_to_alert_ms": percentiles(warm),
        # Every transaction, not only the ~1% that alert: arrival -> its batch's alerts written,
        # the latency its alert had or would have had (a p99 of thousands, not of a few hundred).
        "transactions_measured": len(alert_steps),
        "arrival_to_alert_step_ms": percentiles(alert_steps),
        "events_measured": len(commits),
        "arrival_to_lake_commit_ms": percentiles(commits),
        "millis_behind_latest": lag_trend(lag),
        # Where a data batch's time went (medians, ms): its size, Spark's split, the sink's.
        "median_batch": {
            "rows": _median([rows_in[p["batchId"]] for p in data_batches]),
            **{
                f"spark_{key}": _median([p["durationMs"].get(key, 0) for p in data_batches])
                for key in ("triggerExecution", "latestOffset", "addBatch")
            },
            **{
                f"sink_{key}": _median([p.get(key, 0) for p in phases.values()])
                for key in sorted({key for p in phases.values() for key in p})
            },
        },
        # The tail: the three longest data batches and where their time went.
        "slowest_batches": [
            {
                "batch": p["batchId"],
                "rows": rows_in[p["batchId"]],
                **{f"spark_{key}": value for key, value in sorted(p["durationMs"].items())},
                **{f"sink_{key}": value for key, value in phases.get(p["batchId"], {}).items()},
            }
            for p in sorted(data_batches, key=lambda p: -p["durationMs"]["triggerExecution"])[:3]
        ],
        # The tail over the whole run (Spark's progress keeps only the last 100 batches): the
        # batches holding the most transactions above the run's p99 alert step.
        "tail_batches": tail_batches(
            _after_warm_up(walls, len(alerted) - len(alert_steps)),
            phases,
            percentiles(alert_steps)["p99"],
        ),
        "load_average": os.getloadavg(),
    }


class BatchWall(NamedTuple):
    """One latency-run batch in wall time."""

    before_sink_ms: int  # since the previous batch's sink ended: trigger wait, probe, planning
    sink_ms: int
    alert_steps_ms: list[int]  # arrival -> the batch's alerts written, per transaction


def _after_warm_up(walls: dict[int, BatchWall], warm_up: int) -> dict[int, BatchWall]:
    """The batches after the first `warm_up` transactions (the percentiles leave those out)."""
    kept, seen = {}, 0
    for batch in sorted(walls):
        if seen >= warm_up:
            kept[batch] = walls[batch]
        seen += len(walls[batch].alert_steps_ms)
    return kept


def tail_batches(
    walls: dict[int, BatchWall],
    phases: dict[int, dict[str, int]],
    p99: int | None,
    count: int = 5,
) -> list[dict[str, Any]]:
    """The `count` batches with the most alert steps above `p99`: how many, the longest, the
    wall time before the sink (Spark's trigger wait, probe and planning) and in it, its split."""
    if p99 is None:
        return []
    above = {batch: sum(ms > p99 for ms in wall.alert_steps_ms) for batch, wall in walls.items()}
    worst = sorted((batch for batch, n in above.items() if n), key=lambda b: -above[b])[:count]
    return [
        {
            "batch": batch,
            "transactions": len(walls[batch].alert_steps_ms),
            "above_p99": above[batch],
            "max_ms": max(walls[batch].alert_steps_ms),
            "before_sink_ms": walls[batch].before_sink_ms,
            "sink_ms": walls[batch].sink_ms,
            **{f"sink_{key}": value for key, value in phases.get(batch, {}).items()},
        }
        for batch in worst
    ]


def lag_trend(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """The source's MillisBehindLatest while sending: medians of the first and last third, and
    its least-squares slope (ms of lag gained per second). Flat: the job keeps up."""
    if len(samples) < 6:
        return {"samples": len(samples)}
    third = len(samples) // 3
    seconds, behind = np.array(samples, dtype=float).T
    slope = float(np.polyfit(seconds, behind, 1)[0])
    return {
        "samples": len(samples),
        "first_third_median_ms": round(float(np.median(behind[:third]))),
        "last_third_median_ms": round(float(np.median(behind[-third:]))),
        "slope_ms_per_s": round(slope, 1),
        # Less than 5% of real time gained as lag, and no more than 2 s of it over the run.
        "flat": slope < 50
        and float(np.median(behind[-third:])) < 2_000 + float(np.median(behind[:third])),
    }


def _median(values: list[int]) -> int | None:
    return round(float(np.median(values))) if values else None


def vectorised_vs_rows(spark: Any, settings: Settings, model_path: str) -> dict[str, Any]:
    lake = table_path(settings.processor.lake_path, "transactions")
    frame = spark.read.format("delta").load(lake).select(*FEATURE_NAMES).limit(5000).toPandas()
    model, card = read_model(model_path)
    scorer = LocalScorer(model, card)
    began = time.perf_counter()
    scorer.score(frame)
    batch_s = time.perf_counter() - began
    began = time.perf_counter()
    for index in range(len(frame)):
        scorer.score(frame.iloc[[index]])
    rows_s = time.perf_counter() - began
    return {
        "rows": len(frame),
        "vectorised_s": round(batch_s, 3),
        "row_by_row_s": round(rows_s, 2),
        "ratio": round(rows_s / batch_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rates", default="1000,200", help="events/s for the latency runs")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument(
        "--trigger", default="1 second", help="the latency runs' trigger interval (aws profile's)"
    )
    parser.add_argument("--model", default=None, help="trained model folder (default: train one)")
    parser.add_argument(
        "--max-records-per-shard", type=int, default=None, help="per batch (default: config)"
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting"
    )
    parser.add_argument("--label", default="", help="saved as bench-results/scoring[-LABEL].json")
    parser.add_argument(
        "--customers", type=int, default=2_000, help="fewer customers: more days of event time"
    )
    parser.add_argument("--no-scoring-ratio", action="store_true", help="skip the row-by-row run")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the per-record baseline consumer"
    )
    parser.add_argument(
        "--baseline-limit", type=int, default=20_000, help="records the baseline consumes"
    )
    args = parser.parse_args(argv)
    confs = dict(item.split("=", 1) for item in args.conf)
    os.environ.setdefault("CARD_TOKEN_KEY", "benchmark-only-tokenisation-key")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    results: dict[str, Any] = {"load_average_before": os.getloadavg(), "conf": confs}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        model_path = args.model or str(root / "model")
        if args.model is None:
            train_main([*SMALL_MODEL, "--output", model_path], load_config("local"))
        emulator = LocalAws("127.0.0.1", free_port(), root / "moto")
        start(emulator)
        try:
            processor: dict[str, Any] = {"shuffle_partitions": 4, "metrics_port": 0}
            if args.max_records_per_shard:
                processor["max_records_per_shard"] = args.max_records_per_shard
            base = load_config("local").with_overrides(
                aws={"endpoint_url": emulator.endpoint_url},
                processor=processor,
                model={"path": model_path},
            )
            jvm_began = time.perf_counter()
            spark = build_spark(base, app_name="bench-scoring", master="local[2]",
                                extra={"spark.driver.host": "127.0.0.1", **confs})  # fmt: skip
            results["jvm_start_s"] = round(time.perf_counter() - jvm_began, 1)
            spark.sparkContext.setLogLevel("ERROR")
            first = _run_settings(base, root, "throughput")
            results["throughput"] = throughput(spark, first, args.events, args.customers)
            run = results["throughput"]
            run["events_per_s_with_jvm_start"] = round(
                run["records"] / (run["seconds"] + results["jvm_start_s"])
            )
            print("throughput", json.dumps(run), flush=True)
            if not args.no_baseline:
                # The per-record yardstick, on the same stream, in the same run.
                table = f"{first.dynamodb.alerts_table}-baseline"
                ensure_alerts_table(make_client("dynamodb", first.aws), table)
                baseline = bench_baseline.run(
                    bench_baseline.main_parser().parse_args(
                        ["--endpoint-url", str(first.aws.endpoint_url),
                         "--stream-name", first.kinesis.stream_name,
                         "--model", model_path, "--alerts-table", table,
                         "--limit", str(args.baseline_limit)]
                    )
                )  # fmt: skip
                results["baseline"] = baseline
                results["ratio_to_baseline"] = round(
                    run["events_per_s"] / baseline["events_per_s"], 1
                )
                print("baseline", json.dumps(baseline), flush=True)
            if not args.no_scoring_ratio:
                results["scoring"] = vectorised_vs_rows(spark, first, model_path)
                print("scoring", json.dumps(results["scoring"]), flush=True)
            for rate in (int(r) for r in args.rates.split(",") if r.strip()):
                run = _run_settings(base, root, f"latency-{rate}")
                results[f"latency_at_{rate}"] = latency(
                    spark, run, rate, args.duration, args.trigger
                )
                print(f"latency at {rate}/s", json.dumps(results[f"latency_at_{rate}"]), flush=True)
            spark.stop()
        finally:
            stop(emulator)
    results["load_average_after"] = os.getloadavg()
    name = f"scoring-{args.label}.json" if args.label else "scoring.json"
    save_results(results, RESULTS / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
