"""`dodas` as a client of a remote service: the real CLI (a subprocess) against the orchestrator API served by
uvicorn under /dodas/orchestrator (as Airflow's api-server mounts it), with tokens of the test OpenID provider.

Nothing runs the deployment DAGs here: the test moves a deployment's status as its DAG would, where a command
waits for one. The same commands run locally on the same store print the same lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _api_fixtures import AUDIENCE, free_port, orchestrator_app, serving, under_api_prefix
from oidc_provider.fixture import Provider, running_provider

from dodas_tasks.deploy.orchestrator_view import API_PREFIX, LogEntry, log_text, parse_log
from dodas_tasks.store import DeploymentStatus, NodeState, Store

REPO = Path(__file__).resolve().parents[1]
SPARK = REPO / "templates" / "spark_local.yaml"
COMMAND_TIMEOUT_S = 120
WAIT_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider(600) as running:
        yield running


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('cli-remote') / 'dodas.db'}"


@pytest.fixture(scope="module")
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as s:
        yield s


@pytest.fixture(scope="module")
def service(provider: Provider, store: Store) -> Iterator[str]:
    """The api-server's address (the API is under its /dodas/orchestrator)."""
    with serving(under_api_prefix(orchestrator_app(provider, store))) as url:
        yield url


@pytest.fixture(scope="module")
def tokens(provider: Provider) -> dict[str, str]:
    return {name: provider.login(name, aud=AUDIENCE, groups=["cms"]) for name in ("alice", "bob")}


def dodas(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it; `env` sets (or with None removes) variables over this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment(**env),
        timeout=COMMAND_TIMEOUT_S,
    )


def environment(**env: str | None) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("DODAS_URL", "DODAS_ACCESS_TOKEN")}
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    return result.stderr.strip()


def poll(what: str, found: object) -> object:
    """`found()` once it is truthy, polled until a deadline."""
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while not (value := found()):  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not happen within {WAIT_DEADLINE_S} s"
        time.sleep(0.2)
    return value


def test_every_command_against_the_service_prints_what_it_prints_locally(
    service: str, store: Store, store_url: str, tokens: dict[str, str]
) -> None:
    alice = {"DODAS_URL": service, "DODAS_ACCESS_TOKEN": tokens["alice"]}
    submitted = ok(dodas("submit", str(SPARK), "-i", "number_of_workers=2", "--no-wait", **alice)).splitlines()
    uuid = submitted[-1]
    assert submitted[0] == f"deployment {uuid} registered (DAG dodas_deployment_{uuid[:8]})"
    dep = store.get_deployment(uuid)
    assert dep.owner_subject == "alice" and dep.template == SPARK.read_text() and dep.inputs["number_of_workers"] == 2
    master = store.upsert_node(uuid, "spark-master-server", 0, state=NodeState.STARTED, private_ip="127.77.0.2")
    store.update_node(master.id, applied={"spark_master": "digest"})
    store.upsert_node(uuid, "spark-worker-server", 0, state=NodeState.ERROR, state_reason="boot timed out")
    store.update_deployment(uuid, outputs={"spark_ui": "http://127.77.0.2:8080", "_internal": "hidden"})

    local = {"DODAS_DATABASE_URL": store_url}  # the same store, read on this machine
    for command in (["status", uuid[:8]], ["template", uuid[:8]], ["resources", uuid], ["list"]):
        remote_out, local_out = ok(dodas(*command, **alice)), ok(dodas(*command, **local))
        assert remote_out == local_out, command
    status = ok(dodas("status", uuid[:8], "--events", "20", **alice))
    assert status.startswith(f"deployment {uuid}: CREATE_IN_PROGRESS\ncloud local, owner alice, created ")
    assert "127.77.0.2" in status and "ERROR       -               (boot timed out)" in status
    assert "spark_ui: http://127.77.0.2:8080" in status and "_internal" not in status
    assert "(new) → CREATE_IN_PROGRESS" in status
    assert ok(dodas("template", uuid, "--url", f"{service}{API_PREFIX}/", **alice)) == SPARK.read_text()
    resources = ok(dodas("resources", uuid, **alice)).splitlines()
    assert len(resources) == 4  # 2 VMs, the master component on one, the worker component on the other
    assert resources[0].startswith(f"{master.id}  STARTED") and "spark-master-server" in resources[0]
    assert any(f"on {master.name}" in line and "spark_master" in line for line in resources)
    typed = ok(dodas("resources", uuid, "--type", "tosca.nodes.indigo.dodas.SparkWorker", **alice)).splitlines()
    assert len(typed) == 1 and "spark_worker" in typed[0]
    assert any(line.startswith(f"{uuid}  CREATE_IN_PROGRESS  local") for line in ok(dodas("list", **alice)).split("\n"))

    scaled = ok(dodas("scale", uuid[:8], "spark-worker-server", "3", "--no-wait", **alice))
    assert scaled.strip() == f"deployment {uuid}: spark-worker-server → 3 requested"
    dep = store.get_deployment(uuid)
    assert dep.desired_counts["spark-worker-server"] == 3 and dep.inputs["number_of_workers"] == 3  # by its input
    ok(dodas("scale", uuid, "spark-master-server", "2", "--no-wait", **alice))  # a literal count, rewritten
    assert store.get_deployment(uuid).desired_counts == {"spark-master-server": 2, "spark-worker-server": 3}
    one_line_refusal(dodas("scale", uuid, "no-such-group", "2", **alice), "no node 'no-such-group'")

    undeploy = subprocess.Popen(
        [sys.executable, "-m", "dodas_tasks.cli", "undeploy", uuid[:8]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=environment(**alice),
    )
    try:
        poll("the deletion request", lambda: store.get_deployment(uuid).status == DeploymentStatus.DELETE_IN_PROGRESS)
        store.set_status(uuid, DeploymentStatus.DELETE_COMPLETE, "all resources deleted")  # as the DAG ends it
        out, err = undeploy.communicate(timeout=COMMAND_TIMEOUT_S)
    finally:
        if undeploy.poll() is None:
            undeploy.kill()
            undeploy.wait()
    assert undeploy.returncode == 0, err
    assert out.splitlines()[-1] == "DELETE_COMPLETE" and "CREATE_IN_PROGRESS → DELETE_IN_PROGRESS" in out
    # (a deleted deployment is gone from the API: its 404 ends the watch, as DELETE_COMPLETE)


def test_submit_waits_for_the_deployment_to_complete(service: str, store: Store, tokens: dict[str, str]) -> None:
    before = {d.id for d in store.list_deployments()}
    submit = subprocess.Popen(
        [sys.executable, "-m", "dodas_tasks.cli", "submit", "spark_local.yaml"],  # a ready template, by name
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=environment(DODAS_URL=service, DODAS_ACCESS_TOKEN=tokens["bob"]),
    )
    try:
        new = poll("the submission", lambda: {d.id for d in store.list_deployments()} - before)
        (uuid,) = new  # type: ignore[misc]
        store.set_status(uuid, DeploymentStatus.CREATE_COMPLETE)  # as the deployment DAG ends
        out, err = submit.communicate(timeout=COMMAND_TIMEOUT_S)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.wait()
    assert submit.returncode == 0, err
    lines = out.splitlines()
    assert lines[1] == uuid and lines[-1] == "CREATE_COMPLETE" and "CREATE_IN_PROGRESS → CREATE_COMPLETE" in out


def test_tokens_missing_expired_or_refused_say_why_in_one_line(
    service: str, provider: Provider, tokens: dict[str, str]
) -> None:
    missing = one_line_refusal(dodas("list", DODAS_URL=service), "no access token", "DODAS_ACCESS_TOKEN")
    assert "--oidc-agent ACCOUNT" in missing and "oidc-token ACCOUNT" in missing
    expired = provider.login("alice", aud=AUDIENCE, ttl=5, issued_offset=-120)
    refused = one_line_refusal(
        dodas("status", "12345678", DODAS_URL=service, DODAS_ACCESS_TOKEN=expired), "refused the access token"
    )
    assert "expired" in refused and "DODAS_ACCESS_TOKEN" in refused
    wrong_audience = provider.login("alice", aud="someone-else")
    one_line_refusal(dodas("list", DODAS_URL=service, DODAS_ACCESS_TOKEN=wrong_audience), "refused the access token")


def test_wrong_urls_are_named(service: str, provider: Provider, tokens: dict[str, str]) -> None:
    token = tokens["alice"]
    nobody = f"http://127.0.0.1:{free_port()}"
    one_line_refusal(dodas("list", "--url", nobody, DODAS_ACCESS_TOKEN=token), f"{nobody}{API_PREFIX}", "cannot reach")
    not_the_api = dodas("list", "--url", provider.issuer, DODAS_ACCESS_TOKEN=token)  # a web server, not the API
    one_line_refusal(not_the_api, provider.issuer, "not as the orchestrator API")
    one_line_refusal(dodas("list", "--url", "dodas.example.org", DODAS_ACCESS_TOKEN=token), "not an http(s) URL")


def test_refusals_of_the_service_print_its_reason(
    service: str, store: Store, tokens: dict[str, str], tmp_path: Path
) -> None:
    alice = {"DODAS_URL": service, "DODAS_ACCESS_TOKEN": tokens["alice"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPARK.read_text().replace("tosca.nodes.indigo.dodas.SparkWorker", "tosca.nodes.indigo.NoSuchThing"))
    refused = dodas("submit", str(bad), "--no-wait", **alice)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("Bad Request: ") and "NoSuchThing" in refused.stderr, refused.stderr
    assert "node 'spark_worker'" in refused.stderr  # the compiler's report

    bobs = ok(dodas("submit", str(SPARK), "--no-wait", DODAS_URL=service, DODAS_ACCESS_TOKEN=tokens["bob"]))
    uuid = bobs.splitlines()[-1]
    one_line_refusal(dodas("status", uuid, **alice), "Forbidden: ", "not yours")
    one_line_refusal(dodas("undeploy", uuid[:8], **alice), "Not Found: ")  # a prefix only finds one's own
    one_line_refusal(dodas("template", "abcdef0123", **alice), "Not Found: no deployment 'abcdef0123'")
    one_line_refusal(dodas("resources", "96ef", **alice), "Bad Request: ", "too short")
    one_line_refusal(dodas("list", "--all", **alice), "--all", "deleted")
    one_line_refusal(dodas("submit", str(SPARK), "--cloud", "ec2", **alice), "--cloud", "DODAS_CLOUDS")
    one_line_refusal(dodas("submit", "no-such-template.yaml", **alice), "no such file")
    assert store.get_deployment(uuid).status == DeploymentStatus.CREATE_IN_PROGRESS  # nothing was changed


def test_oidc_agent_gives_the_token_and_its_absence_is_explained(
    service: str, tokens: dict[str, str], tmp_path: Path
) -> None:
    """oidc-agent's interface is the oidc-token command: it prints the account's access token (or fails)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "oidc-token"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = alice ]; then echo "{tokens["alice"]}"; exit 0; fi\n'
        'echo "Error: account not loaded: $1" >&2\nexit 1\n'
    )
    fake.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    listed = ok(dodas("list", "--oidc-agent", "alice", DODAS_URL=service, PATH=path))
    assert listed == ok(dodas("list", DODAS_URL=service, DODAS_ACCESS_TOKEN=tokens["alice"]))
    one_line_refusal(
        dodas("list", "--oidc-agent", "carol", DODAS_URL=service, PATH=path),
        "oidc-token carol failed",
        "account not loaded",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_refusal(
        dodas("list", "--oidc-agent", "alice", DODAS_URL=service, PATH=str(empty)),
        "oidc-token command (oidc-agent) is not installed",
        "DODAS_ACCESS_TOKEN",
    )


def test_the_log_reads_back_as_the_events_it_was_written_from() -> None:
    """GET /log is text; the remote CLI reads its entries back (a message may span lines)."""
    moment = datetime(2026, 12, 5, 14, 3, 7, 250000, tzinfo=UTC)
    events = [LogEntry(moment, "status", "(new) → CREATE_IN_PROGRESS"), LogEntry(moment, "failure", "one\ntwo: x")]
    assert parse_log(log_text(events)) == events
