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

from config.lake import delta_uri, storage_options

if TYPE_CHECKING:
    from config.settings import Settings

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
