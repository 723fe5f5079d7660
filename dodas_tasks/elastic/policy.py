"""The autoscaling policy: pure functions from (state, observation, settings) to a decision and the next state.

No I/O and no clock: the caller passes `now`, so the policy is unit-tested without Airflow, clouds or Spark.
Rules: scale out when demand stays unmet for backlog_window, by as many nodes as the demand needs (counting nodes
already on their way), capped by max_count and max_booting; scale in only nodes idle for idle_time, never a busy
one, never below min_count; nothing during a cooldown after an action or while the deployment's own run is
active; a scale-out whose nodes end ERROR backs off exponentially before it is retried (or dropped when the
demand is gone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dodas_tasks.elastic.settings import ElasticSettings

NONE, SCALE_OUT, SCALE_IN, BACKOFF, RETRY, DROP_FAILED, STOP = (
    "none",
    "scale_out",
    "scale_in",
    "backoff",
    "retry",
    "drop_failed",
    "stop",
)
RUN_ACTIONS = frozenset({SCALE_OUT, SCALE_IN, RETRY, DROP_FAILED})  # these need a deployment DAG run
ERROR_STATE = "ERROR"


@dataclass(frozen=True)
class NodeView:
    """One live node of the elastic group as the policy needs it."""

    id: str
    name: str
    index: int
    state: str
    ever_healthy: bool = True  # False for a node that never served (a failed scale-out)
    reason: str = ""


@dataclass(frozen=True)
class Observation:
    """Everything one poll saw. `healthy/idle/busy` are node names from the framework; None = load unreadable."""

    now: float
    desired: int
    min_count: int
    max_count: int
    cores_per_node: int
    nodes: tuple[NodeView, ...]
    run_active: bool = False
    pending_demand: int | None = 0
    waiting_apps: int = 0
    healthy: frozenset[str] = frozenset()
    idle: frozenset[str] = frozenset()
    busy: frozenset[str] = frozenset()
    load_error: str = ""


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between polls (JSON-able: kept in the trigger and in the store)."""

    backlog_since: float | None = None
    idle_since: dict[str, float] = field(default_factory=dict)
    last_action_at: float | None = None
    failures: int = 0
    retry_after: float | None = None
    counted_failed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counted_failed"] = list(self.counted_failed)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PolicyState:
        data = dict(data or {})
        return cls(
            backlog_since=data.get("backlog_since"),
            idle_since={str(k): float(v) for k, v in (data.get("idle_since") or {}).items()},
            last_action_at=data.get("last_action_at"),
            failures=int(data.get("failures") or 0),
            retry_after=data.get("retry_after"),
            counted_failed=tuple(data.get("counted_failed") or ()),
        )


@dataclass(frozen=True)
class Decision:
    """What to do: a new desired count, nodes to drain and remove (ids), and the reason people will read."""

    action: str
    reason: str
    count: int | None = None
    remove: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()

    @property
    def needs_run(self) -> bool:
        return self.action in RUN_ACTIONS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "remove": list(self.remove), "drain": list(self.drain)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(
            action=data["action"],
            reason=data.get("reason", ""),
            count=data.get("count"),
            remove=tuple(data.get("remove") or ()),
            drain=tuple(data.get("drain") or ()),
        )


def backoff_delay(failures: int, settings: ElasticSettings) -> float:
    """Wait after the n-th failure in a row: backoff, 2×, 4×, … capped at backoff_max."""
    return min(settings.backoff * 2 ** max(failures - 1, 0), settings.backoff_max)


def nodes_needed(demand: int, cores_per_node: int) -> int:
    return math.ceil(demand / max(cores_per_node, 1)) if demand > 0 else 0


def decide(state: PolicyState, obs: Observation, settings: ElasticSettings) -> tuple[Decision, PolicyState]:
    """One poll: the decision (NONE most of the time) and the state to remember."""
    state = _track_timers(state, obs)
    if obs.run_active:
        return Decision(NONE, "the deployment's own run is active; deciding after it"), state
    failed = [n for n in obs.nodes if n.state == ERROR_STATE and not n.ever_healthy]
    if failed:
        return _after_failure(state, obs, settings, failed)
    if obs.pending_demand is None:
        return Decision(NONE, f"load unreadable: {obs.load_error}"), state
    if state.failures and _booting(obs) == 0:  # the group serves fully again: failures are forgotten
        state = replace(state, failures=0, retry_after=None, counted_failed=())
    cooling = state.last_action_at is not None and obs.now - state.last_action_at < settings.cooldown
    out = _scale_out(state, obs, settings, cooling)
    if out is not None:
        return out
    return _scale_in(state, obs, settings, cooling)


def _booting(obs: Observation) -> int:
    """Nodes asked for and not serving yet (creating, configuring, failed and awaiting retry)."""
    serving = len(obs.healthy & {n.name for n in obs.nodes})
    return max(obs.desired - serving, 0)


def _track_timers(state: PolicyState, obs: Observation) -> PolicyState:
    if obs.pending_demand is None:  # cannot tell: forget idleness (never remove on stale knowledge)
        return replace(state, idle_since={})
    names = {n.name for n in obs.nodes}
    idle = {name: state.idle_since.get(name, obs.now) for name in sorted(obs.idle & obs.healthy & names)}
    needed = nodes_needed(obs.pending_demand, obs.cores_per_node)
    unmet = obs.pending_demand > 0 and needed > _booting(obs)
    backlog = (state.backlog_since if state.backlog_since is not None else obs.now) if unmet else None
    return replace(state, idle_since=idle, backlog_since=backlog)


def _after_failure(
    state: PolicyState, obs: Observation, settings: ElasticSettings, failed: list[NodeView]
) -> tuple[Decision, PolicyState]:
    ids = tuple(sorted(n.id for n in failed))
    names = ", ".join(n.name for n in failed)
    why = next((n.reason for n in failed if n.reason), "no reason recorded")
    if not set(ids) <= set(state.counted_failed):  # a new failure: count it, wait before trying again
        failures = state.failures + 1
        delay = backoff_delay(failures, settings)
        state = replace(state, failures=failures, retry_after=obs.now + delay, counted_failed=ids)
        reason = (
            f"scale-out failed {failures} time(s) in a row: {names} did not come up ({why}); "
            f"next attempt in {delay:g} s"
        )
        return Decision(BACKOFF, reason), state
    if obs.pending_demand == 0:
        count = max(obs.desired - len(failed), obs.min_count)
        reason = f"giving up {names} (failed: {why}): no demand is waiting any more"
        return Decision(DROP_FAILED, reason, count=count, remove=ids), replace(state, last_action_at=obs.now)
    if state.retry_after is not None and obs.now < state.retry_after:
        return Decision(NONE, f"backing off after {state.failures} failed scale-out(s)"), state
    if state.last_action_at is not None and obs.now - state.last_action_at < settings.cooldown:
        return Decision(NONE, "cooldown after the last action"), state
    reason = f"retrying the failed scale-out ({names}) after {state.failures} failure(s)"
    return Decision(RETRY, reason), replace(state, last_action_at=obs.now)


def _scale_out(
    state: PolicyState, obs: Observation, settings: ElasticSettings, cooling: bool
) -> tuple[Decision, PolicyState] | None:
    if state.backlog_since is None or obs.now - state.backlog_since < settings.backlog_window:
        return None
    if cooling:
        return Decision(NONE, "demand unmet, but in cooldown after the last action"), state
    if state.retry_after is not None and obs.now < state.retry_after:
        return Decision(NONE, f"demand unmet, but backing off after {state.failures} failed scale-out(s)"), state
    booting = _booting(obs)
    wanted = nodes_needed(obs.pending_demand or 0, obs.cores_per_node) - booting
    add = min(wanted, obs.max_count - obs.desired, settings.max_booting - booting)
    if add <= 0:
        limit = "max_count" if obs.desired >= obs.max_count else "max_booting"
        return Decision(NONE, f"demand unmet, but {limit} is reached"), state
    caps = [] if add == wanted else [f"capped by max_count {obs.max_count} / max_booting {settings.max_booting}"]
    reason = (
        f"{obs.pending_demand} core(s) wanted and not granted ({obs.waiting_apps} app(s) waiting) for "
        f"{obs.now - state.backlog_since:.0f} s; {obs.cores_per_node} core(s) per node, {booting} node(s) already "
        f"coming: adding {add}" + (f" ({caps[0]})" if caps else "")
    )
    new_state = replace(state, backlog_since=None, last_action_at=obs.now)
    return Decision(SCALE_OUT, reason, count=obs.desired + add), new_state


def _scale_in(
    state: PolicyState, obs: Observation, settings: ElasticSettings, cooling: bool
) -> tuple[Decision, PolicyState]:
    if (obs.pending_demand or 0) > 0 or cooling or _booting(obs) > 0:
        return Decision(NONE, "steady"), state
    spare = obs.desired - obs.min_count
    ready = sorted(
        (
            n
            for n in obs.nodes
            if n.name in state.idle_since and obs.now - state.idle_since[n.name] >= settings.idle_time
        ),
        key=lambda n: -n.index,
    )
    victims = [n for n in ready if n.name not in obs.busy][: max(spare, 0)]
    if not victims:
        return Decision(NONE, "steady"), state
    reason = (
        f"{', '.join(n.name for n in victims)} idle for at least {settings.idle_time:g} s; "
        f"{obs.desired} → {obs.desired - len(victims)} node(s) (min {obs.min_count})"
    )
    idle = {k: v for k, v in state.idle_since.items() if k not in {n.name for n in victims}}
    decision = Decision(
        SCALE_IN,
        reason,
        count=obs.desired - len(victims),
        remove=tuple(n.id for n in victims),
        drain=tuple(n.name for n in victims),
    )
    return decision, replace(state, idle_since=idle, last_action_at=obs.now)
