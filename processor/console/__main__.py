"""`python -m processor.console`: the alert console's server."""

import sys

from processor.console.cli import cli

if __name__ == "__main__":
    sys.exit(cli())
