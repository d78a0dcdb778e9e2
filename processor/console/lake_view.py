"""A card's recent transactions, read from the lake's Delta table without Spark (delta-rs).

The processor's lake path is a folder or an `s3a://` URI (Hadoop's scheme); delta-rs speaks
`s3://` and takes its endpoint, region and credentials as storage options, from the same
profile the processor uses, so the emulator, LocalStack and AWS differ only in configuration.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from processor.sinks import table_path

if TYPE_CHECKING:
    from config.settings import AwsSettings, Settings

logger = logging.getLogger(__name__)

RECENT_LIMIT = 50
# What the transaction page shows of each row, when the table has it (score columns are
# missing from a lake written without a model).
COLUMNS = (
    "event_time",
    "transaction_id",
    "amount",
    "currency",
    "merchant_id",
    "terminal_id",
    "mcc",
    "merchant_country",
    "channel",
    "fraud_score",
    "decision",
    "reason_codes",
    "late",
)


def delta_uri(lake_path: str, table: str) -> str:
    """The table's URI for delta-rs: `s3a://` and `s3n://` become `s3://`."""
    path = table_path(lake_path, table)
    for scheme in ("s3a://", "s3n://"):
        if path.startswith(scheme):
            return "s3://" + path[len(scheme) :]
    return path


def storage_options(aws: AwsSettings) -> dict[str, str]:
    """delta-rs (object_store) options for the profile's S3: endpoint, region, credentials."""
    options = {"AWS_REGION": aws.region}
    if aws.endpoint_url:
        options["AWS_ENDPOINT_URL"] = aws.endpoint_url
        if aws.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if aws.access_key_id and aws.secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = aws.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = aws.secret_access_key
    return options


@dataclass(frozen=True)
class CardHistory:
    """The newest transactions of one card, and why there are none when there are none."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None


def card_transactions(
    settings: Settings, card_token: str, limit: int = RECENT_LIMIT
) -> CardHistory:
    """The card's newest `limit` transactions in the lake, newest first."""
    uri = delta_uri(settings.processor.lake_path, "transactions")
    options = storage_options(settings.aws) if uri.startswith("s3://") else None
    try:
        dataset = DeltaTable(uri, storage_options=options).to_pyarrow_dataset()
        columns = [name for name in COLUMNS if name in dataset.schema.names]
        found = dataset.to_table(columns=columns, filter=ds.field("card_token") == card_token)
    except TableNotFoundError:
        return CardHistory(note=f"no transactions table at {uri} yet")
    except (DeltaError, OSError, pa.ArrowException) as exc:
        # The alert and its verdict buttons still work without the history.
        logger.warning("cannot read %s: %s", uri, exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return CardHistory(note=f"the lake could not be read ({type(exc).__name__}: {first})")
    if found.num_rows == 0:
        return CardHistory(note="no transactions of this card in the lake")
    order = pc.sort_indices(
        found, sort_keys=[("event_time", "descending"), ("transaction_id", "descending")]
    )
    newest = found.take(order[:limit])
    return CardHistory(rows=newest.to_pylist())
