"""The importer: outside CSV/Parquet columns onto the contract, rejects, both ends of its output.

The source is our own generator's transactions written with other column names, epoch-ms
times, amounts in cents and upper-case channel codes, so every imported event can be compared
field by field with the event it came from.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from config.exceptions import ConfigError, ContractError
from producer.contract import (
    luhn_valid,
    parse_event_time,
    validate_event,
)
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.importer import main as import_main
from producer.importer import run_import
from producer.importer_mapping import load_mapping, synthetic_pan, to_event_time
from tests.conftest import SMALL_TRAINING

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MAPPING = ROOT / "config" / "examples" / "importer-mapping.yaml"
EXAMPLE_CSV = ROOT / "config" / "examples" / "transactions-sample.csv"
LATER = datetime(2100, 1, 1, tzinfo=UTC)  # every chargeback is due by then
CHANNEL_CODES = {"pos": "POS", "ecom": "ECOM", "atm": "ATM", "contactless": "NFC"}
COLUMNS = [
    "txn_ref", "ts_ms", "pan", "client_id", "amount_cents", "ccy", "merchant", "pos_id", "mcc",
    "country", "lat", "lon", "chan", "device", "is_fraud", "fraud_type",
]  # fmt: skip


def generated_transactions(options: GeneratorOptions) -> list[dict[str, Any]]:
    records = TransactionGenerator(options.with_changes(anomaly_rate=0.0)).records()
    events = (json.loads(record.data) for record in records)
    return [event for event in events if event["event_type"] == "transaction"]


def source_row(event: dict[str, Any]) -> dict[str, Any]:
    """A transaction as the outside system writes it (the example mapping's columns)."""
    label = event["label"]
    return {
        "txn_ref": event["transaction_id"],
        "ts_ms": int(parse_event_time(event["event_time"]).timestamp() * 1000),
        "pan": event["card_number"],
        "client_id": event["customer_id"],
        "amount_cents": round(event["amount"] * 100),
        "ccy": event["currency"],
        "merchant": event["merchant_id"],
        "pos_id": event["terminal_id"],
        "mcc": event["mcc"],
        "country": event["merchant_country"],
        "lat": event["latitude"],
        "lon": event["longitude"],
        "chan": CHANNEL_CODES[event["channel"]],
        "device": event["device_id"],
        "is_fraud": "yes" if label["is_fraud"] else "no",
        "fraud_type": label["fraud_scenario"],
    }


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def originals() -> list[dict[str, Any]]:
    options = GeneratorOptions(seed=21, num_transactions=1_500, num_customers=120, fraud_rate=0.04)
    return generated_transactions(options)


@pytest.fixture(scope="module")
def mapping() -> Any:
    return load_mapping(EXAMPLE_MAPPING)


# -- field by field ---------------------------------------------------------------------------


def test_imported_transactions_equal_the_originals_field_by_field(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    source = write_csv([source_row(event) for event in originals], tmp_path / "in.csv")
    output = tmp_path / "events.jsonl"
    result = run_import(mapping, source, output, now=LATER)
    events = read_jsonl(output)
    imported = [event for event in events if event["event_type"] == "transaction"]
    by_id = {event["transaction_id"]: event for event in imported}
    assert len(by_id) == len(imported) == len(originals) == result.transactions
    for original in originals:
        copy = by_id[original["transaction_id"]]
        assert list(copy.items()) == list(original.items())  # values, types and field order
    assert not result.rejected
    assert all(validate_event(event) is None for event in events)
    times = [event["event_time"] for event in events]
    assert times == sorted(times)


def test_each_fraud_gets_a_chargeback_after_the_label_delay(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    source = write_csv([source_row(event) for event in originals], tmp_path / "in.csv")
    output = tmp_path / "events.jsonl"
    result = run_import(mapping, source, output, now=LATER)
    chargebacks = {
        e["transaction_id"]: e for e in read_jsonl(output) if e["event_type"] != "transaction"
    }
    frauds = [event for event in originals if event["label"]["is_fraud"]]
    assert frauds and len(chargebacks) == len(frauds) == result.chargebacks
    for fraud in frauds:
        chargeback = chargebacks[fraud["transaction_id"]]
        assert chargeback["event_type"] == "chargeback"
        assert chargeback["confirmed_fraud"] is True
        assert chargeback["chargeback_id"] == f"cb-{fraud['transaction_id']}"
        assert chargeback["transaction_time"] == fraud["event_time"]
        assert (chargeback["card_number"], chargeback["terminal_id"]) == (
            fraud["card_number"],
            fraud["terminal_id"],
        )
        delay = parse_event_time(chargeback["event_time"]) - parse_event_time(fraud["event_time"])
        assert delay == timedelta(days=7)
        assert chargeback["label"] == fraud["label"]


def test_chargebacks_dated_after_now_are_left_out(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    source = write_csv([source_row(event) for event in originals], tmp_path / "in.csv")
    last = max(parse_event_time(event["event_time"]) for event in originals)
    result = run_import(mapping, source, tmp_path / "events.jsonl", now=last)
    frauds = sum(event["label"]["is_fraud"] for event in originals)
    assert result.chargebacks_not_due == frauds and result.chargebacks == 0


def test_parquet_with_native_types_imports_the_same_events(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    rows = [source_row(event) for event in originals[:300]]
    for row in rows:
        row["is_fraud"] = row["is_fraud"] == "yes"  # a boolean column
    pd.DataFrame(rows).to_parquet(tmp_path / "in.parquet")
    write_csv(rows, tmp_path / "in.csv")
    run_import(mapping, tmp_path / "in.parquet", tmp_path / "p.jsonl", now=LATER)
    run_import(mapping, tmp_path / "in.csv", tmp_path / "c.jsonl", now=LATER)
    assert (tmp_path / "p.jsonl").read_bytes() == (tmp_path / "c.jsonl").read_bytes()


# -- rejects ----------------------------------------------------------------------------------


BROKEN: list[tuple[dict[str, Any], str]] = [
    ({"amount_cents": -500}, "out_of_range amount"),
    ({"pan": "4111111111111112"}, "invalid_value card_number"),
    ({"ccy": "XXX"}, "invalid_value currency"),
    ({"ts_ms": ""}, "missing_field event_time"),
    ({"ts_ms": "yesterday"}, "invalid_value event_time"),
    ({"ts_ms": 4_102_444_800_000}, "future_event_time event_time"),  # 2100-01-01
    ({"is_fraud": "maybe"}, "wrong_type label.is_fraud"),
    ({"fraud_type": "x" * 65}, "invalid_value label.fraud_scenario"),
    ({"amount_cents": "12,50"}, "wrong_type amount"),
    ({"mcc": "54111"}, "invalid_value mcc"),
]


def test_broken_rows_are_rejected_with_the_contracts_reasons(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    rows = [source_row(event) for event in originals[:200]]
    for index, (change, _) in enumerate(BROKEN):
        rows[10 * index + 5].update(change)
    rows[7]["amount_cents"] = 0  # a zero-amount verification: valid
    rows[8]["fraud_type"] = "skimming ring #3"  # any short name: valid
    source = write_csv(rows, tmp_path / "in.csv")
    rejects = tmp_path / "rejects.jsonl"
    result = run_import(mapping, source, tmp_path / "events.jsonl", rejects_path=rejects, now=now)
    assert result.rejected == Counter(reason for _, reason in BROKEN)
    assert result.transactions == 200 - len(BROKEN)
    written = read_jsonl(rejects)
    assert [(r["row"], f"{r['reason']} {r['field']}") for r in written] == [
        (10 * index + 6, reason) for index, (_, reason) in enumerate(BROKEN)
    ]
    events = {e["transaction_id"]: e for e in read_jsonl(tmp_path / "events.jsonl")}
    assert events[rows[7]["txn_ref"]]["amount"] == 0.0
    assert events[rows[8]["txn_ref"]]["label"]["fraud_scenario"] == "skimming ring #3"


def test_no_card_number_reaches_the_rejects_file_in_clear(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    rows = [source_row(event) for event in originals[:60]]
    for row in rows:
        row["ccy"] = "XXX"
        row["merchant"] = f"shop of {row['pan']}"  # a PAN where no PAN belongs
    rows[0]["pan"] = "4111 1111 1111 1112"  # not Luhn-valid: still never in clear
    source = write_csv(rows, tmp_path / "in.csv")
    rejects = tmp_path / "rejects.jsonl"
    with pytest.raises(ContractError, match="none of the 60 rows"):
        run_import(mapping, source, tmp_path / "out.jsonl", rejects_path=rejects, now=LATER)
    text = rejects.read_text()
    assert len(text.splitlines()) == 60
    for row in rows:
        assert row["pan"] not in text
    assert "4111 1111 1111 1112" not in text and "411111111111111" not in text
    first = json.loads(text.splitlines()[0])
    assert first["values"]["pan"] == "****1112"
    assert re.fullmatch(
        r"shop of tok_[0-9a-f]{16}_\d{4}", json.loads(text.splitlines()[1])["values"]["merchant"]
    )
    assert not (tmp_path / "out.jsonl").exists()


# -- card ids and time transforms ------------------------------------------------------------


def test_a_card_id_column_gives_a_deterministic_luhn_valid_synthetic_pan(
    originals: list[dict[str, Any]], tmp_path: Path
) -> None:
    raw = yaml.safe_load(EXAMPLE_MAPPING.read_text())
    del raw["fields"]["card_number"]
    raw["fields"]["card_id"] = "card_ref"
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    cards = {event["card_number"]: f"C{n:05d}" for n, event in enumerate(originals)}
    rows = [
        {**{k: v for k, v in source_row(event).items() if k != "pan"},
         "card_ref": cards[event["card_number"]]}
        for event in originals[:400]
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    run_import(
        load_mapping(tmp_path / "m.yaml"), tmp_path / "in.csv", tmp_path / "o.jsonl", now=LATER
    )
    events = [e for e in read_jsonl(tmp_path / "o.jsonl") if e["event_type"] == "transaction"]
    pans = {event["card_number"] for event in events}
    assert len(pans) == len({row["card_ref"] for row in rows})  # one PAN per card id
    for event in events:
        original_card = next(
            o["card_number"] for o in originals if o["transaction_id"] == event["transaction_id"]
        )
        assert event["card_number"] == synthetic_pan(cards[original_card])
        assert luhn_valid(event["card_number"]) and len(event["card_number"]) == 19
    assert synthetic_pan("C00001") == synthetic_pan("C00001") != synthetic_pan("C00002")


@pytest.mark.parametrize(
    ("source", "value", "expected"),
    [
        ({"time": "epoch_ms"}, "1767225600123", "2026-01-01T00:00:00.123Z"),
        ({"time": "epoch_ms"}, 1767225600123, "2026-01-01T00:00:00.123Z"),
        ({"time": "epoch_s"}, "1767225600.5", "2026-01-01T00:00:00.500Z"),
        ({"time": "epoch_s"}, 1767225600, "2026-01-01T00:00:00.000Z"),
        ({}, "2026-01-01T10:00:00+02:00", "2026-01-01T08:00:00.000Z"),
        ({}, "2026-01-01 10:00:00", "2026-01-01T10:00:00.000Z"),
        ({"timezone": "Europe/Paris"}, "2026-07-01T10:00:00", "2026-07-01T08:00:00.000Z"),
        ({"format": "%d/%m/%Y %H:%M"}, "31/12/2025 23:59", "2025-12-31T23:59:00.000Z"),
        ({}, pd.Timestamp("2026-01-01T10:00:00Z"), "2026-01-01T10:00:00.000Z"),
        ({}, "not a time", "not a time"),  # left for the contract to reject
        ({"time": "epoch_ms"}, "soon", "soon"),
    ],
)
def test_time_transforms(source: dict[str, Any], value: Any, expected: str) -> None:
    from producer.importer_mapping import Source

    assert to_event_time(value, Source(column="t", **source)) == expected


# -- the mapping -----------------------------------------------------------------------------


def mapping_with(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(EXAMPLE_MAPPING.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = raw
        for parent in parents:
            node = node[parent]
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"fields__amount": {"column": "amount_cents", "sclae": 0.01}}, "fields.amount.sclae"),
        ({"fields__amount": {"column": "a", "scale": -1}}, "fields.amount.scale"),
        ({"fields__amount": {"column": "a", "constant": 1}}, "fields.amount"),
        ({"fields__amount": {"scale": 0.01}}, "fields.amount"),
        ({"fields__currency": None}, "fields.currency: required"),
        ({"fields__refund": "r"}, "fields.refund: not a transaction field"),
        ({"fields__event_type": "t"}, "fields.event_type"),
        ({"fields__card_id": "card_ref"}, "fields.card_number"),
        ({"fields__card_number": None}, "fields.card_number"),
        ({"fields__mcc": {"column": "mcc", "scale": 2}}, "fields.mcc.scale"),
        ({"fields__amount": {"column": "a", "time": "epoch_ms"}}, "fields.amount.time"),
        ({"fields__event_time": {"column": "t", "time": "epoch_h"}}, "fields.event_time.time"),
        ({"fields__event_time": {"column": "t", "timezone": "Mars/Base"}}, "fields.event_time"),
        ({"label_delay_days": -1}, "label_delay_days"),
        ({"label_delay": 7}, "label_delay"),
        ({"fraud": None}, "fraud_scenario: needs 'fraud'"),
        ({"fields": None}, "fields"),
    ],
)
def test_a_bad_mapping_is_one_config_error_naming_the_key(
    changes: dict[str, Any], names: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=re.escape(names)):
        load_mapping(mapping_with(tmp_path, **changes))


def test_a_mapped_column_missing_from_the_input_names_key_and_column(
    originals: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = mapping_with(tmp_path, fields__currency="currency_code")
    source = write_csv([source_row(event) for event in originals[:5]], tmp_path / "in.csv")
    with pytest.raises(ConfigError, match="mapping fields.currency: column 'currency_code'"):
        run_import(load_mapping(path), source, tmp_path / "out.jsonl")


def test_constants_and_value_replacements(originals: list[dict[str, Any]], tmp_path: Path) -> None:
    path = mapping_with(
        tmp_path,
        fields__currency={"constant": "EUR"},
        fields__transaction_id={"column": "txn_ref", "prefix": "ext-"},
        fraud={"column": "is_fraud", "values": {"yes": "fraud", "no": "genuine"}},
    )
    source = write_csv([source_row(event) for event in originals[:50]], tmp_path / "in.csv")
    run_import(load_mapping(path), source, tmp_path / "out.jsonl", now=LATER)
    events = [e for e in read_jsonl(tmp_path / "out.jsonl") if e["event_type"] == "transaction"]
    assert {event["currency"] for event in events} == {"EUR"}
    assert all(event["transaction_id"].startswith("ext-") for event in events)
    assert [e["label"]["is_fraud"] for e in events] == [
        o["label"]["is_fraud"] for o in originals[:50]
    ]


# -- the command line ------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "producer.importer", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_the_example_imports_and_reports_rejects_by_reason(tmp_path: Path) -> None:
    broken = tmp_path / "sample.csv"
    lines = EXAMPLE_CSV.read_text().splitlines()
    header = lines[0].split(",")
    row = dict(zip(header, next(csv.reader([lines[1]])), strict=True))
    row["amount_cents"] = "-100"
    broken.write_text("\n".join([*lines, ",".join(row.values())]) + "\n")
    output, rejects = tmp_path / "events.jsonl", tmp_path / "rejects.jsonl"
    result = run_module(
        "--mapping", str(EXAMPLE_MAPPING), str(broken), "-o", str(output), "--rejects", str(rejects)
    )
    assert result.returncode == 0, result.stderr
    rows = len(lines) - 1
    assert f"imported {rows + 1} rows: {rows} transactions and " in result.stderr
    assert f"rejected 1 of {rows + 1} rows by the contract (rows in {rejects}):" in result.stderr
    assert "  out_of_range amount: 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert all(validate_event(event) is None for event in read_jsonl(output))
    assert read_jsonl(rejects)[0]["row"] == rows + 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--mapping", "nope.yaml", "in.csv", "-o", "x"], "mapping nope.yaml does not exist"),
        (["--mapping", str(EXAMPLE_MAPPING), "missing.csv", "-o", "x"], "missing.csv"),
        (["--mapping", str(EXAMPLE_MAPPING), str(EXAMPLE_MAPPING), "-o", "x"], "--format"),
        ([str(EXAMPLE_CSV), "-o", "x"], "--mapping"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    result = run_module(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert says in lines[-1]
    if "--mapping" not in says:
        assert len(lines) == 1


def test_a_bad_mapping_fails_in_one_line(tmp_path: Path) -> None:
    path = mapping_with(tmp_path, fields__amount={"column": "amount_cents", "sclae": 0.01})
    result = run_module("--mapping", str(path), str(EXAMPLE_CSV), "-o", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "fields.amount.sclae" in result.stderr


def test_the_console_script_is_fraud_import() -> None:
    import tomllib

    from producer.importer import cli

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fraud-import"] == "producer.importer:cli" and callable(cli)


def test_help_shows_the_defaults() -> None:
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "input format; auto: by file suffix (default: auto)" in text
    assert "CSV field delimiter (default: ,)" in text
    assert "synthetic PAN" in text


# -- both ends: replay and training ----------------------------------------------------------


def test_the_output_replays_as_is(
    originals: list[dict[str, Any]], mapping: Any, tmp_path: Path
) -> None:
    from producer.cli import main as producer_main

    source = write_csv([source_row(event) for event in originals[:400]], tmp_path / "in.csv")
    events = tmp_path / "events.jsonl"
    run_import(mapping, source, events, now=LATER)
    replayed = tmp_path / "replayed.jsonl"
    argv = ["--replay", str(events), "--sink", "file", "--output", str(replayed), "--rate", "0"]
    assert producer_main(argv) == 0
    assert replayed.read_bytes() == events.read_bytes()


RENAMED = {"card_testing": "BIN attack", "account_takeover": "ATO", "structuring": "smurfing"}


@pytest.mark.slow
def test_training_takes_the_imported_file(tmp_path: Path) -> None:
    """Small training (tests/conftest.py) on an import of the same generated history."""
    from config.settings import load_config
    from ml_model.artifacts import CARD_FILE
    from ml_model.train import generator_options, parse_args
    from ml_model.train import main as train_main

    rows = []
    for event in generated_transactions(generator_options(parse_args(SMALL_TRAINING))):
        row = source_row(event)
        row["fraud_type"] = RENAMED.get(row["fraud_type"], row["fraud_type"])
        rows.append(row)
    source = write_csv(rows, tmp_path / "history.csv")
    events = tmp_path / "events.jsonl"
    assert import_main(["--mapping", str(EXAMPLE_MAPPING), str(source), "-o", str(events)]) == 0
    model = tmp_path / "model"
    argv = [*SMALL_TRAINING, "--history", str(events), "--output", str(model), "--no-report"]
    assert train_main(argv, load_config("local")) == 0
    card = json.loads((model / CARD_FILE).read_text())
    recalled = set(card["metrics"]["per_scenario_recall"])
    assert recalled & set(RENAMED.values()) and not recalled & set(RENAMED)
