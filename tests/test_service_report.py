"""What the distributed-stack tests print when they fail (tests/_service_fixtures.py's stack_report).

A Celery worker that still answers pings but takes no task (seen once after a Redis restart, with kombu 5.7.0) and a
task message lost by the broker look the same from the REST API: a task instance queued for ever. The report shows
which: what Redis holds, what the workers answer, and each component's log tail. Checked here on a real redis-server.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from _service_fixtures import BROKER_VARIABLE, free_port, reported_on_failure, stack_report

from dodas_tasks.devstack import processes
from dodas_tasks.devstack.local_airflow import AirflowStack, Component

BINDING = "default\x06\x16\x06\x16default"  # kombu's member of _kombu.binding.default: routing key, pattern, queue


@pytest.fixture
def broker() -> Iterator[str]:
    """A redis-server of this test's own on a free loopback port, stopped by its PID."""
    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not processes.port_in_use("127.0.0.1", port):
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def a_stack(home: Path, broker_url: str) -> AirflowStack:
    """A stack as the Celery test's, not started: its Redis and a scheduler whose output is already written."""
    redis_component = Component("redis", ("/usr/bin/redis-server",))
    scheduler = Component("airflow-scheduler", ("airflow", "scheduler"))
    stack = AirflowStack(
        home,
        home / "dags",
        home / "plugins",
        settings={BROKER_VARIABLE: broker_url},
        components=[redis_component, scheduler],
    )
    stack.logs_dir.mkdir(parents=True)
    (stack.logs_dir / "airflow-scheduler.out").write_text("".join(f"scheduler line {i}\n" for i in range(100)))
    return stack


def test_the_report_shows_the_waiting_messages_the_bindings_and_the_log_tails(tmp_path: Path, broker: str) -> None:
    client = redis.Redis.from_url(broker)
    client.lpush("default", "a task message", "another")
    client.sadd("_kombu.binding.default", BINDING)
    client.close()

    report = stack_report(a_stack(tmp_path, broker))
    print(report)

    assert "b'default': list 2" in report  # two messages wait: no worker takes them
    assert f"b'_kombu.binding.default': set 1 [{BINDING.encode()!r}]" in report  # the queue is still bound
    assert f"pid=[{os.getpid()}] ['" in report and "cmd=client|list" in report  # this test's own
    assert "(no Celery worker in the stack)" in report
    assert "scheduler line 99" in report and "scheduler line 59" not in report  # the last 40 lines
    assert "airflow-scheduler.out" in report and "redis.out\n(unreadable" in report


def test_a_failing_block_prints_the_report_and_still_fails(
    tmp_path: Path, broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = a_stack(tmp_path, broker)
    with pytest.raises(pytest.fail.Exception, match="timed out"), reported_on_failure(stack):
        pytest.fail("timed out after 420 s waiting for the retry")
    assert "===== Redis\n(no keys)" in capsys.readouterr().out

    with reported_on_failure(stack):
        pass
    assert capsys.readouterr().out == ""  # nothing printed while all goes well


def test_a_broker_that_is_down_is_said_so_and_the_rest_still_reported(tmp_path: Path) -> None:
    report = stack_report(a_stack(tmp_path, f"redis://127.0.0.1:{free_port()}/0"))
    assert "===== Redis\n(unavailable: ConnectionError" in report
    assert "scheduler line 99" in report
