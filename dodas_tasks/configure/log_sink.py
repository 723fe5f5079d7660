"""A log callback that can never fail the work it reports on.

A task's log stream is not part of the nodes it configures: when it breaks (BrokenPipeError once an Airflow task's
supervisor is gone), the scripts keep running and their results stay true. The first failure stops the logging and
is kept, so the caller can say what really broke instead of blaming a node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

LogFn = Callable[[str], None]


class SafeLog:
    """Passes lines to `sink` until the sink raises; from then on drops them and keeps the first error in `lost`."""

    def __init__(self, sink: LogFn) -> None:
        self._sink = sink
        self._lock = threading.Lock()  # lines of parallel node sessions reach the sink one at a time
        self.lost: Exception | None = None

    def __call__(self, line: str) -> None:
        with self._lock:
            if self.lost is not None:
                return
            try:
                self._sink(line)
            except Exception as error:  # the sink's own failure, whatever it is, is not the caller's
                self.lost = error

    def describe_loss(self) -> str | None:
        """Why logging stopped ("the log stream failed: BrokenPipeError: …"), or None while it works."""
        if self.lost is None:
            return None
        text = str(self.lost).strip()
        reason = f"{type(self.lost).__name__}: {text}" if text else type(self.lost).__name__
        return f"the log stream failed ({reason}); later lines were dropped"


def safe_log(sink: LogFn) -> SafeLog:
    """`sink` guarded by a SafeLog (itself when it already is one, so the first loss is seen by every caller)."""
    return sink if isinstance(sink, SafeLog) else SafeLog(sink)
