"""Retry a short transaction when another writer got there first (optimistic versioning, SQLite lock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

DEFAULT_ATTEMPTS = 30
T = TypeVar("T")


class ConcurrentUpdateError(RuntimeError):
    """Gave up after repeated conflicts with other writers."""


def is_transient(error: BaseException) -> bool:
    """True for conflicts worth retrying: a stale version, or SQLite saying another writer holds the lock."""
    if isinstance(error, StaleDataError):
        return True
    if isinstance(error, OperationalError):
        text = str(error.orig).lower()
        return "database is locked" in text or "database is busy" in text or "deadlock detected" in text
    return False


def retry_on_conflict(work: Callable[[], T], *, what: str, attempts: int = DEFAULT_ATTEMPTS) -> T:
    """Run work (which must open and close its own transaction) again after a transient conflict."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),  # anything else is raised at once
        stop=stop_after_attempt(attempts),
        # jittered, uniform in [0, min(0.2, 0.005·2^attempt)] s: colliding writers do not collide again in lockstep
        wait=wait_random_exponential(multiplier=0.01, max=0.2),
    )
    try:
        return retrying(work)
    except RetryError as gave_up:
        raise ConcurrentUpdateError(
            f"{what}: still conflicting with other writers after {attempts} attempts; "
            "retry later or lower the number of concurrent workers"
        ) from gave_up.last_attempt.exception()
