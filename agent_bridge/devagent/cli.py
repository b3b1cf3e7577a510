"""``python -m agent_bridge.devagent``: run the double as its own process."""

from __future__ import annotations

import argparse
import logging
import os
import re

from agent_bridge.devagent.server import KEEP_ALIVE_TIMEOUT_S, DevAgentServer
from project.shutdown import stop_on_signals

#: The line printed by the CLI once both ports listen; e2e tests parse it to
#: learn the ports when they start the double with ``--port 0``.
LISTENING_LINE_RE = re.compile(
    r"devagent listening on (?P<base_url>http://\S+) \(control (?P<control_url>http://\S+)\)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent_bridge.devagent",
        description="In-memory stand-in for the Kairos Agent (development/tests only).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4021, help="main port; 0 picks a free one")
    parser.add_argument(
        "--control-port",
        type=int,
        default=4022,
        help="control port; 0 picks a free one",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("AGENT_SERVICE_TOKEN", ""),
        help="expected X-Service-Token (default: $AGENT_SERVICE_TOKEN; empty accepts any value)",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        default=KEEP_ALIVE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"close a kept-alive connection idle this long (default {KEEP_ALIVE_TIMEOUT_S:g})",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s devagent %(levelname)s %(message)s",
    )

    stop = stop_on_signals()

    server = DevAgentServer(args.host, args.port, args.control_port, args.token, keep_alive_s=args.keep_alive)
    server.start()
    print(
        f"devagent listening on {server.base_url} (control {server.control_url})",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
