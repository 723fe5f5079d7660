"""The TOSCA compiler: real corpus templates compile to the expected Plans; bad input gets one clear report."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from dodas_tasks.tosca.compiler import compile, plan_stages
from dodas_tasks.tosca.errors import DodasTemplateError
from dodas_tasks.tosca.plan import Plan

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
DATA = Path(__file__).with_name("data")

# What a reader of each corpus template expects: compute groups and the components in each stage.
CONFORMANCE = {
    "dodas__AMS_cluster.yaml": {
        "groups": {
            "mesos-master-server",
            "mesos-slave-server",
            "mesos-slaveschedd-server",
            "mesos-ccb-server",
            "mesos-lb-server",
        },
        "configure": {"mesos_master", "mesos_slave", "mesos_slaveschedd", "mesos_slaveccb", "mesos_load_balancer"},
        "deploy": {"ams_services", "ams_executor", "htcondor_services", "condor_wn"},
    },
    "dodas__Basic.yaml": {"groups": {"simple_node"}, "configure": set(), "deploy": set()},
    "dodas__CMS-HTCondor-dodas.yaml": {
        "groups": {"mesos-master-server", "mesos-slave-server", "mesos-lb-server"},
        "configure": {"mesos_master", "mesos_slave", "mesos_load_balancer"},
        "deploy": {"cms_services", "cms_wn"},
    },
    "dodas__htcondor_cluster.yaml": {
        "groups": {
            "mesos-master-server",
            "mesos-slave-server",
            "mesos-slaveschedd-server",
            "mesos-ccb-server",
            "mesos-lb-server",
        },
        "configure": {"mesos_master", "mesos_slave", "mesos_slaveschedd", "mesos_slaveccb", "mesos_load_balancer"},
        "deploy": {"htcondor_services"},
    },
    "examples__indigo_marathon_app.yaml": {
        "groups": set(),
        "configure": {"docker_runtime"},
        "deploy": {"marathon-app"},
    },
    "examples__mesos_cluster.yaml": {
        "groups": {"mesos_master_server", "mesos_slave_server", "mesos_lb_server"},
        "configure": {"mesos_master", "mesos_slave", "mesos_load_balancer"},
        "deploy": set(),
    },
    "examples__mesos_elastic_cluster.yaml": {
        "groups": {"mesos_master_server", "mesos_slave_server", "mesos_lb_server"},
        "configure": {"mesos_master", "mesos_slave", "mesos_load_balancer"},
        "deploy": set(),
    },
    "examples__spark_mesos_cluster.yaml": {
        "groups": {"mesos_master_server", "mesos_slave_server", "mesos_lb_server"},
        "configure": {"mesos_master", "mesos_slave", "mesos_load_balancer"},
        "deploy": {"spark_application"},
    },
    "templates__mesos_cluster.yaml": {
        "groups": {"mesos_master_server", "mesos_slave_server", "mesos_lb_server"},
        "configure": {"mesos_master", "mesos_slave", "mesos_load_balancer"},
        "deploy": set(),
    },
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compilation must never reach the network: any outgoing connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access during compile: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", sorted(CONFORMANCE))
def test_corpus_template_compiles_to_expected_stages(corpus: Path, name: str, no_network: None) -> None:
    expected = CONFORMANCE[name]
    plan = compile((corpus / name).read_text(), None, source=name)
    assert {g.name for g in plan.groups} == expected["groups"]
    stages = plan_stages(plan)
    assert set(stages.get("configure", [])) == expected["configure"]
    assert set(stages.get("deploy", [])) == expected["deploy"]
    # every component on a VM knows its compute group, reached through HostedOn
    for comp in plan.components:
        if comp.stage != "configure" or comp.type != "tosca.nodes.indigo.Container.Runtime.Docker":
            assert comp.host_group in {g.name for g in plan.groups} or not plan.groups, comp.name
    Plan.from_json(plan.to_json())  # JSON round trip


def test_every_corpus_template_is_covered(corpus: Path) -> None:
    names = {p.name for p in corpus.glob("*.yaml") if not p.name.startswith("types__")}
    assert names - set(CONFORMANCE) == {"dodas__XCache__2018-12.yaml"}


def test_xcache_is_refused_with_its_yaml_line(corpus: Path) -> None:
    with pytest.raises(DodasTemplateError) as info:
        compile((corpus / "dodas__XCache__2018-12.yaml").read_text(), {}, source="XCache.yaml")
    (problem,) = info.value.problems
    assert problem.kind == "yaml" and problem.line == 7 and problem.column == 63
    assert "XCache.yaml:7:63" in info.value.report()


def test_elastic_example_compiles_with_bounds_from_worker_capability(corpus: Path) -> None:
    plan = compile((corpus / "examples__mesos_elastic_cluster.yaml").read_text(), {"slave_num": 5})
    assert plan.elasticity.enabled and plan.elasticity.group == "mesos_slave_server"
    assert (plan.elasticity.min_count, plan.elasticity.max_count) == (0, 5)
    assert plan.group("mesos_slave_server").count == 0


def test_cms_template_details(corpus: Path) -> None:
    plan = compile((corpus / "dodas__CMS-HTCondor-dodas.yaml").read_text(), {"number_of_slaves": 3})
    slaves = plan.group("mesos-slave-server")
    assert (slaves.count, slaves.num_cpus, slaves.mem_mb) == (3, 4, 8192)
    master = plan.group("mesos-master-server")
    assert master.network == "PUBLIC" and {p.source for p in master.ports} == {5050, 8443}
    assert master.image == "ost://horizon.cloud.cnaf.infn.it/0b18691b-2c67-4800-876e-60802024c64f"
    cms = plan.component("cms_services")
    assert cms.host == "mesos_master" and cms.host_group == "mesos-master-server"
    # IPs are known only after provisioning: kept as typed references
    assert cms.properties["mysquid_host"] == {"$attr": {"node": "mesos-lb-server", "path": ["private_address", 0]}}
    assert cms.properties["master_ips"] == {"$attr": {"node": "mesos-master-server", "path": ["private_address"]}}
    # secrets are references in the plan, values apart
    assert cms.properties["iam_client_secret"] == {"$secret": "iam_client_secret"}
    assert plan.secrets["iam_client_secret"] == "IAM-Client-Secret"
    assert "IAM-Client-Secret" not in plan.to_json() and "changeme" not in plan.to_json()
    assert {(e.source, e.target, e.kind) for e in plan.edges} >= {
        ("cms_services", "mesos_master", "HostedOn"),
        ("mesos_load_balancer", "mesos_master", "DependsOn"),
    }
    endpoint = next(o for o in plan.outputs if o.name == "mesos_endpoint")
    assert endpoint.value == {
        "$concat": ["http://", {"$attr": {"node": "mesos-master-server", "path": ["public_address", 0]}}, ":5050"]
    }
    secret_inputs = {i.name for i in plan.inputs if i.secret}
    assert {"marathon_password", "mesos_password", "iam_token", "iam_client_secret"} <= secret_inputs
    assert all(i.value is None for i in plan.inputs if i.secret)


def test_htcondor_volume_attached_to_schedd_group(corpus: Path) -> None:
    plan = compile((corpus / "dodas__htcondor_cluster.yaml").read_text(), None)
    (volume,) = plan.group("mesos-slaveschedd-server").volumes
    assert (volume.name, volume.size_gb, volume.mount_path) == ("condor_spool_dir", 500, "/spooldir")


def test_validate_only_lists_missing_inputs(corpus: Path) -> None:
    plan = compile((corpus / "templates__mesos_cluster.yaml").read_text(), None)
    assert set(plan.missing_inputs) == {"mesos_password", "marathon_password", "chronos_password"}


def test_missing_required_inputs_are_errors_at_submission(corpus: Path) -> None:
    with pytest.raises(DodasTemplateError) as info:
        compile((corpus / "templates__mesos_cluster.yaml").read_text(), {"mesos_password": "x"})
    missing = {p.node for p in info.value.problems if p.kind == "input"}
    assert missing == {"marathon_password", "chronos_password"}


def test_dodas_v2_template_refused_listing_unsupported_types() -> None:
    with pytest.raises(DodasTemplateError) as info:
        compile((DATA / "dodas_v2_htcondor.yaml").read_text(), None)
    assert info.value.unsupported_types == [
        "tosca.nodes.DODAS.FrontEnd.Kubernetes",
        "tosca.nodes.DODAS.HelmInstall.HTCondor",
        "tosca.nodes.DODAS.WorkerNode.Kubernetes",
    ]
    report = info.value.report()
    assert "tosca.nodes.DODAS.HelmInstall.HTCondor" in report and "Traceback" not in report
    assert any(p.kind == "import" for p in info.value.problems)


SPARK = (TEMPLATES / "spark_local.yaml").read_text()


def test_many_problems_reported_together() -> None:
    broken = SPARK.replace("type: tosca.nodes.indigo.dodas.SparkWorker", "type: tosca.nodes.indigo.NoSuchWorker")
    broken = broken.replace(
        "get_attribute: [ spark-master-server, private_address, 0 ], ':8080'",
        "get_attribute: [ no-such-server, private_address, 0 ], ':8080'",
    )
    assert "no-such-server" in broken
    with pytest.raises(DodasTemplateError) as info:
        compile(broken, {"number_of_workers": "many", "worker_mem": "2 GB", "typo_input": 1})
    kinds = [p.kind for p in info.value.problems]
    assert kinds.count("input") == 2  # bad integer + undeclared input
    assert "unsupported_type" in kinds and "function" in kinds
    unknown = next(p for p in info.value.problems if p.type_name)
    assert unknown.node == "spark_worker" and unknown.line is not None


def test_input_constraint_and_type_errors_name_the_input() -> None:
    with pytest.raises(DodasTemplateError) as info:
        compile(SPARK, {"number_of_workers": 500})
    (problem,) = info.value.problems
    assert problem.node == "number_of_workers" and "out of range" in problem.message and problem.line == 13


def test_cycle_is_reported_with_its_path() -> None:
    cyclic = SPARK.replace(
        "        - host: spark-master-server\n",
        "        - host: spark-master-server\n        - dependency: spark_worker\n",
        1,
    )
    with pytest.raises(DodasTemplateError) as info:
        compile(cyclic, None)
    cycle = [p for p in info.value.problems if p.kind == "cycle"]
    assert cycle and "spark_master" in cycle[0].message and "spark_worker" in cycle[0].message


def test_unresolvable_functions() -> None:
    bad = SPARK.replace("count: { get_input: number_of_workers }", "count: { get_input: nope }")
    with pytest.raises(DodasTemplateError) as info:
        compile(bad, None)
    assert any("nope" in p.message and p.kind == "function" for p in info.value.problems)


def test_secret_input_value_never_in_error_or_plan() -> None:
    tpl = SPARK.replace("  inputs:\n", "  inputs:\n    admin_password:\n      type: integer\n      default: 1\n", 1)
    with pytest.raises(DodasTemplateError) as info:
        compile(tpl, {"admin_password": "hunter2-not-a-number"})
    assert "hunter2" not in info.value.report()


def test_local_spark_template_plan() -> None:
    plan = compile(SPARK, {"number_of_workers": "3"})
    workers = plan.group("spark-worker-server")
    assert workers.count == 3 and workers.mem_mb == 1024
    assert [c.stage for c in plan.components] == ["deploy", "deploy"]
    assert ("spark_worker", "spark_master", "ConnectsTo") in {(e.source, e.target, e.kind) for e in plan.edges}
    assert next(i for i in plan.inputs if i.name == "number_of_workers").given
    data = json.loads(plan.to_json())
    assert data["version"] == 1 and "secrets" not in data


def test_elastic_policy_template() -> None:
    plan = compile((TEMPLATES / "spark_local_elastic.yaml").read_text(), {"max_workers": 6, "idle_time": 30})
    e = plan.elasticity
    assert e.enabled and e.group == "spark-worker-server" and (e.min_count, e.max_count) == (1, 6)
    assert e.settings == {"idle_time": 30}


@pytest.mark.parametrize("path", sorted(TEMPLATES.glob("*.yaml")), ids=lambda p: p.name)
def test_ready_templates_validate(path: Path, no_network: None) -> None:
    plan = compile(path.read_text(), None, source=path.name)
    assert plan.groups or plan.components
