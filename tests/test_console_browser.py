"""The alert console in real headless Chromium (Playwright, sync API), end to end.

A small stream is scored by one in-process processor batch (alerts to moto's DynamoDB, the
lake in Delta); the console serves them with a token. In the browser: log in through the
`?token=` link, filter the queue, open an alert (its card's history from the lake), press
"Confirmed fraud". The next processor batch puts the verdict in the labels table, once, even
though its label was sent twice. The demo's queue screenshot is taken here too.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from config.aws import make_client
from config.settings import Settings
from processor.alerts import scan_alerts
from processor.console import ConsoleConfig, create_app, save_queue_screenshot
from processor.console.alerts_view import PAGE_SIZE, get_alert
from processor.console.verdicts import send_label
from scripts.setup_aws import ensure_alerts_table
from tests.test_console import TOKEN, serve
from tests.test_processor_job import produce, run_available_now

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium); Playwright cannot download "
        "its own browser here",
    ),
]


def test_queue_filter_alert_and_verdict_in_chromium(
    spark: Any, settings: Settings, trained_model: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    # The card's threshold (top 1% of training traffic) raises few alerts on a short stream;
    # a lower one (the profile's model.threshold) gives the queue something to filter.
    settings = settings.with_overrides(model={"path": str(trained_model), "threshold": 0.5})
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    produce(settings, 800, seed=23, fraud_rate=0.05, num_customers=120, anomaly_rate=0.0)
    run_available_now(spark, settings, alerts=True)
    alerts = scan_alerts(settings)
    assert len(alerts) >= 2, "the seed stream should raise a few alerts"
    scores = sorted(float(a["fraud_score"]["N"]) for a in alerts)
    cutoff = math.floor(scores[len(scores) // 2] * 100) / 100  # the form's step is 0.01
    passing = {a["transaction_id"]["S"] for a in alerts if float(a["fraud_score"]["N"]) >= cutoff}

    app = create_app(settings, ConsoleConfig(token=TOKEN))
    with serve(app) as base:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            try:
                page = browser.new_page()
                page.goto(f"{base}/?token={TOKEN}")
                assert page.url == f"{base}/"  # the token left the address bar for a cookie
                rows = page.locator("#alerts tbody tr")
                expect(rows).to_have_count(min(len(alerts), PAGE_SIZE))

                page.fill("input[name=min_score]", f"{cutoff:.2f}")
                page.click("button[type=submit]")
                expect(page).to_have_url(re.compile(rf"min_score={cutoff:g}"))
                expect(rows).to_have_count(min(len(passing), PAGE_SIZE))
                ids = [rows.nth(i).get_attribute("data-transaction") for i in range(rows.count())]
                assert set(ids) <= passing and (len(passing) > PAGE_SIZE or set(ids) == passing)
                times = [rows.nth(i).locator("td").first.inner_text() for i in range(len(ids))]
                assert times == sorted(times, reverse=True)  # newest first

                chosen = ids[0]
                assert chosen is not None
                rows.first.locator("a").click()
                expect(page).to_have_url(f"{base}/alerts/{chosen}")
                history = page.locator("#transactions tbody tr")
                expect(history.first).to_be_visible()
                expect(page.locator("#transactions tr.current")).to_contain_text(chosen)
                page.fill("input[name=analyst]", "pw-analyst")
                page.click("button.fraud")
                expect(page.locator("#flash")).to_contain_text("Verdict recorded")
                expect(page.locator("#verdict")).to_contain_text("confirmed fraud")
                expect(page.locator("#verdict")).to_contain_text("by pw-analyst")
            finally:
                browser.close()

        png = save_queue_screenshot(f"{base}/?token={TOKEN}", tmp_path / "shots" / "queue.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000

    item = get_alert(settings, chosen)
    assert item is not None and item["verdict"] == "confirmed_fraud"
    assert item["verdict_by"] == "pw-analyst" and item["verdict_sent_at"]
    # The label once more, as after a lost acknowledgement: the same bytes, a dropped duplicate.
    send_label(settings, item, None)
    writer = run_available_now(spark, settings, alerts=True)
    assert writer.stats.duplicates == 1

    labels = DeltaTable(f"{settings.processor.lake_path}/labels").to_pyarrow_table().to_pylist()
    verdicts = [row for row in labels if row["chargeback_id"] == f"verdict-{chosen}"]
    assert len(verdicts) == 1
    (label,) = verdicts
    assert label["confirmed_fraud"] is True and label["transaction_id"] == chosen
    assert (label["card_token"], label["card_last4"]) == (item["card_token"], item["card_last4"])
    assert label["terminal_id"] == item["terminal_id"] and label["label_is_fraud"] is None
