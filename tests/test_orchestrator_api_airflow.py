"""The orchestrator API through a real Airflow (scheduler, triggerer, dag-processor, api-server on 127.0.0.1) with the
plugin mounted, as orchestrator clients use it: create → poll → resources → template → update the count → delete.
The callback reaches a small receiver of the test after CREATE_COMPLETE (its first answer is a 503: retried), and no
user token appears in an answer, a log file, the Airflow database or the store."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from _api_fixtures import client, free_port
from _plugin_stack import AUDIENCE
from oidc_provider.fixture import Provider

from dodas_tasks.deploy.orchestrator_view import API_PREFIX
from dodas_tasks.devstack.local_airflow import AirflowStack

VM = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  inputs:
    workers: {type: integer, default: 1}
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
      capabilities:
        scalable: {properties: {count: {get_input: workers}}}
  outputs:
    vm_ips: {value: {get_attribute: [vm, private_address]}}
"""

pytestmark = pytest.mark.slow


class Receiver(ThreadingHTTPServer):
    """Records the callbacks POSTed to it; answers 503 to the first one (the sender must retry)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _ReceiverHandler)
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/dodas-hook"

    def wait_for(self, status: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for body in self.bodies:
                if body["status"] == status:
                    return body
            time.sleep(0.2)
        raise AssertionError(f"no callback with {status} within {timeout} s; got {[b['status'] for b in self.bodies]}")


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.refused == 0:
            self.server.refused += 1
            self.send_response(503)
        else:
            self.server.bodies.append(body)
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def provider(plugin_stack_provider: Provider) -> Provider:
    return plugin_stack_provider


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stack(plugin_store_env: AirflowStack) -> AirflowStack:
    """The session's plugin stack (tests/_plugin_stack.py), its store read by this test as its tasks read it."""
    return plugin_store_env


def wait_status(user: httpx.Client, uuid: str, wanted: set[str], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = user.get(f"/deployments/{uuid}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["status"] in wanted:
            return body
        assert time.monotonic() < deadline, f"deployment still {body['status']}: {body.get('statusReason')}"
        time.sleep(1)


def vm_resources(user: httpx.Client, uuid: str) -> list[dict[str, Any]]:
    content = user.get(f"/deployments/{uuid}/resources").json()["content"]
    return [r for r in content if r["toscaNodeName"] == "vm"]


def test_orchestrator_clients_flow_through_airflow(stack: AirflowStack, provider: Provider, receiver: Receiver) -> None:
    base = f"{stack.ui_url()}{API_PREFIX}"
    tokens = {
        "alice": provider.login("alice", aud=AUDIENCE, groups=["cms"]),
        "bob": provider.login("bob", aud=AUDIENCE, groups=["ams"]),
    }
    seen: list[str] = []
    alice, bob = client(base, tokens["alice"], seen), client(base, tokens["bob"], seen)

    assert "/deployments/{deployment_id}" in httpx.get(f"{base}/openapi.json").json()["paths"]  # under the prefix
    assert httpx.get(f"{base}/docs").status_code == 200
    created = alice.post("/deployments/", json={"template": VM, "callback": receiver.url})
    assert created.status_code == 201, created.text
    uuid = created.json()["uuid"]
    assert created.headers["location"] == f"{base}/deployments/{uuid}"
    done = wait_status(alice, uuid, {"CREATE_COMPLETE", "CREATE_FAILED"})
    assert done["status"] == "CREATE_COMPLETE", done
    assert done["cloudProviderName"] == "local" and done["outputs"]["vm_ips"]
    told = receiver.wait_for("CREATE_COMPLETE")  # the first POST got a 503: delivered by a retry
    assert told["uuid"] == uuid and told["links"][0]["href"] == f"{base}/deployments/{uuid}"

    vms = vm_resources(alice, uuid)
    assert len(vms) == 1 and vms[0]["state"] == "CREATED"
    assert alice.get(f"/deployments/{uuid}/resources/{vms[0]['uuid']}").json()["metadata"]["privateIp"]
    assert alice.get(f"/deployments/{uuid}/template").text == VM
    assert bob.get(f"/deployments/{uuid}").status_code == 403
    assert bob.delete(f"/deployments/{uuid}").status_code == 403

    username, password = stack.admin_credentials()
    login = httpx.post(f"{stack.ui_url()}/auth/token", json={"username": username, "password": password})
    admin = client(base, login.json()["access_token"], seen)  # Airflow's own token, of an Airflow admin
    assert uuid in {d["uuid"] for d in admin.get("/deployments").json()["content"]}
    ui = httpx.get(f"{base}/deployments/{uuid[:8]}", cookies={"_token": login.json()["access_token"]})
    assert ui.status_code == 200 and ui.json()["uuid"] == uuid  # the UI's cookie

    updated = alice.put(f"/deployments/{uuid}", json={"template": VM, "parameters": {"workers": 2}})
    assert updated.status_code == 202, updated.text
    assert wait_status(alice, uuid, {"UPDATE_COMPLETE", "UPDATE_FAILED"})["status"] == "UPDATE_COMPLETE"
    assert len(vm_resources(alice, uuid)) == 2
    receiver.wait_for("UPDATE_COMPLETE")

    assert alice.delete(f"/deployments/{uuid}").status_code == 204
    deadline = time.monotonic() + 300
    while (answer := alice.get(f"/deployments/{uuid}")).status_code == 200:
        assert time.monotonic() < deadline, answer.json()
        time.sleep(1)
    assert answer.status_code == 404 and "was deleted" in answer.json()["message"]
    receiver.wait_for("DELETE_COMPLETE")

    logs = "".join(p.read_text(errors="replace") for p in stack.logs_dir.rglob("*") if p.is_file())
    with sqlite3.connect(stack.airflow_home / "airflow.db") as raw:
        airflow_rows = "\n".join(raw.iterdump())  # run conf, XCom, triggers, rendered fields, logs table
    with sqlite3.connect(Path(os.environ["DODAS_HOME"]) / "dodas.db") as raw:
        store_rows = "\n".join(raw.iterdump())
    places = {"answers": "\n".join(seen), "logs": logs, "airflow db": airflow_rows, "store": store_rows}
    assert [(who, where) for who, t in tokens.items() for where, text in places.items() if t in text] == []
