"""Each real DODAS Mesos template compiles to a deployment DAG whose tasks and edges follow its topology."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.airflow.dag_factories.deployment import build_deployment_dag
from dodas_tasks.deploy import service
from dodas_tasks.frameworks.registry import binding_for
from dodas_tasks.store import Store

SECRETS = {"mesos_password": "m", "marathon_password": "mp", "chronos_password": "c"}
MESOS_CONFIGURE = {
    "configure.mesos_master": {"provision.mesos_master_server"},
    "configure.mesos_slave": {"provision.mesos_slave_server"},
    "configure.mesos_load_balancer": {"provision.mesos_lb_server"},
}
CORPUS_DAGS = {
    "templates__mesos_cluster.yaml": MESOS_CONFIGURE,
    "dodas__htcondor_cluster.yaml": {
        "configure.mesos_master": {"provision.mesos-master-server"},
        "configure.mesos_slave": {"provision.mesos-slave-server"},
        "configure.mesos_slaveschedd": {"provision.mesos-slaveschedd-server"},
        "configure.mesos_slaveccb": {"provision.mesos-ccb-server"},
        "configure.mesos_load_balancer": {"provision.mesos-lb-server", "configure.mesos_master"},
        "deploy.htcondor_services": {"provision.mesos-master-server", "configure.mesos_master"},
    },
    "dodas__CMS-HTCondor-dodas.yaml": {
        "configure.mesos_master": {"provision.mesos-master-server"},
        "configure.mesos_slave": {"provision.mesos-slave-server"},
        "configure.mesos_load_balancer": {"provision.mesos-lb-server", "configure.mesos_master"},
        "deploy.cms_services": {"provision.mesos-master-server", "configure.mesos_master"},
        "deploy.cms_wn": {"provision.mesos-slave-server", "configure.mesos_slave"},
    },
    "dodas__AMS_cluster.yaml": {
        "configure.mesos_master": {"provision.mesos-master-server"},
        "configure.mesos_slave": {"provision.mesos-slave-server"},
        "configure.mesos_slaveschedd": {"provision.mesos-slaveschedd-server"},
        "configure.mesos_slaveccb": {"provision.mesos-ccb-server"},
        "configure.mesos_load_balancer": {"provision.mesos-lb-server", "configure.mesos_master"},
        "deploy.ams_services": {"provision.mesos-master-server", "configure.mesos_master"},
        "deploy.htcondor_services": {"provision.mesos-master-server", "configure.mesos_master"},
        "deploy.ams_executor": {
            "provision.mesos-master-server",
            "configure.mesos_master",
            "deploy.htcondor_services",
        },
        "deploy.condor_wn": {"provision.mesos-slave-server", "configure.mesos_slave"},
    },
    "examples__spark_mesos_cluster.yaml": {
        **MESOS_CONFIGURE,
        "deploy.spark_application": {"provision.mesos_master_server", "configure.mesos_master"},
    },
    "examples__indigo_marathon_app.yaml": {
        "configure.docker_runtime": {"begin"},
        "deploy.marathon-app": {"configure.docker_runtime"},
    },
}


# Frameworks deploy onto a finished cluster: every deploy task also waits for every configure task.
for _edges in CORPUS_DAGS.values():
    _configure = {task for task in _edges if task.startswith("configure.")}
    for _task, _upstream in _edges.items():
        if _task.startswith("deploy."):
            _upstream |= _configure


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with Store() as s:
        yield s


def graph(corpus: Path, store: Store, name: str) -> dict[str, set[str]]:
    text = (corpus / name).read_text()
    from dodas_tasks.tosca.compiler import compile as compile_template

    needed = compile_template(text, None).missing_inputs
    deployment_id = service.submit(store, text, {k: SECRETS[k] for k in needed}, source=name)
    dag = build_deployment_dag(store.get_deployment(deployment_id))
    return {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}


@pytest.mark.parametrize("name", sorted(CORPUS_DAGS))
def test_corpus_template_dag(corpus: Path, store: Store, name: str) -> None:
    tasks = graph(corpus, store, name)
    stages = {t: up for t, up in tasks.items() if t.startswith(("configure.", "deploy."))}
    assert stages == CORPUS_DAGS[name]
    leaves = {t for t in stages if not any(t in up for up in stages.values())}
    assert tasks["verify"] == leaves and tasks["finalize"] == {"verify"}
    groups = {t for t in tasks if t.startswith("provision.")}
    assert all(tasks[g] == {"begin"} for g in groups)


@pytest.mark.parametrize("name", sorted(CORPUS_DAGS))
def test_every_component_of_the_corpus_has_a_deployer(corpus: Path, name: str) -> None:
    from dodas_tasks.tosca.compiler import compile as compile_template

    plan = compile_template((corpus / name).read_text(), None)
    for comp in plan.components:
        if comp.stage in ("configure", "deploy"):
            binding_for(comp.type_chain, comp.name)  # raises ComponentNotDeployable otherwise
