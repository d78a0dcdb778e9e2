"""Train the fraud model on history with the stream's own feature code.

    python -m ml_model.train [--history PATH] [--output PATH] [--threshold-policy alert_rate=0.01]

Without --history it generates labelled history with the producer's generator. Features come
from ml_model.features (the module the stream runs); the split is by time: warm-up days (state
still filling) are dropped, then train, a gap (labels of the last training days would not have
arrived yet in production), validation (where the threshold is chosen by the stated policy) and
test (where every metric is measured, for the model and for an amount-only baseline). Instead of
day counts the periods can be given as UTC dates (--train-start ... --test-end); the test period
then starts at least the label delay after the training period ends.
Besides the model and its card it writes an HTML report of the test split (ml_model/report).

Model selection (ml_model.selection) comes first: the days from the first training day to the
day before the test period are cut into --folds rolling folds; each trains on the same number
of days, skips the label delay (7 days) and validates on the next --fold-days days, and the
folds' validation days tile the last days before the test period:

    fold 1  |-- train --|-- 7-day gap --|-val-|
    fold 2       |-- train --|-- 7-day gap --|-val-|
    ...                                              ...|-val-|  <- the day before the test

Each candidate of a small search (HistGradientBoosting parameters and fraud weights) is fitted
and scored on every fold (average precision, card precision@100); a candidate replaces the
default parameters only if it beats them clearly, fold by fold (the rule: ml_model.selection).
The winner is then refitted on the training period, its threshold chosen on the validation
period and its metrics measured on the test period, as without a search (--no-search: the
default parameters, no folds). The test period is never seen by the search. A history too
short for the folds is an error naming --folds.

Lines of history that training cannot use (rejected by the contract, or transactions without a
label) are dropped with a warning naming the count and the top reasons; more than
--max-dropped-share of them fails the run.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from config.cli import (
    at_least,
    configure_logging,
    load_settings,
    new_parser,
    probe_endpoint,
    run_cli,
    utc_day,
)
from config.exceptions import ConfigError, ModelError
from config.settings import Settings
from ml_model.artifacts import ModelCard, write_artifacts
from ml_model.drift import reference_distributions
from ml_model.evaluation import evaluate, format_comparison
from ml_model.features import FEATURE_NAMES, compute_features, from_frame
from ml_model.features.definitions import DAY as DAY_MS
from ml_model.features.definitions import LABEL_DELAY
from ml_model.features.registry import describe
from ml_model.history import DropCount, is_lake, labels_as_of, load_history
from ml_model.report import training_report_data, write_report
from ml_model.selection import (
    DEFAULT_FOLD_DAYS,
    DEFAULT_FOLDS,
    DEFAULT_PARAMS,
    SEARCH_SPACE,
    Candidate,
    Params,
    Selection,
    fold_layout,
    format_selection,
    select,
)
from ml_model.threshold import OPTION, ThresholdPolicy, choose_threshold, parse_policy
from producer.generator import GeneratorOptions
from producer.generator.options import DEFAULT_START_TIME_MS

logger = logging.getLogger("ml_model.train")

DEFAULT_POLICY = "alert_rate=0.01"
DAY = timedelta(days=1)
# Days the features wait for a label (a chargeback); the test period starts at least this many
# whole days after the last training day, so every training label has arrived by then.
LABEL_DELAY_DAYS = LABEL_DELAY // DAY_MS
DEFAULT_MAX_DROPPED_SHARE = 0.01
MISSING_LABEL = "missing label"
TOP_REASONS = 5


@dataclass(frozen=True)
class Split:
    warmup_days: int = 7
    gap_days: int = 2
    validation_days: int = 5
    test_days: int = 7


@dataclass(frozen=True)
class DateSplit:
    """Explicit UTC day ranges, both ends inclusive; history before `train` warms features up."""

    train: tuple[date, date]
    validation: tuple[date, date]
    test: tuple[date, date]


def unlabelled_transactions(history: pd.DataFrame) -> int:
    """Transactions without a label (`training_frame` drops them): neither fraud nor genuine."""
    tx = history[history["event_type"] == "transaction"].drop_duplicates("transaction_id")
    return int(tx["label_is_fraud"].isna().sum())


def check_dropped(drops: DropCount, max_share: float) -> None:
    """Warn about dropped lines (count, top reasons); more than `max_share` is a ConfigError."""
    if not drops.dropped:
        return
    share = drops.dropped / max(drops.lines, 1)
    top = ", ".join(
        f"{reason} ({count:,})" for reason, count in drops.reasons.most_common(TOP_REASONS)
    )
    message = (
        f"{drops.dropped:,} of {drops.lines:,} history lines dropped ({share:.2%}); "
        f"top reasons: {top}"
    )
    logger.warning(message)
    if share > max_share:
        raise ConfigError(
            f"{message}; that is more than --max-dropped-share {max_share:g}: fix the data, "
            "or raise --max-dropped-share to train on the rest"
        )


def training_frame(history: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled transaction: features (shared module) + label, card, time, scenario.

    Unlabelled transactions still feed the features of the others but get no row.
    """
    features = compute_features(from_frame(history))
    tx = history[history["event_type"] == "transaction"].drop_duplicates("transaction_id")
    labels = tx[
        ["transaction_id", "card_token", "event_time", "label_is_fraud", "label_fraud_scenario"]
    ].rename(columns={"card_token": "card", "label_fraud_scenario": "fraud_scenario"})
    frame = features.merge(labels, on="transaction_id", how="inner", validate="one_to_one")
    frame = frame[frame["label_is_fraud"].notna()].copy()
    frame["is_fraud"] = frame.pop("label_is_fraud").astype(bool)
    return frame.sort_values(["event_time", "transaction_id"], ignore_index=True)


def split_by_time(frame: pd.DataFrame, split: Split | DateSplit) -> dict[str, pd.DataFrame]:
    """Contiguous day ranges, oldest first; the test period is the last `test_days`."""
    if isinstance(split, DateSplit):
        return split_by_dates(frame, split)
    days = frame["event_time"].dt.floor("D")
    first, last = days.min(), days.max()
    test_start = last - (split.test_days - 1) * DAY
    validation_start = test_start - split.validation_days * DAY
    train_end = validation_start - split.gap_days * DAY
    train_start = first + split.warmup_days * DAY
    if train_end <= train_start:
        span = (last - first).days + 1
        need = sum(vars(split).values()) + 1
        raise ModelError(f"history spans {span} days; the split needs at least {need} (--days)")
    parts = {
        "train": frame[(days >= train_start) & (days < train_end)],
        "validation": frame[(days >= validation_start) & (days < test_start)],
        "test": frame[days >= test_start],
    }
    for name, part in parts.items():
        if not part["is_fraud"].any():
            raise ModelError(f"the {name} period has no fraud: generate more history (--days)")
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def split_by_dates(frame: pd.DataFrame, split: DateSplit) -> dict[str, pd.DataFrame]:
    """The rows of each explicit day range; each must hold transactions and fraud."""
    days = frame["event_time"].dt.floor("D")
    first, last = days.min().date(), days.max().date()
    parts: dict[str, pd.DataFrame] = {}
    for name, (start, end) in vars(split).items():
        part = frame[(days >= _utc(start)) & (days <= _utc(end))]
        options = f"--{name}-start/--{name}-end {start}..{end}"
        if part.empty:
            raise ModelError(
                f"the {name} period ({options}) has no transactions; the history spans "
                f"{first}..{last}"
            )
        if not part["is_fraud"].any():
            raise ModelError(f"the {name} period ({options}) has no fraud: widen it")
        parts[name] = part.reset_index(drop=True)
    return parts


def _utc(day: date) -> pd.Timestamp:
    return pd.Timestamp(day.isoformat(), tz="UTC")


def warn_short_warmup(frame: pd.DataFrame, split: Split | DateSplit, warmup_days: int) -> None:
    """With dates, say so when less than `warmup_days` of history precede the training days."""
    if not isinstance(split, DateSplit):
        return
    first = frame["event_time"].min().date()
    warmup = (split.train[0] - first).days
    if warmup < warmup_days:
        logger.warning(
            "only %d day(s) of history before --train-start %s (history starts %s): the "
            "features' state of the first training days is still filling (--warmup-days %d)",
            max(warmup, 0),
            split.train[0],
            first,
            warmup_days,
        )


def window(part: pd.DataFrame) -> dict[str, str]:
    return {
        "start": part["event_time"].min().isoformat(),
        "end": part["event_time"].max().isoformat(),
    }


def fit(
    train: pd.DataFrame, seed: int, params: Params = DEFAULT_PARAMS
) -> HistGradientBoostingClassifier:
    """The model with `params` (ml_model.selection: by default fraud weighs 10x) on `train`."""
    model = params.estimator(seed)
    model.fit(train[list(FEATURE_NAMES)].to_numpy(dtype=float), train["is_fraud"].to_numpy())
    return model


def selection_days(parts: dict[str, pd.DataFrame], split: Split | DateSplit) -> tuple[date, date]:
    """(first day, test start): the days model selection may use, the test period's excluded."""
    if isinstance(split, DateSplit):
        return split.train[0], split.test[0]
    first = parts["train"]["event_time"].min().date()
    return first, parts["test"]["event_time"].min().date()


def model_selection(
    frame: pd.DataFrame,
    parts: dict[str, pd.DataFrame],
    split: Split | DateSplit,
    search: Sequence[Candidate] | None,
    folds: int,
    fold_days: int,
    seed: int,
) -> Selection | None:
    """The search's result on rolling folds before the test period; None without a search."""
    if not search:
        return None
    start, test_start = selection_days(parts, split)
    return select(frame, fold_layout(start, test_start, folds, fold_days), search, seed)


def data_hash(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return "sha256:" + digest.hexdigest()


def scored(part: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    return part[["is_fraud", "fraud_scenario", "card", "event_time"]].assign(score=scores)


def train(
    history: pd.DataFrame,
    policy: ThresholdPolicy,
    review_band: float,
    split: Split | DateSplit = Split(),
    seed: int = 0,
    warmup_days: int = Split.warmup_days,
    search: Sequence[Candidate] | None = SEARCH_SPACE,
    folds: int = DEFAULT_FOLDS,
    fold_days: int = DEFAULT_FOLD_DAYS,
) -> tuple[HistGradientBoostingClassifier, ModelCard, str, pd.DataFrame]:
    """(model, card, printable comparison, test split scored) from a history frame.

    With a `search`, the model's parameters are the winner of the candidates on `folds`
    rolling folds before the test period (module docstring); None fits the default ones.
    The last is one row per test transaction: the model's `score`, the amount the baseline
    scores with (`baseline_score`), and the label columns; the training report draws from it.
    """
    frame = training_frame(history)
    warn_short_warmup(frame, split, warmup_days)
    parts = split_by_time(frame, split)
    selection = model_selection(frame, parts, split, search, folds, fold_days, seed)
    params = selection.winner.params if selection else DEFAULT_PARAMS
    model = fit(parts["train"], seed, params)

    def model_scores(part: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict_proba(part[list(FEATURE_NAMES)].to_numpy(float))[:, 1])

    validation, test = parts["validation"], parts["test"]
    threshold = choose_threshold(model_scores(validation), validation["is_fraud"], policy)
    baseline_threshold = choose_threshold(
        validation["tx_amount"].to_numpy(), validation["is_fraud"], policy
    )
    test_scored = scored(test, model_scores(test))
    metrics = evaluate(test_scored, threshold)
    baseline = evaluate(scored(test, test["tx_amount"].to_numpy()), baseline_threshold)
    baseline["rule"] = f"amount >= {baseline_threshold:.2f}"
    genuine = parts["train"][~parts["train"]["is_fraud"]]
    reference = {
        name: float(genuine[name].median()) if genuine[name].notna().any() else float("nan")
        for name in FEATURE_NAMES
    }
    card = ModelCard(
        version=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model_type="sklearn.ensemble.HistGradientBoostingClassifier",
        feature_names=list(FEATURE_NAMES),
        threshold=float(threshold),
        threshold_policy=policy.as_option(),
        review_threshold=float(threshold) * review_band,
        training_window=window(parts["train"]),
        test_window=window(test),
        data_hash=data_hash(frame),
        reference_values=reference,
        metrics={**metrics, "validation_period": window(validation)},
        baseline_metrics=baseline,
        library_versions={lib: version(lib) for lib in ("scikit-learn", "numpy", "pandas")},
        feature_descriptions={name: describe(name) for name in FEATURE_NAMES},
        # Features as the model was fitted on them; the score on data it never saw (the test
        # split), since in-sample scores are more confident than any stream's.
        drift_reference=reference_distributions(
            parts["train"][list(FEATURE_NAMES)], test_scored["score"]
        ),
        model_params=params.as_dict(),
        selection=selection.as_card() if selection else {},
    )
    report = format_comparison(metrics, baseline)
    if selection:
        report = f"{format_selection(selection)}\n{report}"
    return model, card, report, test_scored.assign(baseline_score=test["tx_amount"].to_numpy())


def _policy(text: str) -> ThresholdPolicy:
    """`--threshold-policy` for argparse: a bad policy is a usage error naming the option."""
    try:
        return parse_policy(text)
    except ModelError as exc:
        message = str(exc).removeprefix(f"{OPTION}: ").replace("ThresholdPolicy.value for ", "")
        raise argparse.ArgumentTypeError(message) from exc


SPLIT_HELP = f"""\
By day counts: warm-up, train, gap, validation, test; the test period is the history's last
days. Or by UTC dates (ISO, both ends inclusive): --train-start, --train-end, --test-start
and --test-end together replace the counts, and history before --train-start only warms the
features up. The test period starts at least the label delay ({LABEL_DELAY_DAYS} days) after
the last training day (--test-start >= --train-end + {LABEL_DELAY_DAYS + 1} days), so every
training label has arrived. Validation lies in between: the last --validation-days days
before --test-start, unless --validation-start and --validation-end place it (after
--train-end, before --test-start).
"""


def _utc_moment(text: str) -> pd.Timestamp:
    """`--labels-as-of` for argparse: an ISO date or time, read as UTC."""
    try:
        moment = pd.Timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an ISO date or time, got {text!r}") from exc
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("ml_model.train", __doc__)
    parser.add_argument(
        "--history",
        default=None,
        help="JSONL events file or Delta lake path (default: generate history)",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="model folder or s3:// prefix (default: the profile's model.path)",
    )
    parser.add_argument(
        OPTION,
        default=parse_policy(DEFAULT_POLICY),
        type=_policy,
        metavar="KIND=VALUE",
        help="how the threshold is chosen on the validation period: alert_rate=SHARE (alert "
        f"budget) or precision=TARGET, both in (0, 1] (default: {DEFAULT_POLICY})",
    )
    parser.add_argument("--days", type=int, default=35, help="days of generated history")
    parser.add_argument(
        "--customers", type=int, default=1_500, help="customers in generated history"
    )
    parser.add_argument("--terminals", type=int, default=600, help="terminals in generated history")
    parser.add_argument(
        "--fraud-rate", type=float, default=0.01, help="share of fraud in generated history"
    )
    parser.add_argument("--seed", type=int, default=1234, help="generator and model seed")
    split = parser.add_argument_group("time split", SPLIT_HELP)
    split.add_argument(
        "--warmup-days",
        type=int,
        default=Split.warmup_days,
        help="first days dropped while the features' state fills (with dates: a warning when "
        "fewer days precede --train-start)",
    )
    split.add_argument(
        "--gap-days",
        type=int,
        default=None,
        help=(
            "days between training and validation (labels arrive late; ignored with dates); "
            f"default {Split.gap_days}, or the label delay ({LABEL_DELAY_DAYS}) with --labels "
            "chargebacks"
        ),
    )
    split.add_argument(
        "--validation-days",
        type=int,
        default=Split.validation_days,
        help="days on which the threshold is chosen (with dates: the days just before "
        "--test-start, unless --validation-start/--validation-end)",
    )
    split.add_argument(
        "--test-days",
        type=int,
        default=Split.test_days,
        help="last days, where metrics are measured (ignored with dates)",
    )
    for period, what in (
        ("train", "the model is fitted on"),
        ("validation", "the threshold is chosen on"),
        ("test", "metrics are measured on"),
    ):
        split.add_argument(
            f"--{period}-start",
            type=utc_day,
            default=None,
            metavar="DATE",
            help=f"first UTC day {what} (YYYY-MM-DD)",
        )
        split.add_argument(
            f"--{period}-end",
            type=utc_day,
            default=None,
            metavar="DATE",
            help=f"last UTC day {what}, inclusive",
        )
    search = parser.add_argument_group(
        "model selection",
        "Rolling folds before the test period, each trained on the same number of days, then "
        "a gap of the label delay, then --fold-days validation days. A candidate of the search "
        "replaces the default parameters only when it beats them clearly across the folds on "
        "average precision, without losing card precision@100 (ml_model.selection).",
    )
    search.add_argument(
        "--folds",
        type=at_least(2),
        default=DEFAULT_FOLDS,
        metavar="N",
        help="rolling folds of the model selection (at least 2)",
    )
    search.add_argument(
        "--fold-days",
        type=at_least(1),
        default=DEFAULT_FOLD_DAYS,
        metavar="DAYS",
        help="validation days of each fold",
    )
    search.add_argument(
        "--no-search",
        action="store_true",
        help="fit the default parameters without folds or search (fast runs, short histories)",
    )
    labels = parser.add_argument_group("labels")
    labels.add_argument(
        "--labels",
        choices=("auto", "events", "chargebacks"),
        default="auto",
        help=(
            "events: the label field the history carries (generated history, a labelled "
            "file); chargebacks: only those arrived by --labels-as-of, as production learns "
            "of fraud (transactions younger than the label delay without one are left "
            "unlabelled). auto: chargebacks for a lake, events otherwise"
        ),
    )
    labels.add_argument(
        "--labels-as-of",
        type=_utc_moment,
        default=None,
        metavar="TIME",
        help="the cut-off for --labels chargebacks (ISO date or time, UTC); default: the "
        "history's newest event",
    )
    parser.add_argument(
        "--max-dropped-share",
        type=_share,
        default=DEFAULT_MAX_DROPPED_SHARE,
        metavar="SHARE",
        help="largest share of history lines that may be dropped (rejected by the contract, or "
        "transactions without a label) before the run fails; every drop is a warning",
    )
    parser.add_argument(
        "--report-dir",
        default=None,
        help="folder of the HTML training report, index.html (default: report/ in a local "
        "--output folder, else reports/train-<version>)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="do not write the HTML training report"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with `args.split` (a Split or a DateSplit) checked; bad ones exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.split = split_of(args)
    except ConfigError as exc:
        parser.error(str(exc))
    return args


def label_source(args: argparse.Namespace) -> str:
    """`--labels`, resolved: chargebacks for a lake (what production learns), else events."""
    if args.labels != "auto":
        return str(args.labels)
    return "chargebacks" if args.history and is_lake(args.history) else "events"


def gap_days(args: argparse.Namespace) -> int:
    """`--gap-days`, resolved: with chargeback labels the label delay, so that every label of
    the training days had arrived when the validation period starts."""
    if args.gap_days is not None:
        return int(args.gap_days)
    return LABEL_DELAY_DAYS if label_source(args) == "chargebacks" else Split.gap_days


def split_of(args: argparse.Namespace) -> Split | DateSplit:
    """The split the options ask for; inconsistent dates are a ConfigError naming an option."""
    given = {
        name: getattr(args, name.replace("-", "_"))
        for name in ("train-start", "train-end", "test-start", "test-end")
    }
    validation = (args.validation_start, args.validation_end)
    if not any(given.values()) and validation == (None, None):
        return Split(args.warmup_days, gap_days(args), args.validation_days, args.test_days)
    missing = [f"--{name}" for name, value in given.items() if value is None]
    if missing:
        raise ConfigError(
            f"argument {missing[0]}: the dates --train-start, --train-end, --test-start and "
            f"--test-end go together; missing {', '.join(missing)}"
        )
    train = (args.train_start, args.train_end)
    test = (args.test_start, args.test_end)
    _ordered("train", train)
    _ordered("test", test)
    between = (test[0] - train[1]).days - 1
    if between < LABEL_DELAY_DAYS:
        raise ConfigError(
            f"argument --test-start: must be at least the label delay ({LABEL_DELAY_DAYS} days) "
            f"after --train-end {train[1]}, so that every training label has arrived: "
            f"{train[1] + (LABEL_DELAY_DAYS + 1) * DAY} or later, got {test[0]}"
        )
    if validation == (None, None):
        if args.validation_days < 1:
            raise ConfigError(
                f"argument --validation-days: must be > 0, got {args.validation_days}"
            )
        validation = (test[0] - args.validation_days * DAY, test[0] - DAY)
        if validation[0] <= train[1]:
            raise ConfigError(
                f"argument --validation-days: {args.validation_days} days before --test-start "
                f"{test[0]} reach back into the training days; give fewer, or "
                "--validation-start/--validation-end"
            )
    elif None in validation:
        name = "--validation-end" if validation[1] is None else "--validation-start"
        raise ConfigError(f"argument {name}: --validation-start and --validation-end go together")
    else:
        _ordered("validation", validation)
        if validation[0] <= train[1] or validation[1] >= test[0]:
            raise ConfigError(
                f"argument --validation-start: the validation days {validation[0]}.."
                f"{validation[1]} must lie after --train-end {train[1]} and before "
                f"--test-start {test[0]}"
            )
    return DateSplit(train=train, validation=validation, test=test)


def _ordered(period: str, days: tuple[date, date]) -> None:
    if days[1] < days[0]:
        raise ConfigError(
            f"argument --{period}-end: {days[1]} is before --{period}-start {days[0]}"
        )


def generator_options(args: argparse.Namespace) -> GeneratorOptions:
    """History that ends where the stream's default generator starts (2026-01-01)."""
    per_day = args.customers * GeneratorOptions.transactions_per_customer_day
    return GeneratorOptions(
        seed=args.seed,
        num_transactions=int(per_day * args.days),
        start_time_ms=DEFAULT_START_TIME_MS - args.days * 86_400_000,
        fraud_rate=args.fraud_rate,
        num_customers=args.customers,
        num_terminals=args.terminals,
    )


def report_folder(report_dir: str | None, output: str, model_version: str) -> Path:
    """Where the training report goes: --report-dir, else beside a local model, else reports/."""
    if report_dir:
        return Path(report_dir)
    if output.startswith(("s3://", "s3a://")):
        return Path("reports") / f"train-{model_version}"
    return Path(output) / "report"


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = settings or load_settings(args.profile)
    output = args.output or settings.model.path
    if any(str(path).startswith(("s3://", "s3a://")) for path in (output, args.history or "")):
        probe_endpoint(settings.aws)  # before minutes of training, not after
    drops = DropCount()
    history, source = load_history(args.history, generator_options(args), drops, settings.aws)
    print(f"history: {source}, {len(history):,} events", flush=True)
    labels: dict[str, Any] = {"source": label_source(args), "label_delay_days": LABEL_DELAY_DAYS}
    if labels["source"] == "chargebacks":
        history, arrived = labels_as_of(history, args.labels_as_of)
        labels.update(
            as_of=arrived.as_of.isoformat(),
            fraud=arrived.fraud,
            genuine=arrived.genuine,
            pending=arrived.pending,
        )
        print(
            f"labels: chargebacks arrived by {arrived.as_of.isoformat()}: {arrived.fraud:,} "
            f"fraud, {arrived.genuine:,} genuine, {arrived.pending:,} younger than the "
            f"{LABEL_DELAY_DAYS}-day label delay without one (features only)",
            flush=True,
        )
    if isinstance(args.split, Split):
        labels["gap_days"] = args.split.gap_days
    # Transactions still waiting for their label are not dropped lines: they feed features.
    unlabelled = unlabelled_transactions(history) - labels.get("pending", 0)
    if unlabelled:
        drops.reasons[MISSING_LABEL] += unlabelled
    check_dropped(drops, args.max_dropped_share)
    model, card, report, test_scored = train(
        history,
        args.threshold_policy,
        settings.model.review_band,
        args.split,
        args.seed,
        args.warmup_days,
        search=None if args.no_search else SEARCH_SPACE,
        folds=args.folds,
        fold_days=args.fold_days,
    )
    card = replace(card, labels=labels)
    write_artifacts(output, model, card, settings.aws)
    print(f"policy: {args.threshold_policy.describe()} -> threshold {card.threshold:.4f}")
    print(report)
    print(f"model {card.version} written to {output} (model.joblib, model_card.json)")
    if not args.no_report:
        folder = report_folder(args.report_dir, output, card.version)
        print(f"report: {write_report(folder, training_report_data(card, test_scored))}")
    return 0


def cli() -> int:
    """Console script `fraud-train`; `python -m ml_model.train` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
