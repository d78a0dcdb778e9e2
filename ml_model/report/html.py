"""The report page: one self-contained HTML file (figures as base64 PNG, styles inline).

`write_report(folder, data)` writes `<folder>/index.html`; a `console.png` already in the folder
(the alert console's queue, saved by the demo) gets its own section. Nothing on the page loads
from anywhere else, so the file can be mailed, archived or opened offline.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, StrictUndefined

from ml_model.report.sections import all_sections
from ml_model.report.tables import card_rows, metric_rows, run_rows

if TYPE_CHECKING:
    from ml_model.report.data import ReportData

logger = logging.getLogger(__name__)

INDEX = "index.html"
CONSOLE_SCREENSHOT = "console.png"

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
         max-width: 1000px; padding: 1.5rem; color: #1d2330; line-height: 1.45; }
  h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
  h2 { font-size: 1.25rem; border-bottom: 1px solid #d8dce3; padding-bottom: 0.2rem;
       margin-top: 2.2rem; }
  .meta { color: #5b6475; margin-top: 0; }
  nav ul { columns: 2; padding-left: 1.2rem; }
  table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.92rem; }
  th, td { border: 1px solid #d8dce3; padding: 0.3rem 0.6rem; text-align: left;
           vertical-align: top; }
  th { background: #f2f4f7; white-space: nowrap; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  figure { margin: 1rem 0 1.8rem; }
  figure img { max-width: 100%; height: auto; border: 1px solid #e3e6eb; }
  figcaption { color: #5b6475; font-size: 0.9rem; }
  .note { background: #f7f7f2; border-left: 4px solid #c9b458; padding: 0.5rem 0.8rem; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ kind_label }} &middot; written {{ created_at }} &middot; model {{ version }}</p>
<nav><ul>
  <li><a href="#model-card">Model card</a></li>
  {% if run_summary %}<li><a href="#run-summary">Run summary</a></li>{% endif %}
  {% for section in sections %}<li><a href="#{{ section.id }}">{{ section.title }}</a></li>
  {% endfor %}
</ul></nav>

{% if run_summary %}
<h2 id="run-summary">Run summary</h2>
<table>
  {% for name, value in run_summary %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
  {% endfor %}
</table>
{% endif %}

{% if evaluation_source %}
<h2 id="evaluation">Evaluation</h2>
<p>Measured on {{ evaluation_source }}.</p>
{% if run_metrics %}
<table id="run-metrics">
  <tr><th>metric</th><th>model</th><th>amount-only baseline</th></tr>
  {% for name, model, baseline in run_metrics %}
  <tr><td>{{ name }}</td><td class="num">{{ model }}</td><td class="num">{{ baseline }}</td></tr>
  {% endfor %}
</table>
{% endif %}
{% endif %}

{% for section in sections %}
<section id="{{ section.id }}">
  <h2>{{ section.title }}</h2>
  {% if section.png %}
  <figure>
    <img src="{{ section.data_uri }}" alt="{{ section.alt }}">
    <figcaption>{{ section.caption }}</figcaption>
  </figure>
  {% else %}
  <p class="note">{{ section.note }}</p>
  {% endif %}
</section>
{% endfor %}

<h2 id="model-card">Model card</h2>
<table id="model-card-table">
  {% for name, value in card %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>
  {% endfor %}
</table>
<h3>Metrics recorded in the card (test split)</h3>
<table id="card-metrics">
  <tr><th>metric</th><th>model</th><th>amount-only baseline</th></tr>
  {% for name, model, baseline in card_metrics %}
  <tr><td>{{ name }}</td><td class="num">{{ model }}</td><td class="num">{{ baseline }}</td></tr>
  {% endfor %}
</table>
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)


def render_html(data: ReportData, console_png: bytes | None = None) -> str:
    """The page of `data` (plus the console screenshot, when given) as one HTML string."""
    evaluation = data.evaluation
    # A training report's evaluation is the test split the card's metrics come from: no second
    # table of the same numbers.
    run_metrics = (
        metric_rows(evaluation.metrics, evaluation.baseline_metrics)
        if evaluation is not None and data.kind == "run"
        else []
    )
    return _ENVIRONMENT.from_string(TEMPLATE).render(
        title=data.title,
        kind_label="Pipeline run" if data.kind == "run" else "Training run",
        created_at=data.created_at,
        version=data.card.version,
        sections=all_sections(data, console_png),
        run_summary=run_rows(data.run) if data.run is not None else [],
        evaluation_source=evaluation.source if evaluation is not None else "",
        run_metrics=run_metrics,
        card=card_rows(data.card),
        card_metrics=metric_rows(data.card.metrics, data.card.baseline_metrics),
    )


def write_report(folder: str | Path, data: ReportData) -> Path:
    """Write `<folder>/index.html` (folder created) and return its path.

    A `console.png` in the folder is embedded as the console section.
    """
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    screenshot = target / CONSOLE_SCREENSHOT
    console = screenshot.read_bytes() if screenshot.is_file() else None
    index = target / INDEX
    tmp = target / f".{INDEX}.tmp"
    tmp.write_text(render_html(data, console), encoding="utf-8")
    tmp.replace(index)
    logger.info("report written to %s", index)
    return index
