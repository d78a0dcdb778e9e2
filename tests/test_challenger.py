"""Shadow challenger: both scores in the lake, only the champion decides; compare; promote.

Models are tiny logistic regressions with set weights (no training): the champion alerts on
large amounts, the "alert everything" challenger scores every row near 1.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_score, roc_auc_score

import ml_model.promote as promote_module
from config.aws import make_client
from config.cli import run_cli
from config.exceptions import ModelError, ModelVersionError
from config.settings import Settings, load_config
from ml_model import compare
from ml_model.artifacts import CARD_FILE, MODEL_FILE, ModelCard, read_card, write_artifacts
from ml_model.features import FEATURE_NAMES
from ml_model.promote import LOG_FILE, promote
from processor import scoring
from processor.alerts import AlertWriter
from processor.cli import parse_args, settings_from_args
from processor.lake_tables import (
    CHALLENGER_COLUMNS,
    EVENT_TABLE,
    SCORED_TRANSACTION_TABLE,
    event_table,
)
from processor.scoring import ShadowScorer, frame_scorer
from processor.sinks import score_rows
from scripts.setup_aws import ensure_bucket
from tests.model_cards import small_card

T0 = datetime(2026, 1, 2, tzinfo=UTC)
AMOUNT = FEATURE_NAMES.index("tx_amount")


def _card(
    name: str, features: list[str] | None = None, versions: dict[str, str] | None = None
) -> ModelCard:
    card = small_card(name, features, reference_values=dict.fromkeys(FEATURE_NAMES, 0.0))
    return card if versions is None else replace(card, library_versions=versions)


def write_model(
    path: Path,
    name: str,
    *,
    per_euro: float = 0.0,
    bias: float = 0.0,
    features: list[str] | None = None,
    versions: dict[str, str] | None = None,
) -> str:
    """A logistic model scoring sigmoid(bias + per_euro * tx_amount), saved with its card."""
    model = LogisticRegression()
    model.classes_ = np.array([0, 1])
    model.coef_ = np.zeros((1, len(FEATURE_NAMES)))
    model.coef_[0, AMOUNT] = per_euro
    model.intercept_ = np.array([bias])
    model.n_features_in_ = len(FEATURE_NAMES)
    write_artifacts(str(path), model, _card(name, features, versions))
    return str(path)


def champion_at(path: Path) -> str:
    return write_model(path, "champion-v1", per_euro=0.01, bias=-5.0)  # alerts above 500


def everything_at(path: Path) -> str:
    return write_model(path, "challenger-v2", bias=10.0)  # ~1.0 on every row


def transactions(amounts: list[float]) -> list[dict[str, Any]]:
    """Transaction rows as the engine hands them to score_rows (every lake column present)."""
    rows = []
    for i, amount in enumerate(amounts):
        row: dict[str, Any] = dict.fromkeys(SCORED_TRANSACTION_TABLE.names)
        row.update(dict.fromkeys(FEATURE_NAMES, 0.0))
        row.update(
            event_type="transaction",
            event_id=f"e{i}",
            transaction_id=f"tx-{i:03d}",
            card_token="c" * 64,
            card_last4="4242",
            amount=amount,
            currency="EUR",
            merchant_id="m1",
            terminal_id="t1",
            event_time=T0 + timedelta(minutes=i),
            approximateArrivalTimestamp=T0 + timedelta(minutes=i, seconds=1),
            late=False,
            tx_amount=amount,
        )
        rows.append(row)
    return rows


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return load_config("local").with_overrides(model={"path": champion_at(tmp_path / "current")})


class CapturedAlerts(AlertWriter):
    """The real AlertWriter (its filter and items), with DynamoDB replaced by a list."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.items: list[dict[str, Any]] = []

    def keep_verdicts(self, items: list[dict[str, Any]]) -> None:
        pass  # the list holds no verdicts to keep

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        self.items.extend(items)


AMOUNTS = [10.0, 900.0, 20.0, 2_000.0, 35.0]


def test_both_scores_are_stored_and_only_the_champion_decides(
    local_settings: Settings, tmp_path: Path
) -> None:
    alone, shadowed = transactions(AMOUNTS), transactions(AMOUNTS)
    score_rows(frame_scorer(local_settings), alone)
    with_challenger = local_settings.with_overrides(
        model={"challenger_path": everything_at(tmp_path / "next")}
    )
    scorer = frame_scorer(with_challenger)
    assert isinstance(scorer, ShadowScorer)
    score_rows(scorer, shadowed)

    assert [r["decision"] for r in shadowed] == ["OK", "ALERT", "OK", "ALERT", "OK"]
    for before, after in zip(alone, shadowed, strict=True):
        assert before["challenger_score"] is None and before["challenger_version"] is None
        assert after["challenger_score"] > 0.99 and after["challenger_version"] == "challenger-v2"
        champion = ("fraud_score", "model_version", "decision", "reason_codes")
        assert {k: after[k] for k in champion} == {k: before[k] for k in champion}

    alerts, baseline = CapturedAlerts(with_challenger), CapturedAlerts(local_settings)
    alerts(shadowed, 0)
    baseline(alone, 0)
    assert [i["transaction_id"] for i in alerts.items] == ["tx-001", "tx-003"]
    assert _timeless(alerts.items) == _timeless(baseline.items)
    assert all(i["model_version"] == "champion-v1" for i in alerts.items)

    table = event_table(shadowed, SCORED_TRANSACTION_TABLE)
    assert table.schema.field("challenger_score").type == pa.float64()
    assert table.schema.field("challenger_version").type == pa.string()
    assert set(table.column("challenger_version").to_pylist()) == {"challenger-v2"}
    unshadowed = event_table(alone, SCORED_TRANSACTION_TABLE)
    assert unshadowed.column("challenger_score").null_count == len(AMOUNTS)


def _timeless(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    clock = {"detected_at", "alert_latency_ms", "arrival_to_alert_ms", "expires_at"}
    return [{k: v for k, v in item.items() if k not in clock} for item in items]


def test_a_failing_challenger_leaves_its_columns_null(
    local_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = local_settings.with_overrides(
        model={"challenger_path": everything_at(tmp_path / "next")}
    )
    scorer = frame_scorer(settings)
    assert isinstance(scorer, ShadowScorer)

    def broken(features: np.ndarray) -> np.ndarray:
        raise RuntimeError("challenger bug")

    scorer.challenger.predict = broken  # type: ignore[method-assign]
    rows = transactions(AMOUNTS)
    score_rows(scorer, rows)
    assert [r["decision"] for r in rows] == ["OK", "ALERT", "OK", "ALERT", "OK"]
    assert all(r["challenger_score"] is None and r["challenger_version"] is None for r in rows)
    assert "challenger challenger-v2 failed" in caplog.text


def test_the_challenger_passes_the_champions_checks(
    local_settings: Settings, tmp_path: Path
) -> None:
    reordered = write_model(tmp_path / "reordered", "v-order", features=list(FEATURE_NAMES)[::-1])
    with pytest.raises(ModelError, match="v-order expects features"):
        frame_scorer(local_settings.with_overrides(model={"challenger_path": reordered}))
    stale = write_model(
        tmp_path / "stale", "v-stale", versions={"scikit-learn": "0.1.0", "numpy": "1"}
    )
    with pytest.raises(ModelVersionError, match="v-stale"):
        frame_scorer(local_settings.with_overrides(model={"challenger_path": stale}))
    with pytest.raises(ModelError, match="no model_card.json"):
        frame_scorer(
            local_settings.with_overrides(model={"challenger_path": str(tmp_path / "nothing")})
        )


def test_the_challenger_flag_and_setting() -> None:
    assert load_config("local").model.challenger_path is None
    args = parse_args(["--challenger", "s3://fraud-lake/models/next"])
    assert settings_from_args(args).model.challenger_path == "s3://fraud-lake/models/next"
    assert settings_from_args(parse_args([])).model.challenger_path is None


def test_a_promotion_between_reading_card_and_model_is_read_again(
    local_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion, challenger = local_settings.model.path, everything_at(tmp_path / "next")
    real_load = scoring.load_model
    calls: list[str] = []

    def load_then_promote(blob: bytes, card: ModelCard, where: str) -> Any:
        if not calls:
            promote(champion, challenger, local_settings.aws)
        calls.append(card.version)
        return real_load(blob, card, where)

    monkeypatch.setattr(scoring, "load_model", load_then_promote)
    _, card = scoring.read_checked_model(champion, local_settings.aws)
    assert card.version == "challenger-v2" and calls == ["champion-v1", "challenger-v2"]


# --- compare -------------------------------------------------------------------------------


def scored_lake(lake: Path, *, challenger: bool = True, **options: Any) -> dict[str, Any]:
    """A lake of 300 old transactions (days 1-10), 20 recent ones, and their chargebacks.

    Returns what the report must say, computed here from the rows with sklearn.
    """
    rng = np.random.default_rng(7)
    n_old, n_recent = 300, 20
    fraud = rng.random(n_old + n_recent) < 0.15
    # Distinct scores: the challenger ranks frauds better than the champion.
    champion = (
        np.clip(0.3 * fraud + rng.random(fraud.size) * 0.7, 0, 1) + np.arange(fraud.size) * 1e-9
    )
    challenger_scores = np.clip(0.6 * fraud + rng.random(fraud.size) * 0.4, 0, 1)
    rows = transactions([50.0] * fraud.size)
    for i, row in enumerate(rows):
        day = 1 + i * 10 / n_old if i < n_old else 19.5  # recent: 0.5 days before the newest label
        row["event_time"] = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
        row["fraud_score"] = float(champion[i])
        row["model_version"] = "champion-v1"
        row["decision"] = "ALERT" if champion[i] >= 0.8 else "OK"
        row["reason_codes"] = []
        if challenger:
            row["challenger_score"] = float(challenger_scores[i])
            row["challenger_version"] = "challenger-v2"
    write_deltalake(
        f"{lake}/transactions",
        event_table(rows, SCORED_TRANSACTION_TABLE if challenger else _without_challenger()),
        partition_by=["event_date"],
        **options,
    )
    labels = []
    # Every old fraud gets a confirmed chargeback, and the first one a later confirmed-genuine
    # report (the latest label wins); recent #310 a chargeback, recent #311 a genuine report
    # (both labelled, though recent); the newest label is on 2026-01-21.
    charged = [i for i in range(n_old) if fraud[i]] + [310]
    for j, i in enumerate(charged):
        delay = timedelta(days=7 if i < n_old else 0.25)
        labels.append(_chargeback(f"cb-{j}", rows[i], True, rows[i]["event_time"] + delay))
    cleared = charged[0]
    labels.append(_chargeback("cb-g1", rows[cleared], False, T0 + timedelta(days=19)))
    labels.append(_chargeback("cb-g2", rows[311], False, rows[311]["event_time"]))
    labels.append(
        _chargeback("cb-last", rows[0], bool(fraud[0]), datetime(2026, 1, 21, tzinfo=UTC))
    )
    write_deltalake(
        f"{lake}/labels", event_table(labels, EVENT_TABLE), partition_by=["event_date"], **options
    )

    truth = fraud.copy()
    truth[[cleared, 310, 311]] = False, True, False
    keep = np.r_[np.arange(n_old), [310, 311]]
    return {
        "labels": truth[keep],
        "champion": champion[keep],
        "challenger": challenger_scores[keep],
        "alerts": int((champion[keep] >= 0.8).sum()),
        "unlabelled": n_recent - 2,
    }


def _without_challenger() -> pa.Schema:
    return pa.schema([f for f in SCORED_TRANSACTION_TABLE if f.name not in CHALLENGER_COLUMNS])


def _chargeback(
    name: str, transaction: dict[str, Any], confirmed: bool, when: datetime
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(EVENT_TABLE.names)
    row.update(
        event_type="chargeback",
        event_id=name,
        chargeback_id=name,
        transaction_id=transaction["transaction_id"],
        transaction_time=transaction["event_time"],
        confirmed_fraud=confirmed,
        event_time=when,
        late=False,
    )
    return row


def _precision_at(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    top = np.zeros(len(scores), dtype=bool)
    top[np.argsort(-scores)[:k]] = True
    return float(precision_score(labels, top))


def test_compare_matches_sklearn_on_the_labelled_transactions(tmp_path: Path) -> None:
    want = scored_lake(tmp_path / "lake")
    report = compare.compare(str(tmp_path / "lake"), load_config("local"))
    labels = want["labels"]
    assert (report["labelled"], report["frauds"], report["unlabelled"]) == (
        len(labels),
        int(labels.sum()),
        want["unlabelled"],
    )
    assert report["as_of"] == "2026-01-21T00:00:00+00:00"
    assert report["alert_budget"] == want["alerts"] > 0
    for model in ("champion", "challenger"):
        scores = want[model]
        got = report[model]
        assert got["average_precision"] == pytest.approx(average_precision_score(labels, scores))
        assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
        for k in (100, want["alerts"]):
            assert got["precision_at_k"][str(k)] == pytest.approx(_precision_at(labels, scores, k))
    assert report["challenger"]["versions"] == {"challenger-v2": len(labels)}
    assert report["challenger"]["average_precision"] > report["champion"]["average_precision"]


def test_precision_at_k_shares_ties_and_caps_k() -> None:
    labels = np.array([1, 0, 1, 0], dtype=bool)
    assert compare.precision_at_k(labels, np.array([0.9, 0.5, 0.5, 0.5]), 2) == pytest.approx(
        (1 + 1 / 3) / 2
    )
    assert compare.precision_at_k(labels, np.array([0.9, 0.8, 0.1, 0.1]), 10) == 0.5


def test_compare_since_a_date(tmp_path: Path) -> None:
    scored_lake(tmp_path / "lake")
    since = datetime(2026, 1, 7, tzinfo=UTC)
    report = compare.compare(str(tmp_path / "lake"), load_config("local"), since=since)
    full = compare.compare(str(tmp_path / "lake"), load_config("local"))
    assert 0 < report["scored"] < full["scored"] and report["since"] == since.isoformat()


def test_compare_cli_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scored_lake(tmp_path / "lake")
    lake = str(tmp_path / "lake")
    assert run_cli(compare.main, ["--lake", lake, "--since", "2026-01-01"]) == 0
    table = capsys.readouterr().out
    assert "average precision" in table and "precision@100" in table and "(budget)" in table
    assert "label delay" in table or "delay 9 days" in table
    assert run_cli(compare.main, ["--lake", lake, "--json", "--top-k", "50"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "50" in report["champion"]["precision_at_k"] and report["label_rule"]


@pytest.mark.parametrize("challenger", [False, True])
def test_compare_without_challenger_scores_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], challenger: bool
) -> None:
    lake = tmp_path / "lake"
    if challenger:  # the columns are there (the current schema) but every value is null
        rows = transactions([10.0, 20.0])
        for row in rows:
            row.update(fraud_score=0.1, model_version="champion-v1", decision="OK")
        write_deltalake(f"{lake}/transactions", event_table(rows, SCORED_TRANSACTION_TABLE))
    else:  # a lake written before the challenger columns
        scored_lake(lake, challenger=False)
    assert run_cli(compare.main, ["--lake", str(lake)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no challenger scores in the lake") and "\n" not in err


def test_compare_reads_an_s3a_lake(settings: Settings) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    from ml_model.report.run_data import storage_options

    lake = f"s3a://{settings.s3.bucket}/lake"
    options = storage_options(settings.with_overrides(processor={"lake_path": lake}))
    uri = f"s3://{settings.s3.bucket}/lake"
    rows = transactions([10.0, 900.0])
    for i, row in enumerate(rows):
        row.update(
            fraud_score=0.1 + i * 0.8,
            model_version="champion-v1",
            decision="OK",
            challenger_score=0.2 + i * 0.5,
            challenger_version="challenger-v2",
        )
    write_deltalake(
        f"{uri}/transactions", event_table(rows, SCORED_TRANSACTION_TABLE), storage_options=options
    )
    late = T0 + timedelta(days=30)
    labels = [_chargeback("cb-1", rows[1], True, late)]
    write_deltalake(f"{uri}/labels", event_table(labels, EVENT_TABLE), storage_options=options)
    report = compare.compare(lake, settings)
    assert (report["labelled"], report["frauds"]) == (2, 1)
    assert report["challenger"]["roc_auc"] == report["champion"]["roc_auc"] == 1.0


# --- promote -------------------------------------------------------------------------------


def test_promote_swaps_keeps_the_old_one_and_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    champion = champion_at(tmp_path / "models" / "current")
    challenger = everything_at(tmp_path / "models" / "next")
    metrics = tmp_path / "compare.json"
    metrics.write_text(json.dumps({"challenger": {"average_precision": 0.9}}))
    argv = [
        "promote",
        "--champion",
        champion,
        "--challenger",
        challenger,
        "--metrics",
        str(metrics),
    ]
    assert run_cli(compare.main, argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert read_card(champion).version == "challenger-v2"
    backup = tmp_path / "models" / "current.previous-champion-v1"
    assert read_card(str(backup)).version == "champion-v1" and printed["backup"] == str(backup)
    assert read_card(challenger).version == "challenger-v2"  # copied, not moved
    lines = (tmp_path / "models" / LOG_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [printed]
    assert printed["old_version"] == "champion-v1" and printed["new_version"] == "challenger-v2"
    assert printed["metrics"] == {"challenger": {"average_precision": 0.9}} and printed["user"]
    assert not list((tmp_path / "models").glob(".current.staging-*"))

    # Promoting the old one back keeps the second backup beside the first one.
    promote(champion, str(backup), load_config("local").aws)
    assert read_card(champion).version == "champion-v1"
    assert read_card(str(tmp_path / "models" / "current.previous-challenger-v2")).version == (
        "challenger-v2"
    )
    assert len((tmp_path / "models" / LOG_FILE).read_text().splitlines()) == 2


def test_the_champion_path_always_holds_a_complete_model(tmp_path: Path) -> None:
    """A reader polling the champion during repeated promotions never finds it incomplete."""
    aws = load_config("local").aws
    champion = champion_at(tmp_path / "current")
    versions = [everything_at(tmp_path / "a"), champion_at(tmp_path / "b")]
    done, seen, failures = threading.Event(), set(), []

    def poll() -> None:
        while not done.is_set():
            try:
                names = {p.name for p in Path(champion).iterdir()}
                assert {MODEL_FILE, CARD_FILE} <= names, names
                seen.add(read_card(champion).version)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for i in range(30):
            promote(champion, versions[i % 2], aws)
    finally:
        done.set()
        reader.join()
    assert not failures, failures[:3]
    assert seen == {"champion-v1", "challenger-v2"}


def test_a_failed_copy_leaves_the_champion_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = champion_at(tmp_path / "current")
    challenger = everything_at(tmp_path / "next")

    def copy_then_fail(source: Path, target: Path, **kwargs: Any) -> None:
        (Path(target) / MODEL_FILE).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(promote_module.shutil, "copytree", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        promote(champion, challenger, load_config("local").aws)
    assert read_card(champion).version == "champion-v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "next"]


def test_a_challenger_with_other_features_is_refused(tmp_path: Path) -> None:
    champion = champion_at(tmp_path / "current")
    other = write_model(tmp_path / "next", "v-other", features=[*FEATURE_NAMES[:-1], "new_feature"])
    with pytest.raises(ModelError, match="missing \\['new_feature'\\]"):
        promote(champion, other, load_config("local").aws)
    assert read_card(champion).version == "champion-v1"
    assert not (tmp_path / LOG_FILE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "next"]


def test_promote_on_s3_backs_up_and_records(settings: Settings, tmp_path: Path) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    base = f"s3://{settings.s3.bucket}/models"
    champion = f"{base}/current"
    write_artifacts(
        champion,
        _model_of(tmp_path / "c", champion_at),
        read_card(str(tmp_path / "c")),
        settings.aws,
    )
    promotion = promote(champion, everything_at(tmp_path / "next"), settings.aws)
    assert read_card(champion, settings.aws).version == "challenger-v2"
    assert promotion.backup == f"{champion}/previous/champion-v1"
    assert read_card(promotion.backup, settings.aws).version == "champion-v1"
    s3 = make_client("s3", settings.aws)
    log = s3.get_object(Bucket=settings.s3.bucket, Key=f"models/{LOG_FILE}")["Body"].read()
    assert json.loads(log.decode().splitlines()[-1])["new_version"] == "challenger-v2"
    first = promote(f"{base}/fresh", str(tmp_path / "next"), settings.aws)  # nothing to replace
    assert (first.old_version, first.backup) == (None, None)
    assert read_card(f"{base}/fresh", settings.aws).version == "challenger-v2"


def _model_of(path: Path, make: Any) -> Any:
    from ml_model.artifacts import read_model

    make(path)
    return read_model(str(path))[0]


def test_an_old_lake_needs_the_challenger_columns_added_once(tmp_path: Path) -> None:
    """The job's lake commit refuses the new columns (no schema evolution, as Spark's append
    with autoMerge off) until the README's one-off migration adds them; then it appends, and
    the old rows read as null."""
    from deltalake import DeltaTable, Field
    from deltalake.exceptions import SchemaMismatchError
    from deltalake.schema import PrimitiveType

    from processor.lake_commit import commit_batch

    lake = tmp_path / "lake"
    scored_lake(lake, challenger=False)
    path = f"{lake}/transactions"
    rows = transactions([10.0])
    rows[0].update(fraud_score=0.1, model_version="champion-v1", decision="OK")
    batch = event_table(rows, SCORED_TRANSACTION_TABLE)
    with pytest.raises(SchemaMismatchError, match="challenger_score, challenger_version"):
        commit_batch(path, batch, "event_date", "test-challenger-migration", 0)

    DeltaTable(path).alter.add_columns(
        [
            Field("challenger_score", PrimitiveType("double"), nullable=True),
            Field("challenger_version", PrimitiveType("string"), nullable=True),
        ]
    )
    commit_batch(path, batch, "event_date", "test-challenger-migration", 0)
    written = DeltaTable(path).to_pyarrow_table(columns=["challenger_score"])
    assert written.num_rows == 321
    assert written.column("challenger_score").null_count == 321


def test_without_an_atomic_exchange_the_folders_are_still_swapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where renameat2 is missing (not Linux), three renames swap them, with a warning."""
    monkeypatch.setattr(promote_module.ctypes, "CDLL", lambda *a, **k: object())
    champion = champion_at(tmp_path / "current")
    promotion = promote(champion, everything_at(tmp_path / "next"), load_config("local").aws)
    assert read_card(champion).version == "challenger-v2"
    assert promotion.backup is not None and read_card(promotion.backup).version == "champion-v1"
    assert "no atomic exchange here" in caplog.text
