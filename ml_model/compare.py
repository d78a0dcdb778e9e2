"""Champion vs shadow challenger on the lake's labelled transactions, read without Spark.

    python -m ml_model.compare --lake data/lake --since 2026-01-05
    python -m ml_model.compare --json > compare.json
    python -m ml_model.compare promote --champion PATH --challenger PATH [--metrics compare.json]

The job stores both scores on every transaction it scored with a challenger (`--challenger`:
`fraud_score`/`model_version` and `challenger_score`/`challenger_version`). This reads them
with `deltalake` (a local lake, or s3a:// / s3:// with the profile's endpoint and credentials)
and reports, for both models on the same transactions: average precision, ROC AUC, and
precision@k for k = --top-k and k = the alert budget (by default the number of transactions the
champion alerted on in that set: what each model would have put in front of the analysts).

Label rule (labels come from the lake's `labels` table, i.e. chargebacks): a transaction whose
latest chargeback says confirmed_fraud=true is fraud, confirmed_fraud=false (a confirmed-genuine
report) is genuine; one with no chargeback is genuine only once it is older than the label
delay, counted back from --as-of (default: the newest label's event time, the lake's own clock,
so a replayed or synthetic stream dated in the past works as a live one). Younger ones are left
out as not yet labelled. `promote` is ml_model/promote.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from deltalake import DeltaTable
from sklearn.metrics import average_precision_score, roc_auc_score

from config.cli import configure_logging, load_settings, new_parser, run_cli
from config.exceptions import ModelError
from processor.lake_tables import CHALLENGER_COLUMNS

if TYPE_CHECKING:
    from config.settings import Settings

logger = logging.getLogger(__name__)

# The generator's chargebacks come 7 days (+-20%) after the transaction.
DEFAULT_LABEL_DELAY_DAYS = 9.0
DEFAULT_TOP_K = 100
LABEL_RULE = (
    "fraud: latest chargeback confirmed_fraud=true; genuine: confirmed_fraud=false, or no "
    "chargeback and event_time <= as_of - label delay; younger ones without one: left out"
)
_TRANSACTION_COLUMNS = [
    "transaction_id", "event_time", "fraud_score", "model_version", "decision",
    *CHALLENGER_COLUMNS,
]  # fmt: skip


def _parse_time(text: str) -> datetime:
    """An ISO date or date-time; naive means UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date like 2026-01-05, got {text!r}"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def precision_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float | None:
    """Share of frauds among the k highest scores (k capped at the number of rows).

    Rows tied at the k-th score share the remaining places by expectation, so the value does
    not depend on row order; None when there are no rows or k is 0.
    """
    k = min(k, len(scores))
    if k <= 0:
        return None
    kth = np.sort(scores)[::-1][k - 1]
    above, tied = scores > kth, scores == kth
    hits = labels[above].sum() + (k - above.sum()) * labels[tied].mean()
    return float(hits / k)


@dataclass(frozen=True)
class ModelMetrics:
    versions: dict[str, int]  # model version -> transactions it scored in the set
    average_precision: float | None
    roc_auc: float | None
    precision_at_k: dict[str, float | None]  # k -> precision@k


def model_metrics(
    labels: np.ndarray, scores: np.ndarray, versions: pd.Series, ks: list[int]
) -> ModelMetrics:
    both = 0 < labels.sum() < len(labels)  # AP and AUC rank frauds against genuine ones
    return ModelMetrics(
        versions={str(v): int(n) for v, n in versions.value_counts().items()},
        average_precision=float(average_precision_score(labels, scores)) if both else None,
        roc_auc=float(roc_auc_score(labels, scores)) if both else None,
        precision_at_k={str(k): precision_at_k(labels, scores, k) for k in ks},
    )


def _table(lake: str, name: str, settings: Settings) -> DeltaTable | None:
    from ml_model.report.run_data import lake_uri, storage_options

    located = settings.with_overrides(processor={"lake_path": lake})
    uri, options = lake_uri(located, name), storage_options(located)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options)


def read_scored(lake: str, settings: Settings, since: datetime | None) -> pd.DataFrame:
    """Transactions since `since` that carry a challenger score (ModelError when none do)."""
    table = _table(lake, "transactions", settings)
    if table is None:
        raise ModelError(f"no transactions table in the lake {lake}")
    dataset = table.to_pyarrow_dataset()
    missing = [name for name in CHALLENGER_COLUMNS if name not in dataset.schema.names]
    if missing:
        raise ModelError(
            f"no challenger scores in the lake {lake}: its transactions table has no {missing[0]} "
            "column (run the job with --challenger PATH; README: Shadow challenger)"
        )
    condition = ds.field("challenger_score").is_valid() & ds.field("fraud_score").is_valid()
    if since is not None:
        condition &= (ds.field("event_date") >= since.date()) & (ds.field("event_time") >= since)
    frame = dataset.to_table(columns=_TRANSACTION_COLUMNS, filter=condition).to_pandas()
    frame = frame[frame["challenger_score"].notna() & frame["fraud_score"].notna()]
    if frame.empty:
        after = f" since {since.isoformat()}" if since else ""
        raise ModelError(
            f"no challenger scores in the lake {lake}{after}: run the job with --challenger PATH"
        )
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame.drop_duplicates("transaction_id").reset_index(drop=True)


def read_labels(lake: str, settings: Settings) -> pd.DataFrame:
    """The chargebacks: transaction_id, event_time, confirmed_fraud (maybe none)."""
    table = _table(lake, "labels", settings)
    columns = ["transaction_id", "event_time", "confirmed_fraud"]
    if table is None:
        return pd.DataFrame({name: [] for name in columns})
    found = table.to_pyarrow_dataset().to_table(
        columns=columns,
        filter=ds.field("transaction_id").is_valid() & ds.field("confirmed_fraud").is_valid(),
    )
    labels = found.to_pandas()
    labels["event_time"] = pd.to_datetime(labels["event_time"], utc=True)
    return labels


def label(
    scored: pd.DataFrame, labels: pd.DataFrame, delay: timedelta, as_of: datetime | None
) -> tuple[pd.DataFrame, datetime | None]:
    """(the labelled rows with an `is_fraud` column, the as-of time used): LABEL_RULE."""
    if as_of is None and not labels.empty:
        as_of = labels["event_time"].max().to_pydatetime()
    latest = (
        labels.sort_values("event_time", kind="stable")
        .drop_duplicates("transaction_id", keep="last")
        .set_index("transaction_id")["confirmed_fraud"]
    )
    verdict = scored["transaction_id"].map(latest)
    old_enough = (
        scored["event_time"] <= pd.Timestamp(as_of - delay)
        if as_of is not None
        else pd.Series(False, index=scored.index)
    )
    known = verdict.notna() | old_enough
    out = scored[known].copy()
    out["is_fraud"] = verdict[known].eq(True).to_numpy()  # no verdict: old enough, genuine
    return out.reset_index(drop=True), as_of


def compare(
    lake: str,
    settings: Settings,
    *,
    since: datetime | None = None,
    as_of: datetime | None = None,
    label_delay: timedelta = timedelta(days=DEFAULT_LABEL_DELAY_DAYS),
    top_k: int = DEFAULT_TOP_K,
    alert_budget: int | None = None,
    challenger_version: str | None = None,
) -> dict[str, Any]:
    """Both models' metrics on the labelled transactions (module docstring); JSON-ready."""
    scored = read_scored(lake, settings, since)
    if challenger_version is None:  # the newest challenger's rows, unless one is named
        challenger_version = str(scored.loc[scored["event_time"].idxmax(), "challenger_version"])
    scored = scored[scored["challenger_version"] == challenger_version]
    if scored.empty:
        raise ModelError(f"no transactions scored by challenger {challenger_version} in {lake}")
    labelled, as_of = label(scored, read_labels(lake, settings), label_delay, as_of)
    if labelled.empty:
        raise ModelError(
            f"none of the {len(scored):,} transactions the challenger scored has a label yet "
            f"(rule: {LABEL_RULE}; as of {as_of.isoformat() if as_of else 'no labels at all'})"
        )
    labels = labelled["is_fraud"].to_numpy(dtype=bool)
    budget = int((labelled["decision"] == "ALERT").sum()) if alert_budget is None else alert_budget
    ks = sorted({top_k, budget} - {0})
    metrics = {
        name: asdict(
            model_metrics(labels, labelled[score].to_numpy(dtype=float), labelled[version], ks)
        )
        for name, score, version in (
            ("champion", "fraud_score", "model_version"),
            ("challenger", *CHALLENGER_COLUMNS),
        )
    }
    frauds = int(labels.sum())
    return {
        "lake": lake,
        "since": since.isoformat() if since else None,
        "as_of": as_of.isoformat() if as_of else None,
        "label_delay_days": label_delay / timedelta(days=1),
        "label_rule": LABEL_RULE,
        "challenger_version": challenger_version,
        "scored": len(scored),
        "labelled": len(labelled),
        "frauds": frauds,
        "genuine": len(labelled) - frauds,
        "unlabelled": len(scored) - len(labelled),
        "top_k": top_k,
        "alert_budget": budget,
        **metrics,
    }


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a few lines of text: the set, the rule, then one row per metric."""
    champion, challenger = report["champion"], report["challenger"]
    since = f" since {report['since']}" if report["since"] else ""
    lines = [
        f"{report['labelled']:,} labelled transactions{since} ({report['frauds']:,} fraud, "
        f"{report['genuine']:,} genuine); {report['unlabelled']:,} of the "
        f"{report['scored']:,} scored left out (no label yet)",
        f"labels as of {report['as_of']}, delay {report['label_delay_days']:g} days: "
        f"{report['label_rule']}",
        "",
        f"{'':24}{'champion':>14}{'challenger':>14}",
        f"{'model version':24}{', '.join(champion['versions']):>14}"
        f"{', '.join(challenger['versions']):>14}",
        f"{'average precision':24}{_cell(champion['average_precision']):>14}"
        f"{_cell(challenger['average_precision']):>14}",
        f"{'ROC AUC':24}{_cell(champion['roc_auc']):>14}{_cell(challenger['roc_auc']):>14}",
    ]
    for k in champion["precision_at_k"]:
        name = f"precision@{k}"
        if int(k) == report["alert_budget"]:
            name += " (budget)"
        lines.append(
            f"{name:24}{_cell(champion['precision_at_k'][k]):>14}"
            f"{_cell(challenger['precision_at_k'][k]):>14}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("ml_model.compare", __doc__)
    parser.add_argument(
        "--lake", default=None, help="the lake folder or s3a:// prefix (default: the profile's)"
    )
    parser.add_argument(
        "--since",
        type=_parse_time,
        default=None,
        help="only transactions with event_time on or after this ISO date/time, UTC "
        "(default: all the challenger scored)",
    )
    parser.add_argument(
        "--as-of",
        type=_parse_time,
        default=None,
        help="the time label delays count back from (default: the newest label's event time)",
    )
    parser.add_argument(
        "--label-delay-days",
        type=float,
        default=DEFAULT_LABEL_DELAY_DAYS,
        help="a transaction without a chargeback counts as genuine once it is this old",
    )
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="k of precision@k")
    parser.add_argument(
        "--alert-budget",
        type=int,
        default=None,
        help="second k of precision@k (default: the champion's ALERTs among the labelled rows)",
    )
    parser.add_argument(
        "--challenger-version",
        default=None,
        help="compare this challenger version (default: the one of the newest transaction)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["promote"]:
        from ml_model.promote import main as promote_main

        return promote_main(argv[1:], settings)
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.top_k < 1 or (args.alert_budget is not None and args.alert_budget < 1):
        raise ModelError("--top-k and --alert-budget must be at least 1")
    settings = settings or load_settings(args.profile)
    report = compare(
        args.lake or settings.processor.lake_path,
        settings,
        since=args.since,
        as_of=args.as_of,
        label_delay=timedelta(days=args.label_delay_days),
        top_k=args.top_k,
        alert_budget=args.alert_budget,
        challenger_version=args.challenger_version,
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def cli() -> int:
    """`python -m ml_model.compare`: exit 2 with one line when the lake has no challenger."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
