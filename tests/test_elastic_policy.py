"""The autoscaling policy and the settings, as pure functions: no Airflow, no cloud, no Spark."""

from __future__ import annotations

import pytest

from dodas_tasks.elastic.policy import (
    BACKOFF,
    DROP_FAILED,
    NONE,
    RETRY,
    SCALE_IN,
    SCALE_OUT,
    NodeView,
    Observation,
    PolicyState,
    backoff_delay,
    decide,
)
from dodas_tasks.elastic.settings import ElasticSettings, SettingError, resolve

S = ElasticSettings(poll_interval=1, backlog_window=5, idle_time=20, cooldown=10, max_booting=3, backoff=30)


def nodes(count: int, **overrides: object) -> tuple[NodeView, ...]:
    return tuple(NodeView(id=f"id{i}", name=f"w{i}", index=i, state="STARTED", **overrides) for i in range(count))


def obs(now: float, n: int = 1, *, demand: int = 0, desired: int | None = None, idle=(), busy=(), **kw) -> Observation:
    group = kw.pop("nodes", None) or nodes(n)
    healthy = kw.pop("healthy", {v.name for v in group if v.state == "STARTED"})
    return Observation(
        now=now,
        desired=n if desired is None else desired,
        min_count=kw.pop("min_count", 1),
        max_count=kw.pop("max_count", 6),
        cores_per_node=kw.pop("cores", 1),
        nodes=group,
        pending_demand=demand,
        waiting_apps=1 if demand else 0,
        healthy=frozenset(healthy),
        idle=frozenset(idle),
        busy=frozenset(busy),
        **kw,
    )


def run(state: PolicyState, *observations: Observation, settings: ElasticSettings = S):
    decisions = []
    for o in observations:
        decision, state = decide(state, o, settings)
        decisions.append(decision)
    return decisions, state


def test_scale_out_waits_for_the_backlog_window_then_adds_what_the_demand_needs() -> None:
    (first, early, due), state = run(
        PolicyState(), obs(0, demand=5, cores=2), obs(4, demand=5, cores=2), obs(5, demand=5, cores=2)
    )
    assert first.action == early.action == NONE
    assert due.action == SCALE_OUT and due.count == 1 + 3  # ceil(5 cores / 2 per node) = 3 nodes
    assert "5 core(s) wanted" in due.reason and state.last_action_at == 5


def test_demand_that_goes_away_resets_the_backlog() -> None:
    decisions, state = run(PolicyState(), obs(0, demand=2), obs(3), obs(4, demand=2), obs(8, demand=2))
    assert [d.action for d in decisions] == [NONE] * 4 and state.backlog_since == 4


def test_scale_out_is_capped_by_max_count_and_max_booting_and_counts_nodes_on_the_way() -> None:
    (capped,), _ = run(PolicyState(backlog_since=0), obs(10, demand=10, max_count=4))
    assert capped.action == SCALE_OUT and capped.count == 4 and "capped" in capped.reason
    (booting,), _ = run(PolicyState(backlog_since=0), obs(10, 1, demand=10, desired=3, max_count=20))
    assert booting.count == 3 + 1  # 2 nodes already coming, max_booting 3 allows one more
    (covered,), state = run(PolicyState(), obs(10, 1, demand=2, desired=3))
    assert covered.action == NONE and state.backlog_since is None  # the 2 coming nodes cover the demand
    (full,), _ = run(PolicyState(backlog_since=0), obs(10, 6, demand=3, max_count=6))
    assert full.action == NONE and "max_count" in full.reason


def test_cooldown_and_an_active_run_hold_decisions_but_timers_keep_running() -> None:
    (held,), state = run(PolicyState(backlog_since=0), obs(10, demand=1, run_active=True))
    assert held.action == NONE and "run is active" in held.reason and state.backlog_since == 0
    (cooling,), _ = run(PolicyState(backlog_since=0, last_action_at=5), obs(10, demand=1))
    assert cooling.action == NONE and "cooldown" in cooling.reason


def test_scale_in_removes_only_nodes_idle_for_idle_time_never_busy_never_below_min() -> None:
    three = nodes(3)
    idle_all = {"w0", "w1", "w2"}
    decisions, state = run(
        PolicyState(),
        obs(0, 3, nodes=three, idle={"w1", "w2"}, busy={"w0"}),
        obs(19, 3, nodes=three, idle={"w1", "w2"}, busy={"w0"}),
        obs(20, 3, nodes=three, idle={"w1", "w2"}, busy={"w0"}),
    )
    assert [d.action for d in decisions[:2]] == [NONE, NONE]
    scale_in = decisions[2]
    assert scale_in.action == SCALE_IN and scale_in.count == 1 and set(scale_in.drain) == {"w1", "w2"}
    assert set(scale_in.remove) == {"id1", "id2"} and "w0" not in state.idle_since
    (floor,), _ = run(PolicyState(idle_since=dict.fromkeys(idle_all, 0.0)), obs(30, 3, nodes=three, idle=idle_all))
    assert floor.count == 1 and floor.drain == ("w2", "w1")  # min_count 1 kept, newest removed first
    (busy_again,), state = run(PolicyState(idle_since={"w1": 0.0}), obs(30, 3, nodes=three, busy={"w1"}))
    assert busy_again.action == NONE and state.idle_since == {}  # work restarts the idle clock


def test_no_scale_in_while_demand_waits_or_nodes_boot_or_load_unreadable() -> None:
    idle = PolicyState(idle_since={"w1": 0.0})
    two = nodes(2)
    (demand,), _ = run(idle, obs(50, 2, nodes=two, idle={"w1"}, demand=1, max_count=2))
    (booting,), _ = run(idle, obs(50, 2, nodes=two, idle={"w1"}, desired=3))
    (blind,), state = run(idle, obs(50, 2, nodes=two, idle={"w1"}, demand=None, load_error="master down"))
    assert demand.action == booting.action == blind.action == NONE
    assert "master down" in blind.reason and state.idle_since == {}


def test_failed_scale_out_backs_off_exponentially_then_retries_or_gives_up() -> None:
    def failed(suffix: str) -> tuple[NodeView, ...]:
        bad = NodeView(id=f"bad{suffix}", name="w1", index=1, state="ERROR", ever_healthy=False, reason="boot failed")
        return (*nodes(1), bad)

    (first,), state = run(PolicyState(), obs(100, 2, nodes=failed("a"), demand=1))
    assert first.action == BACKOFF and "failed 1 time(s)" in first.reason and "boot failed" in first.reason
    assert state.retry_after == 100 + 30
    (waiting,), state = run(state, obs(120, 2, nodes=failed("a"), demand=1))
    assert waiting.action == NONE
    (retry,), state = run(state, obs(131, 2, nodes=failed("a"), demand=1))
    assert retry.action == RETRY
    (second,), state = run(state, obs(140, 2, nodes=failed("b"), demand=1))  # the retry's node failed too
    assert second.action == BACKOFF and state.failures == 2 and state.retry_after == 140 + 60
    (gone,), state = run(state, obs(150, 2, nodes=failed("b"), demand=0))
    assert gone.action == DROP_FAILED and gone.count == 1 and gone.remove == ("badb",)
    (blocked,), _ = run(state, obs(170, 1, demand=3))  # new demand waits for the backoff too
    assert blocked.action == NONE
    (healthy,), state = run(state, obs(300, 1))
    assert state.failures == 0 and state.retry_after is None and healthy.action == NONE


def test_backoff_delay_doubles_up_to_the_cap() -> None:
    settings = ElasticSettings(backoff=30, backoff_max=100)
    assert [backoff_delay(n, settings) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_state_round_trips_through_json() -> None:
    state = PolicyState(backlog_since=1.5, idle_since={"w1": 2.0}, failures=2, counted_failed=("a",))
    assert PolicyState.from_dict(state.to_dict()) == state


def test_settings_come_from_template_then_options_then_defaults() -> None:
    settings = resolve({"idle_time": 20}, {"idle_time": 99, "grace": "15", "unrelated": 1})
    assert settings.idle_time == 20 and settings.grace == 15 and settings.cooldown == ElasticSettings().cooldown
    with pytest.raises(SettingError, match="idle_time='soon' in the template"):
        resolve({"idle_time": "soon"}, {})
    with pytest.raises(SettingError, match="must be positive"):
        resolve({}, {"max_booting": 0})
    assert "| idle_time | 20 |" in settings.markdown()
