"""``python -m sync_queue`` and the ``sync-queue-sidecar`` console script (see ``cli``)."""

from __future__ import annotations

import sys


def main() -> int:
    from .cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
