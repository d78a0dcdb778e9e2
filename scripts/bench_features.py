"""The feature functions alone: microseconds per event, the figure a change of state layout moves.

    python -m scripts.bench_features [--transactions 60000] [--customers 1400] [--repeats 3]

Generates a seeded history (clean, labelled), turns it into feature events once, then times
`compute_features` (the same per-entity functions the stream's engine runs) over all of it,
`--repeats` times, and prints and saves to bench-results/features.json the best and median
µs per event, with the load average it ran at.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from config.cli import configure_logging, new_parser, run_cli
from ml_model.features import compute_features, from_frame
from ml_model.history import generated_history
from producer.generator import GeneratorOptions
from scripts.bench_results import RESULTS, save_results


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_features", __doc__)
    parser.add_argument("--transactions", type=int, default=60_000, help="transactions generated")
    parser.add_argument("--customers", type=int, default=1_400, help="customers (sets the span)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument("--label", default="", help="a note saved with the figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    history = generated_history(
        GeneratorOptions(seed=5, num_transactions=args.transactions, num_customers=args.customers)
    )
    events = from_frame(history)
    span_days = (events[-1].time_ms - events[0].time_ms) / 86_400_000
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        compute_features(events)
        runs.append(time.perf_counter() - started)
    results = {
        "label": args.label,
        "events": len(events),
        "event_time_days": round(span_days, 1),
        "best_us_per_event": round(min(runs) / len(events) * 1e6, 1),
        "median_us_per_event": round(statistics.median(runs) / len(events) * 1e6, 1),
        "runs_s": [round(r, 2) for r in runs],
        "load_average": os.getloadavg(),
    }
    save_results(results, RESULTS / "features.json")
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
