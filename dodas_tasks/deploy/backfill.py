"""How far backfill goes: VMs that failed to boot are replaced within a per-run budget and deadline.

INDIGO's orchestrator bounds a creation by `maxProvidersRetry` (clouds tried) and `providerTimeoutMins` (time a
cloud gets); inside one cloud, DODAS on Airflow bounds the replacements of failed boots the same way: at most
`max_boot_failures` failed boots per run across the deployment's groups (default twice the VMs it asks for, at
least 3), and none started after the run's `provider_timeout_mins` (default 15) have passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from dodas_tasks.store import DeploymentRecord, Store

BOOT_FAILED_EVENT = "boot_failed"  # one event per VM that failed to be created or to boot: "<vm name>: <reason>"
BACKFILL_EVENT = "backfill"  # one event per round of replacements of a group
DEFAULT_PROVIDER_TIMEOUT = timedelta(minutes=15)
MIN_BOOT_FAILURES = 3
BOOT_FAILURES_PER_VM = 2


@dataclass(frozen=True)
class BackfillBudget:
    """The failed boots one run may replace, and the moment after which it replaces none and waits no more."""

    max_failures: int
    deadline: datetime
    since_event: int  # the run's first event: failures after it are this run's

    def failures(self, store: Store, deployment_id: str) -> int:
        """Failed boots recorded in this run so far, every group of the deployment counted."""
        events = store.list_events(deployment_id, limit=100_000, after_id=self.since_event)
        return sum(1 for e in events if e.kind == BOOT_FAILED_EVENT)

    def refusal(self, failures: int, now: datetime) -> str | None:
        """Why no more replacement may start (the budget or the deadline is spent), or None."""
        if failures > self.max_failures:
            return (
                f"{failures} failed boot(s) in this run, more than its budget of {self.max_failures} "
                "(submit option max_boot_failures)"
            )
        if now >= self.deadline:
            return f"the run's time to boot its VMs ended at {self.deadline:%H:%M:%S} UTC (providerTimeoutMins)"
        return None


def backfill_budget(dep: DeploymentRecord, run_started: datetime, since_event: int) -> BackfillBudget:
    """The budget of a run of `dep` that started at `run_started`, from its submit options or the defaults."""
    vms = sum(max(0, int(count)) for count in dep.desired_counts.values())
    given = dep.options.get("max_boot_failures")
    max_failures = int(given) if given is not None else max(MIN_BOOT_FAILURES, BOOT_FAILURES_PER_VM * vms)
    minutes = dep.options.get("provider_timeout_mins")
    timeout = timedelta(minutes=float(minutes)) if minutes else DEFAULT_PROVIDER_TIMEOUT
    return BackfillBudget(max_failures, run_started + timeout, since_event)


def check_max_boot_failures(value: object) -> str | None:
    """What is wrong with a submitted max_boot_failures (a whole number ≥ 0), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
        return f"max_boot_failures={value!r}: use a whole number of failed boots, 0 or more"
    if int(value) != value:
        return f"max_boot_failures={value!r}: use a whole number of failed boots, 0 or more"
    return None
