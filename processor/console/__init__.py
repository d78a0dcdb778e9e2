"""The alert console: a small web app for analysts over the alerts table and the lake.

    python -m processor.console --profile local      (or the console script fraud-console)

Queue of alerts (filters, newest first), each alert's card history from the Delta lake
(delta-rs, no Spark), and verdict buttons that record the verdict on the alert and send it
to the stream as a label event (docs/decisions/0011-analyst-verdicts.md).
"""

from processor.console.app import ConsoleConfig, create_app
from processor.console.screenshot import save_queue_screenshot
from processor.console.verdicts import record_verdict

__all__ = ["ConsoleConfig", "create_app", "record_verdict", "save_queue_screenshot"]
