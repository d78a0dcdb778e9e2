"""A PNG of the alert queue, for the demo's report: headless Chromium through Playwright.

Playwright is a development dependency; Debian's `chromium` package is used when it is there
(Playwright cannot download its own browsers on every machine), else Playwright's own.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from config.exceptions import FraudPipelineError

CHROMIUM_ENV: Final = "FRAUD_CHROMIUM"
VIEWPORT: Final = {"width": 1400, "height": 900}


def chromium_path() -> str | None:
    """$FRAUD_CHROMIUM, else a system chromium on PATH, else None (Playwright's own)."""
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def save_queue_screenshot(url: str, path: Path, timeout_s: float = 30.0) -> Path:
    """Open the queue at `url` (a `?token=...` link works) and save a full-page PNG at `path`.

    Call it from plain synchronous code: Playwright's sync API refuses to run inside an asyncio
    loop or another `sync_playwright()` block.
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise FraudPipelineError(
            "the queue screenshot needs Playwright: pip install -e '.[dev]'"
        ) from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = url.split("?", 1)[0]  # error messages never quote a ?token=
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), headless=True)
            try:
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                response = page.goto(url, wait_until="load", timeout=timeout_s * 1000)
                if response is None or not response.ok:
                    status = "no response" if response is None else f"HTTP {response.status}"
                    raise FraudPipelineError(f"the console at {shown} answered {status}")
                page.screenshot(path=str(path), full_page=True)
            finally:
                browser.close()
    except PlaywrightError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FraudPipelineError(f"queue screenshot of {shown} failed: {first}") from exc
    return path
