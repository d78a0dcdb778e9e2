"""Entry point: `python -m producer.main` (see producer/cli.py)."""

from __future__ import annotations

import sys

from producer.cli import cli

if __name__ == "__main__":
    sys.exit(cli())
