"""The project's TOSCA type library: real DODAS templates validate against it, offline.

Corpus templates import indigo-dc/tosca-types by URL; here each import is pointed at our library file,
as the compiler does, and the stock tosca-parser must accept the template with zero errors.
"""

from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from toscaparser.common.exception import ExceptionCollector, ValidationError
from toscaparser.elements.entity_type import EntityType
from toscaparser.tosca_template import ToscaTemplate

TYPES_DIR = importlib.resources.files("dodas_tasks.tosca") / "types"
LIBRARY = Path(str(TYPES_DIR / "indigo_custom_types.yaml"))
LOCAL_LIBRARY = Path(str(TYPES_DIR / "dodas_local_types.yaml"))
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "indigo"
INVALID_YAML_TEMPLATES = {"dodas__XCache__2018-12.yaml"}
ELASTIC_EXAMPLE = "examples__mesos_elastic_cluster.yaml"


def _corpus_templates() -> list[Any]:
    found = sorted(
        path
        for pattern in ("dodas__*.yaml", "examples__*.yaml", "templates__*.yaml")
        for path in CORPUS.glob(pattern)
        if path.name not in INVALID_YAML_TEMPLATES
    )
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not found at {CORPUS}"))]
    return [pytest.param(path, id=path.name) for path in found]


def _load_with_library(path: Path) -> dict[str, Any]:
    """Read a corpus template and point every import at our library, as the compiler does."""
    template = yaml.safe_load(path.read_text())
    template["imports"] = [{name: str(LIBRARY)} for entry in template["imports"] for name in entry]
    return template


def _parse(template: dict[str, Any]) -> ToscaTemplate:
    return ToscaTemplate(yaml_dict_tpl=copy.deepcopy(template), a_file=False)


@pytest.mark.parametrize("path", _corpus_templates())
def test_corpus_template_validates_against_library(path: Path) -> None:
    parsed = _parse(_load_with_library(path))
    assert parsed.nodetemplates


def test_elastic_example_validates_with_lrms_and_wn_requirements() -> None:
    path = CORPUS / ELASTIC_EXAMPLE
    if not path.exists():
        pytest.skip(f"corpus not found at {CORPUS}")
    parsed = _parse(_load_with_library(path))
    elastic = next(node for node in parsed.nodetemplates if node.name == "elastic_cluster_front_end")
    targets = {rel.type: target.name for rel, target in elastic.relationships.items()}
    assert targets == {
        "tosca.relationships.HostedOn": "mesos_master",
        "tosca.relationships.indigo.Manages": "mesos_slave",
    }


def _local_spark_template() -> dict[str, Any]:
    compute = {"type": "tosca.nodes.indigo.Compute"}
    return {
        "tosca_definitions_version": "tosca_simple_yaml_1_0",
        "imports": [{"dodas_types": str(LIBRARY)}],
        "topology_template": {
            "node_templates": {
                "master_vm": compute,
                "worker_vm": compute,
                "spark_master": {
                    "type": "tosca.nodes.indigo.dodas.SparkMaster",
                    "requirements": [{"host": "master_vm"}],
                },
                "spark_worker": {
                    "type": "tosca.nodes.indigo.dodas.SparkWorker",
                    "properties": {"cores": 2},
                    "requirements": [{"host": "worker_vm"}, {"master": "spark_master"}],
                },
            },
            "policies": [
                {
                    "elastic": {
                        "type": "tosca.policies.indigo.dodas.Elastic",
                        "targets": ["worker_vm"],
                        "properties": {"poll_interval": 10},
                    }
                }
            ],
        },
    }


def test_local_spark_types_and_elastic_policy_come_with_the_library_import() -> None:
    parsed = _parse(_local_spark_template())
    worker = next(node for node in parsed.nodetemplates if node.name == "spark_worker")
    assert worker.get_property_value("webui_port") == 8081
    targets = {rel.type: target.name for rel, target in worker.relationships.items()}
    assert targets["tosca.relationships.ConnectsTo"] == "spark_master"
    (policy,) = parsed.policies
    assert policy.type == "tosca.policies.indigo.dodas.Elastic"


def test_unknown_type_is_refused_with_invalid_type_error() -> None:
    template = _local_spark_template()
    template["topology_template"]["node_templates"]["helm"] = {"type": "tosca.nodes.DODAS.HelmInstall"}
    with pytest.raises(ValidationError, match=r'Type "tosca\.nodes\.DODAS\.HelmInstall" is not a valid type'):
        _parse(template)
    kinds = {type(error).__name__ for error in ExceptionCollector.getExceptions()}
    assert "InvalidTypeError" in kinds


# ---- the library's contents: types, properties, defaults, stage bases ----

REQUIRED = "<required>"
OPTIONAL = "<optional, no default>"

# type -> {property: REQUIRED | OPTIONAL | expected default}; inherited properties count.
# fmt: off
EXPECTED_PROPERTIES: dict[str, dict[str, Any]] = {
    "tosca.datatypes.indigo.User": {
        "os_user_name": OPTIONAL,
        "os_user_guid": OPTIONAL,
        "os_user_add_to_sudoers": OPTIONAL,
        "os_user_ssh_public_key": OPTIONAL,
    },
    "tosca.datatypes.indigo.network.PortSpec": {
        "protocol": "tcp",
        "source": OPTIONAL,
        "source_range": OPTIONAL,
        "remote_cidr": OPTIONAL,
    },
    "tosca.capabilities.indigo.OperatingSystem": {
        "type": OPTIONAL,
        "distribution": OPTIONAL,
        "version": OPTIONAL,
        "image": OPTIONAL,
        "credential": OPTIONAL,
        "gpu_driver": OPTIONAL,
        "cuda_support": OPTIONAL,
        "cuda_min_version": OPTIONAL,
        "cuDNN_version": OPTIONAL,
    },
    "tosca.capabilities.indigo.Scalable": {
        "count": 1,
        "min_instances": 1,
        "max_instances": 1,
        "removal_list": OPTIONAL,
    },
    "tosca.capabilities.indigo.Container": {
        "num_cpus": OPTIONAL,
        "mem_size": OPTIONAL,
        "disk_size": OPTIONAL,
        "instance_type": OPTIONAL,
        "preemtible_instance": OPTIONAL,
        "num_gpus": OPTIONAL,
        "gpu_vendor": OPTIONAL,
        "gpu_model": OPTIONAL,
        "infiniband_support": OPTIONAL,
        "sgx": OPTIONAL,
        "sgx_epc_size": OPTIONAL,
    },
    "tosca.capabilities.indigo.Endpoint": {
        "network_name": "PRIVATE",
        "dns_name": OPTIONAL,
        "additional_dns_names": OPTIONAL,
        "private_ip": True,
        "ports": OPTIONAL,
        "additional_ip": OPTIONAL,
    },
    "tosca.capabilities.indigo.LRMS": {"type": REQUIRED},
    "tosca.capabilities.indigo.LRMS.Mesos": {"type": "mesos"},
    "tosca.capabilities.indigo.Container.Docker": {
        "num_cpus": OPTIONAL,
        "num_gpus": OPTIONAL,
        "mem_size": OPTIONAL,
        "publish_ports": OPTIONAL,
        "volumes": OPTIONAL,
    },
    "tosca.relationships.indigo.AttachesTo": {"fs_type": OPTIONAL, "location": REQUIRED},
    "tosca.nodes.indigo.Compute": {"os_users": [], "tags": {}, "instance_name": ""},
    "tosca.nodes.indigo.BlockStorage": {"type": OPTIONAL, "size": REQUIRED},
    "tosca.nodes.indigo.LRMS.FrontEnd": {"wn_ips": [], "hybrid": False},
    "tosca.nodes.indigo.LRMS.FrontEnd.Mesos": {
        "mesos_masters_list": ["127.0.0.1"],
        "mesos_authenticate_http": True,
        "mesos_username": "admin",
        "mesos_password": "admin",
        "marathon_enable_ssl": True,
        "marathon_username": "admin",
        "marathon_password": REQUIRED,
        "enable_chronos": True,
        "chronos_enable_ssl": True,
        "chronos_username": "admin",
        "chronos_password": "admin",
        "enable_consul_sd": True,
        "enable_nfs_share": False,
        "enable_gpu_support": False,
    },
    "tosca.nodes.indigo.MesosMaster": {"marathon_password": REQUIRED, "wn_ips": []},
    "tosca.nodes.indigo.LRMS.WorkerNode": {
        "front_end_ip": REQUIRED,
        "hybrid": False,
        "public_front_end_ip": "",
    },
    "tosca.nodes.indigo.LRMS.WorkerNode.Mesos": {
        "master_ips": REQUIRED,
        "enable_nfs_share": False,
        "enable_consul_sd": True,
        "enable_gpu_support": False,
    },
    "tosca.nodes.indigo.MesosSlave": {"master_ips": REQUIRED, "front_end_ip": REQUIRED},
    "tosca.nodes.indigo.MesosLoadBalancer": {
        "master_ips": REQUIRED,
        "marathon_username": "admin",
        "marathon_password": REQUIRED,
        "enable_consul_sd": True,
        "hybrid": False,
    },
    "tosca.nodes.indigo.ElasticCluster": {
        "secret_token": "not_very_secret_token",
        "deployment_id": "",
        "hybrid": False,
        "powermanager_plugin": "indigo_orchestrator",
        "im_auth": "",
        "marathon_credentials": {"protocol": "http", "user": "admin", "token": "password", "token_type": "password"},
    },
    "tosca.nodes.indigo.HTCondorServices": {
        "config_mode": REQUIRED,
        "htcondor_config_schedd_ip": REQUIRED,
        "htcondor_config_ccb_ip": REQUIRED,
        "htcondor_config_condor_image": OPTIONAL,
        "master_ips": REQUIRED,
        "lb_ips": REQUIRED,
        "proxycache_host": REQUIRED,
        "marathon_username": "admin",
        "proxycache_token_manager": "ZOOKEEPER",
        "local_cache_expiration_time": 86400,
        "lock_file_age": 20,
        "cache_dir": "/tmp",
        "proxycache_image": "dodasts/ttscache",
    },
    "tosca.nodes.indigo.CmsServices": {
        "cms_local_site": REQUIRED,
        "cms_squid_image": "spiga/frontiersquidv1",
        "cms_wn_image": "dodasts/cms",
        "cms_proxycache_image": "dodasts/ttscache",
        "cms_input_protocol": "xrootd",
        "mysquid_host": REQUIRED,
        "proxycache_host": REQUIRED,
        "iam_client_id": REQUIRED,
        "iam_client_secret": REQUIRED,
        "cms_proxycache_token_manager": "ZOOKEEPER",
        "watts_endpoint": "https://dodas-tts.cloud.cnaf.infn.it",
        "iam_endpoint": "https://dodas-iam.cloud.cnaf.infn.it/",
        "master_ips": REQUIRED,
    },
    "tosca.nodes.indigo.CmsWnConfig": {
        "cms_local_site": REQUIRED,
        "cms_stageoutsite": REQUIRED,
        "cms_stageoutprotocol": REQUIRED,
        "cms_phedexnode": REQUIRED,
        "cms_stageoutcommand": REQUIRED,
        "cms_input_protocol": "xrootd",
        "cms_xrd_readserver": "xrootd.ba.infn.it",
        "monitordb_ip": OPTIONAL,
        "elasticsearch_secret": OPTIONAL,
    },
    "tosca.nodes.indigo.CmsOneclient": {"oneclient_pkg": REQUIRED},
    "tosca.nodes.indigo.AmsCondorMasterConfig": {"ams_default_squid": REQUIRED, "master_ips": REQUIRED},
    "tosca.nodes.indigo.AmsCondorExecuteConfig": {
        "config_proxycache_serviceport": "8080",
        "htcondor_config_condor_image": OPTIONAL,
    },
    "tosca.nodes.indigo.AmsCondorWnConfig": {
        "number_of_wn_instances": REQUIRED,
        "cpu_x_wn": REQUIRED,
        "ams_repo_server_url": REQUIRED,
    },
    "tosca.nodes.indigo.SparkMesos": {
        "marathon_password": REQUIRED,
        "zookeeper_peers": REQUIRED,
        "spark_mesos_deploy_app": OPTIONAL,
        "spark_swift_http_port": "8080",
        "spark_swift_provider": "Test",
        "spark_cores_max": -1,
        "spark_executor_mem": "0 GB",
    },
    "tosca.nodes.indigo.XCache": {
        "master_ip": REQUIRED,
        "orchestrator": REQUIRED,
        "marathon_port": 8080,
        "server_image": "cloudpg/xrootd-proxy:cms",
    },
    "tosca.nodes.indigo.Container.Runtime.Docker": {},
    "tosca.nodes.indigo.Container.Application.Docker": {
        "command": OPTIONAL,
        "uris": OPTIONAL,
        "environment_variables": OPTIONAL,
        "constraints": OPTIONAL,
        "secrets": OPTIONAL,
        "labels": OPTIONAL,
        "privileged": False,
        "force_pull_image": False,
    },
    "tosca.nodes.indigo.Container.Application.Docker.Marathon": {
        "force_pull_image": True,
        "enable_https": False,
    },
    "tosca.nodes.indigo.Container.Application.Docker.Chronos": {
        "command": REQUIRED,
        "schedule": OPTIONAL,
        "epsilon": "PT10S",
        "privileged": True,
        "force_pull_image": True,
    },
    "tosca.policies.indigo.Placement": {"cloud_id": REQUIRED, "availability_zone": OPTIONAL},
    "tosca.policies.indigo.SlaPlacement": {"sla_id": REQUIRED},
    "tosca.policies.indigo.CredentialsAwareSlaPlacement": {
        "sla_id": REQUIRED,
        "username": REQUIRED,
        "password": REQUIRED,
        "subscription_id": OPTIONAL,
    },
    "tosca.policies.indigo.dodas.Elastic": {
        "idle_time": 300,
        "backlog_window": OPTIONAL,
        "poll_interval": OPTIONAL,
        "max_booting": OPTIONAL,
        "cooldown": OPTIONAL,
    },
    "tosca.nodes.indigo.dodas.SparkMaster": {"master_port": 7077, "webui_port": 8080},
    "tosca.nodes.indigo.dodas.SparkWorker": {"webui_port": 8081, "cores": OPTIONAL, "memory": OPTIONAL},
}
# fmt: on

# stage base -> types that must have it in their derived_from chain
# fmt: off
EXPECTED_BASES: dict[str, list[str]] = {
    "tosca.nodes.Compute": ["tosca.nodes.indigo.Compute"],
    "tosca.nodes.BlockStorage": ["tosca.nodes.indigo.BlockStorage"],
    "tosca.nodes.indigo.dodas.ClusterManager": [
        "tosca.nodes.indigo.LRMS.FrontEnd",
        "tosca.nodes.indigo.LRMS.FrontEnd.Mesos",
        "tosca.nodes.indigo.MesosMaster",
        "tosca.nodes.indigo.LRMS.WorkerNode",
        "tosca.nodes.indigo.LRMS.WorkerNode.Mesos",
        "tosca.nodes.indigo.MesosSlave",
        "tosca.nodes.indigo.MesosLoadBalancer",
    ],
    "tosca.nodes.indigo.dodas.Framework": [
        "tosca.nodes.indigo.HTCondorServices",
        "tosca.nodes.indigo.CmsServices",
        "tosca.nodes.indigo.CmsWnConfig",
        "tosca.nodes.indigo.CmsOneclient",
        "tosca.nodes.indigo.AmsCondorMasterConfig",
        "tosca.nodes.indigo.AmsCondorExecuteConfig",
        "tosca.nodes.indigo.AmsCondorWnConfig",
        "tosca.nodes.indigo.SparkMesos",
        "tosca.nodes.indigo.XCache",
        "tosca.nodes.indigo.dodas.SparkMaster",
        "tosca.nodes.indigo.dodas.SparkWorker",
    ],
    "tosca.nodes.Container.Application": [
        "tosca.nodes.indigo.Container.Application.Docker",
        "tosca.nodes.indigo.Container.Application.Docker.Marathon",
        "tosca.nodes.indigo.Container.Application.Docker.Chronos",
    ],
    "tosca.nodes.indigo.dodas.Elasticity": ["tosca.nodes.indigo.ElasticCluster"],
    "tosca.nodes.SoftwareComponent": [
        "tosca.nodes.indigo.dodas.ClusterManager",
        "tosca.nodes.indigo.dodas.Framework",
    ],
    "tosca.policies.Scaling": ["tosca.policies.indigo.dodas.Elastic"],
    "tosca.capabilities.Container": [
        "tosca.capabilities.indigo.MesosMaster",
        "tosca.capabilities.indigo.MesosSlave",
    ],
    "tosca.capabilities.Root": ["tosca.capabilities.indigo.Container.Application.Docker.Chronos"],
    "tosca.relationships.Root": ["tosca.relationships.indigo.Manages"],
}
# fmt: on


def _library_definitions() -> dict[str, dict[str, Any]]:
    """All type definitions by name: tosca-parser's normative ones overlaid with both library files."""
    definitions = dict(EntityType.TOSCA_DEF)
    for path in (LIBRARY, LOCAL_LIBRARY):
        document = yaml.safe_load(path.read_text())
        for section, types in document.items():
            if section.endswith("_types"):
                definitions.update(types)
    return definitions


DEFINITIONS = _library_definitions()
OWN_TYPES = {
    name
    for path in (LIBRARY, LOCAL_LIBRARY)
    for section, types in yaml.safe_load(path.read_text()).items()
    if section.endswith("_types")
    for name in types
}


def _ancestry(type_name: str) -> list[str]:
    chain = [type_name]
    while parent := DEFINITIONS[chain[-1]].get("derived_from"):
        chain.append(parent)
    return chain


def _effective(type_name: str, section: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for ancestor in reversed(_ancestry(type_name)):
        merged.update(DEFINITIONS[ancestor].get(section) or {})
    return merged


@pytest.mark.parametrize("type_name", sorted(EXPECTED_PROPERTIES))
def test_type_has_listed_properties_and_defaults(type_name: str) -> None:
    assert type_name in OWN_TYPES
    properties = _effective(type_name, "properties")
    for name, expected in EXPECTED_PROPERTIES[type_name].items():
        assert name in properties, f"{type_name} lacks property {name}"
        definition = properties[name]
        if expected == REQUIRED:
            assert definition.get("required", True) is True, f"{type_name}.{name} should be required"
        elif expected == OPTIONAL:
            assert definition.get("required", True) is False, f"{type_name}.{name} should be optional"
            assert "default" not in definition, f"{type_name}.{name} should have no default"
        else:
            assert definition.get("default") == expected, f"{type_name}.{name} default"


@pytest.mark.parametrize("base", sorted(EXPECTED_BASES))
def test_stage_is_chosen_by_derivation(base: str) -> None:
    for type_name in EXPECTED_BASES[base]:
        assert base in _ancestry(type_name), f"{type_name} should derive from {base}"


def test_capabilities_attributes_and_requirements_follow_the_real_types() -> None:
    compute_caps = {name: cap["type"] for name, cap in _effective("tosca.nodes.indigo.Compute", "capabilities").items()}
    assert compute_caps["scalable"] == "tosca.capabilities.indigo.Scalable"
    assert compute_caps["os"] == "tosca.capabilities.indigo.OperatingSystem"
    assert compute_caps["endpoint"] == "tosca.capabilities.indigo.Endpoint"
    assert compute_caps["host"] == "tosca.capabilities.indigo.Container"
    compute_attributes = _effective("tosca.nodes.indigo.Compute", "attributes")
    assert compute_attributes["private_address"]["type"] == "list"
    assert compute_attributes["public_address"]["type"] == "list"
    assert "credential" in _effective("tosca.capabilities.indigo.Endpoint", "attributes")

    assert _effective("tosca.nodes.indigo.MesosMaster", "capabilities")["host"]["type"] == (
        "tosca.capabilities.indigo.MesosMaster"
    )
    assert _effective("tosca.nodes.indigo.MesosSlave", "capabilities")["host"]["type"] == (
        "tosca.capabilities.indigo.MesosSlave"
    )
    for framework, capability in (
        ("tosca.nodes.indigo.HTCondorServices", "tosca.capabilities.indigo.MesosMaster"),
        ("tosca.nodes.indigo.CmsServices", "tosca.capabilities.indigo.MesosMaster"),
        ("tosca.nodes.indigo.SparkMesos", "tosca.capabilities.indigo.MesosMaster"),
        ("tosca.nodes.indigo.CmsWnConfig", "tosca.capabilities.indigo.MesosSlave"),
        ("tosca.nodes.indigo.AmsCondorWnConfig", "tosca.capabilities.indigo.MesosSlave"),
    ):
        (host,) = [req["host"] for req in DEFINITIONS[framework]["requirements"] if "host" in req]
        assert host["capability"] == capability

    elastic_requirements = {
        name: req
        for entry in DEFINITIONS["tosca.nodes.indigo.ElasticCluster"]["requirements"]
        for name, req in entry.items()
    }
    assert set(elastic_requirements) == {"lrms", "wn"}
    assert elastic_requirements["wn"]["relationship"] == "tosca.relationships.indigo.Manages"
    assert "tosca.nodes.SoftwareComponent" not in _ancestry("tosca.nodes.indigo.ElasticCluster")
