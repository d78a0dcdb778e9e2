"""Run and training reports: one self-contained HTML page of figures and the model card.

`write_report(folder, data)` writes `<folder>/index.html`. The data comes from
`training_report_data` (a training run: its test split) or, for a pipeline run,
`ml_model.report.run_data.run_report_data` (lake, alerts table, the job's batch records; kept
out of this namespace so that training does not import the processor's modules).
"""

from ml_model.report.data import (
    Evaluation,
    ReportData,
    RunData,
    evaluation_of,
    training_report_data,
)
from ml_model.report.html import CONSOLE_SCREENSHOT, INDEX, render_html, write_report
from ml_model.report.sections import (
    CONSOLE_ID,
    DRIFT_ID,
    EVALUATION_IDS,
    RUN_IDS,
    Section,
    all_sections,
)

__all__ = [
    "CONSOLE_ID",
    "CONSOLE_SCREENSHOT",
    "DRIFT_ID",
    "EVALUATION_IDS",
    "INDEX",
    "RUN_IDS",
    "Evaluation",
    "ReportData",
    "RunData",
    "Section",
    "all_sections",
    "evaluation_of",
    "render_html",
    "training_report_data",
    "write_report",
]
