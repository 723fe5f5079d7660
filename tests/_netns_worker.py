"""The worker side of tests/test_localcloud_netns_e2e.py: run as a program inside the worker's network namespace.

`deploy TEMPLATE_FILE INPUTS_JSON` submits and runs the deployment DAG (dag.test()), then checks the cluster again
as the watchers do (verify's membership check, healing's probes); `undeploy ID` runs the deleting DAG run. The
last stdout line is `RESULT <json>`. The local cloud is the service named by DODAS_LOCALCLOUD_URL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "dodas.py"


def run_dag(dag_id: str) -> str:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAG_FILE))
    assert not bag.import_errors, bag.import_errors
    return str(bag.get_dag(dag_id).test().state)


def deploy(template_file: str, inputs_json: str) -> dict[str, Any]:
    from dodas_tasks.deploy import service
    from dodas_tasks.deploy.components import Deployer
    from dodas_tasks.elastic.health import probe_nodes
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import Store

    with Store() as store:
        deployment_id = service.submit(store, Path(template_file).read_text(), json.loads(inputs_json))
        state = run_dag(deployment_dag_id(deployment_id))
        dep = store.get_deployment(deployment_id)
        result: dict[str, Any] = {"deployment_id": deployment_id, "run": state, "status": dep.status}
        result["reason"] = dep.status_reason
        if state != "success":
            return result
        nodes = store.list_nodes(deployment_id)
        result["nodes"] = [{"name": n.name, "ip": n.private_ip, "port": n.ssh_port, "state": n.state} for n in nodes]
        result["verified_again"] = [v.summary for v in Deployer(store, deployment_id, log=print).verify()]
        probes = probe_nodes(store, dep, nodes)
        result["probes"] = {n.name: [probes[n.id].ssh, probes[n.id].framework] for n in nodes}
        return result


def undeploy(deployment_id: str) -> dict[str, Any]:
    from dodas_tasks.deploy import service
    from dodas_tasks.naming import deployment_dag_id
    from dodas_tasks.store import Store

    with Store() as store:
        service.request_undeploy(store, deployment_id)
        state = run_dag(deployment_dag_id(deployment_id))
        return {"run": state, "status": store.get_deployment(deployment_id).status}


def main(argv: list[str]) -> int:
    command, *args = argv
    result = deploy(*args) if command == "deploy" else undeploy(*args)
    print("RESULT " + json.dumps(result, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
