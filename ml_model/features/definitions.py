"""Feature names, windows and retention: the constants both the stream and training use.

Windows are half-open on the past side: an earlier event counts in window W of an event at t
when t - W < its time <= t (and it sorts before the event, see events.event_key). Terminal risk
uses the Fraud Detection Handbook's delayed windows, in whole hours: transactions in the W
hours before the hour that holds t - D, where D is the label delay, and of those only the ones
confirmed as fraud by a chargeback that had already arrived at t (terminal.risk_window_hours).
"""

from __future__ import annotations

from typing import Final

from ml_model.features.registry import names_of

SECOND: Final = 1_000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

CARD_WINDOWS: Final = {"10m": 10 * MINUTE, "1h": HOUR, "24h": DAY, "7d": 7 * DAY}
CARD_MEAN_WINDOW: Final = 30 * DAY
FAILED_LOGIN_WINDOW: Final = HOUR
TERMINAL_WINDOWS: Final = {"1h": HOUR, "24h": DAY}
TERMINAL_RISK_WINDOWS: Final = {"1d": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
LABEL_DELAY: Final = 7 * DAY
# How long an idle entity's state outlives its longest window before the stream evicts it
# (an event after that starts the entity afresh, as training does).
RETENTION_SLACK: Final = DAY
# How far behind an entity's newest event a late event may be and still get exactly the
# features it would have had on time: the state keeps this much more than its windows need.
LATE_EVENT_SLACK: Final = 7 * DAY
# The longest event time any feature reads back: terminal risk's widest window behind the
# label delay (37 days).
LONGEST_LOOKBACK: Final = LABEL_DELAY + max(TERMINAL_RISK_WINDOWS.values())
CARD_RETENTION: Final = CARD_MEAN_WINDOW + RETENTION_SLACK
TERMINAL_RETENTION: Final = LONGEST_LOOKBACK + RETENTION_SLACK
# Fastest plausible travel (an airliner); the time gap is floored so that two swipes a few
# seconds apart in the same city do not look like impossible travel.
MIN_TRAVEL_GAP: Final = MINUTE

# The names come from the registry (registry.py), in the model's order.
EVENT_FEATURES: Final = names_of("transaction")
CARD_FEATURES: Final = names_of("card")
TERMINAL_FEATURES: Final = names_of("terminal")
# The card entity computes the event's own features too; the order here is the model's order.
CARD_PART: Final = (*EVENT_FEATURES, *CARD_FEATURES)
FEATURE_NAMES: Final = (*CARD_PART, *TERMINAL_FEATURES)

CARD: Final = "card"
TERMINAL: Final = "terminal"
# Which entities' state an event updates; a transaction gets features from both.
ENTITIES_OF: Final = {
    "transaction": (CARD, TERMINAL),
    "auth": (CARD,),
    "chargeback": (TERMINAL,),
}
