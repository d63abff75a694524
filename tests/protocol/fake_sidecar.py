"""A sidecar with the fake method table: ``python -m tests.protocol.fake_sidecar``.

Flags: ``--max-message-bytes N``, ``--close-sleep SECONDS`` (a slow close, to catch it with
a second signal), ``--ready`` (send a ``ready`` notification first).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sync_queue.server import StdioServer

from .rpc_fakes import FakeDispatcher


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-message-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--close-sleep", type=float, default=0.0)
    parser.add_argument("--ready", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    dispatcher = FakeDispatcher()
    dispatcher.close_sleep = args.close_sleep
    dispatcher.ready_params = {"protocol": 1} if args.ready else None
    server = StdioServer(dispatcher, max_message_bytes=args.max_message_bytes)
    status = server.run()
    print(f"fake sidecar exiting with status {status}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
