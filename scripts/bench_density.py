"""Per-event cost against an entity's density: the figure ADR 0029's running day windows move.

    python -m scripts.bench_density [--per-day 10 30 63 100 300 600] [--events 1000]
                                    [--repeats 9] [--label TEXT]

For each density n, one card and one terminal are given 3n transactions spaced evenly (n in
any 24 hours), then `--events` more are timed through the same per-entity functions the engine
and training run: a card's `event_features` + `card_features` + `apply_card_event`, a
terminal's `terminal_features` + `apply_terminal_event`, in order (the usual case), each
repeat on a fresh copy of the state. Prints and saves to bench-results/density.json the best
µs per event for each n, with the load average it ran at.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import time

from config.cli import at_least, configure_logging, new_parser, run_cli
from ml_model.features import FeatureEvent
from ml_model.features.card import (
    apply_card_event,
    card_features,
    empty_card_state,
    event_features,
)
from ml_model.features.definitions import DAY
from ml_model.features.events import TRANSACTION
from ml_model.features.terminal import (
    apply_terminal_event,
    empty_terminal_state,
    terminal_features,
)
from scripts.bench_results import RESULTS, save_results

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_density", __doc__)
    parser.add_argument(
        "--per-day",
        type=at_least(1),
        nargs="+",
        default=[10, 30, 63, 100, 300, 600],
        help="transactions per entity and day",
    )
    parser.add_argument("--events", type=at_least(1), default=1000, help="timed events")
    parser.add_argument("--repeats", type=at_least(1), default=9, help="timed runs (best kept)")
    parser.add_argument("--label", default="", help="a note saved with the figures")
    return parser


def _transactions(count: int, per_day: int, rng: random.Random) -> list[FeatureEvent]:
    gap = DAY // per_day
    return [
        FeatureEvent(
            kind=TRANSACTION,
            time_ms=T0 + i * gap,
            event_id=f"tx-{i:08d}",
            card=f"card-{rng.randrange(2_000)}",
            terminal="terminal-1",
            amount=round(rng.uniform(1, 300), 2),
            merchant=f"merchant-{rng.randrange(40)}",
            country=rng.choice(["FR", "DE", "ES", "IT", "NL"]),
            latitude=rng.uniform(-60, 60),
            longitude=rng.uniform(-170, 170),
            channel="pos",
            device=f"device-{rng.randrange(3)}",
        )
        for i in range(count)
    ]


def _best_us(
    state: dict[str, object], events: list[FeatureEvent], step: object, repeats: int
) -> float:
    best = float("inf")
    for _ in range(repeats):
        fresh = copy.deepcopy(state)
        start = time.perf_counter()
        for event in events:
            step(fresh, event)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - start) / len(events) * 1e6)
    return round(best, 1)


def _card_step(state: dict[str, object], event: FeatureEvent) -> None:
    event_features(event).update(card_features(state, event))
    apply_card_event(state, event)


def _terminal_step(state: dict[str, object], event: FeatureEvent) -> None:
    terminal_features(state, event)
    apply_terminal_event(state, event)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    load_before = os.getloadavg()
    rows = []
    for per_day in args.per_day:
        events = _transactions(3 * per_day + args.events, per_day, random.Random(per_day))
        card, terminal = empty_card_state(), empty_terminal_state()
        for event in events[: 3 * per_day]:
            apply_card_event(card, event)
            apply_terminal_event(terminal, event)
        timed = events[3 * per_day :]
        rows.append(
            {
                "per_day": per_day,
                "card_us_per_event": _best_us(card, timed, _card_step, args.repeats),
                "terminal_us_per_event": _best_us(terminal, timed, _terminal_step, args.repeats),
            }
        )
    results = {
        "label": args.label,
        "events": args.events,
        "repeats": args.repeats,
        "densities": rows,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    save_results(results, RESULTS / "density.json")
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
