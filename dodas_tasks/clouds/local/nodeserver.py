"""Entry point of a local-cloud server process: detach first (cheap), then run the SSH service (node.py).

Started by the driver as `python -m dodas_tasks.clouds.local.nodeserver --server-dir DIR --listen-fd N`;
it forks at once, prints the daemon's pid and the first process exits, so the server is nobody's child
and outlives whoever created it. Heavy imports (asyncio, asyncssh) happen after the fork, so the
driver's create_server returns quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dodas_tasks.clouds.local.nodeserver")
    parser.add_argument("--server-dir", required=True, type=Path, help="the server's directory")
    parser.add_argument("--listen-fd", required=True, type=int, help="inherited socket bound to ip:port")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="seconds before the SSH server listens")
    parser.add_argument("--fail-boot", action="store_true", help="simulate a failed boot (tests)")
    parser.add_argument("--drop-sessions", type=int, default=0, help="drop the first N sessions' connections (tests)")
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    return parser.parse_args(argv)


def detach() -> None:
    """Fork; the parent prints the child's pid and exits, so the node server is nobody's child."""
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        os._exit(0)
    os.dup2(2, 1)  # stdout was the pid pipe; send it to the log like stderr


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.foreground:
        detach()
    from dodas_tasks.clouds.local.layout import ServerDir  # after the fork: keeps the launch fast
    from dodas_tasks.clouds.local.node import run

    return run(
        ServerDir(args.server_dir.resolve()), args.listen_fd, args.boot_delay, args.fail_boot, args.drop_sessions
    )


if __name__ == "__main__":
    sys.exit(main())
