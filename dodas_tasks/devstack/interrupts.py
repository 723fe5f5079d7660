"""SIGTERM, SIGINT and SIGHUP end a program through its `finally` blocks and context managers.

By default SIGTERM and SIGHUP end Python at once, so a benchmark killed by its time limit (`timeout` sends SIGTERM)
or a closed terminal left its whole Airflow stack running (issue 16). Inside `exit_on_signals()` each of them raises
SystemExit(128 + signal number) in the main thread instead: the code that started a stack stops it on its way out.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@contextmanager
def exit_on_signals(signals: tuple[signal.Signals, ...] = SIGNALS) -> Iterator[None]:
    """Turn the first of `signals` into SystemExit; later ones are ignored until the block is left, so the cleanup
    runs to its end (a process that will not stop still yields to SIGKILL). Main thread only."""

    def ignore(signum: int, frame: FrameType | None) -> None:
        # A Python handler, not SIG_IGN: programs the cleanup starts must not inherit an ignored SIGTERM.
        return None

    def leave(signum: int, frame: FrameType | None) -> None:
        for sig in signals:
            signal.signal(sig, ignore)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
