"""Labels as production learns them: only from the chargebacks that had arrived by the cut-off."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml_model.history import HISTORY_COLUMNS, labels_as_of

DAY0 = pd.Timestamp("2026-01-01", tz="UTC")


def _tx(tx_id: str, day: float, truth: bool | None = None) -> dict[str, Any]:
    # `truth` is the generator's label field: it must play no part in the labels.
    return {
        "event_type": "transaction",
        "event_time": DAY0 + pd.Timedelta(days=day),
        "transaction_id": tx_id,
        "card_token": "card",
        "terminal_id": "term",
        "amount": 10.0,
        "label_is_fraud": truth,
        "label_fraud_scenario": "card_testing" if truth else None,
    }


def _chargeback(cb_id: str, tx_id: str, day: float, confirmed: bool) -> dict[str, Any]:
    return {
        "event_type": "chargeback",
        "event_time": DAY0 + pd.Timedelta(days=day),
        "chargeback_id": cb_id,
        "transaction_id": tx_id,
        "terminal_id": "term",
        "confirmed_fraud": confirmed,
    }


def _history(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(HISTORY_COLUMNS))


def test_only_arrived_chargebacks_label_and_young_transactions_wait() -> None:
    history = _history(
        [
            _tx("reported", 0, truth=True),
            _chargeback("cb1", "reported", 7, confirmed=True),
            _tx(
                "quiet_old", 1, truth=True
            ),  # a fraud nobody reported: genuine, as production sees it
            _tx("cleared", 2),
            _chargeback("cb2", "cleared", 4, confirmed=True),
            _chargeback("cb3", "cleared", 9, confirmed=False),  # the latest verdict counts
            _tx("reported_late", 9, truth=True),
            _chargeback("cb4", "reported_late", 11, confirmed=True),  # arrives after the cut-off
            _tx("young", 9.5),
            _tx("after", 10.5),
        ]
    )
    as_of = DAY0 + pd.Timedelta(days=10)
    known, summary = labels_as_of(history, as_of)

    tx = known[known["event_type"] == "transaction"].set_index("transaction_id")
    assert tx["label_is_fraud"].to_dict() == {
        "reported": True,
        "quiet_old": False,
        "cleared": False,
        "reported_late": None,
        "young": None,
    }
    assert "after" not in tx.index and "cb4" not in set(known["chargeback_id"].dropna())
    assert tx.at["reported", "label_fraud_scenario"] == "card_testing"
    assert tx["label_fraud_scenario"].drop("reported").isna().all()
    assert (summary.fraud, summary.genuine, summary.pending) == (1, 2, 2)
    assert summary.as_of == as_of and summary.label_delay == pd.Timedelta(days=7)


def test_the_cut_off_defaults_to_the_newest_event() -> None:
    history = _history([_tx("a", 0), _tx("b", 8)])
    known, summary = labels_as_of(history)
    assert summary.as_of == DAY0 + pd.Timedelta(days=8)
    assert known.set_index("transaction_id")["label_is_fraud"].to_dict() == {"a": False, "b": None}
