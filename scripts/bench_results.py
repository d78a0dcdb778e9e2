"""Where the benchmarks leave their figures: a JSON file (under bench-results/ unless told
otherwise), printed as well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path("bench-results")


def save_results(results: dict[str, Any], path: Path) -> None:
    """Write `results` to `path` (its folder made if missing) and print them."""
    text = json.dumps(results, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(text)
