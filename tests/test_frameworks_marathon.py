"""Marathon-app frameworks: app definitions as DODAS posted them, node scripts shellchecked and run locally."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dodas_tasks.clustermanagers.mesos import MesosCluster
from dodas_tasks.frameworks import htcondor, spark_mesos
from dodas_tasks.frameworks.ams import AmsOnMesos, ams_execute_apps
from dodas_tasks.frameworks.base import Cluster, Node, Script
from dodas_tasks.frameworks.chronos import chronos_job
from dodas_tasks.frameworks.cms import CmsOnMesos, cms_apps
from dodas_tasks.frameworks.marathon import _CURL
from dodas_tasks.frameworks.marathon_apps import MarathonApps, marathon_app
from dodas_tasks.frameworks.spark_mesos import dispatcher_app, spark_memory

SHELLCHECK = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
MASTER, AGENT = Node("m", "10.0.0.1"), Node("dodas-0a1b2c3d-mesos-slave-server-3", "10.0.0.2")
CLUSTER = Cluster({"master": (MASTER,), "agent": (AGENT,), "lb": (Node("l", "10.0.0.9"),)})


def scripts() -> dict[str, Script]:
    mesos = MesosCluster()
    found = {f"mesos-stop-{r}": mesos.stop_script(r, MASTER, CLUSTER) for r in mesos.roles}
    found["mesos-verify"] = mesos.verify_script(CLUSTER)
    found["cms-wn"] = CmsOnMesos().configure_script("wn", AGENT, CLUSTER)
    found["ams-wn"] = AmsOnMesos().configure_script("wn", AGENT, CLUSTER)
    found["marathon-check"] = MarathonApps().configure_script("app", MASTER, CLUSTER)
    found["marathon-request"] = Script("curl", {"DODAS_METHOD": "GET", "DODAS_PATH": "/v2/apps"}, _CURL)
    found["htcondor-pool"] = Script("pool", {}, htcondor._POOL)
    found["spark-submit"] = Script("pi", {}, spark_mesos._SUBMIT)
    found["spark-status"] = Script("status", {}, spark_mesos._STATUS)
    return found


@pytest.mark.parametrize("name", sorted(scripts()))
def test_framework_scripts_pass_shellcheck(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.sh"
    path.write_text("#!/bin/sh\n" + scripts()[name].render())
    checked = subprocess.run([SHELLCHECK, "-s", "sh", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_cms_worker_configuration_is_written(tmp_path: Path) -> None:
    env = {
        "DODAS_CMS_ETC": str(tmp_path),
        "TOSCA_PROPERTY_MYSQUID_HOST": "10.0.0.9",
        "TOSCA_PROPERTY_CMS_LOCAL_SITE": "T3_IT_Opportunistic_dodas",
        "TOSCA_PROPERTY_CMS_STAGEOUTSITE": "T1_IT_CNAF",
        "TOSCA_PROPERTY_CMS_STAGEOUTPROTOCOL": "srmv2",
        "TOSCA_PROPERTY_CMS_STAGEOUTCOMMAND": "gfal2",
        "TOSCA_PROPERTY_CMS_PHEDEXNODE": "T1_IT_CNAF_Disk",
    }
    script = CmsOnMesos().configure_script("wn", AGENT, CLUSTER)
    done = subprocess.run(["sh", "-c", script.body], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "CVMFS_HTTP_PROXY=http://10.0.0.9:3128" in (tmp_path / "cvmfs" / "default.local").read_text()
    site = (tmp_path / "cvmfs" / "SITECONF" / "JobConfig" / "site-local-config.xml").read_text()
    assert '<site name="T3_IT_Opportunistic_dodas">' in site and 'value="gfal2"' in site


def test_app_definitions_follow_dodas() -> None:
    props = {
        "htcondor_config_schedd_ip": "10.0.0.3",
        "htcondor_config_ccb_ip": "10.0.0.4",
        "master_ips": ["10.0.0.1", "10.0.0.5"],
        "proxycache_host": "10.0.0.9",
    }
    apps = {a["id"]: a for a in htcondor.htcondor_apps(props, workers=3)}
    assert apps["/condorwn"]["instances"] == 3 and apps["/condorwn"]["args"] == ["wn"]
    assert apps["/condorcm"]["constraints"] == [["hostname", "UNIQUE"], ["hostname", "LIKE", "10.0.0.4"]]
    assert apps["/condorcm"]["env"]["ZOOKEEPER_HOST_LIST"] == "10.0.0.1:2181,10.0.0.5:2181"
    assert apps["/proxycache"]["healthChecks"][0]["gracePeriodSeconds"] == 300
    cms = {a["id"]: a for a in cms_apps({"mysquid_host": "10.0.0.9", "cms_local_site": "T3_X"}, workers=2)}
    assert cms["/cmswnel7"]["env"]["FRONTIER_PROXY"] == "http://10.0.0.9:3128" and cms["/cmswnel7"]["instances"] == 2
    assert ams_execute_apps(props, 2)[0]["container"]["docker"]["image"] == "dodasts/ams"
    spark = dispatcher_app({"zookeeper_peers": ["10.0.0.1"], "spark_executor_mem": "2 GB"})
    assert "--master mesos://zk://10.0.0.1:2181/mesos" in spark["cmd"] and spark["env"]["SPARK_EXECUTOR_MEMORY"] == "2g"
    assert spark_memory("0 GB") == "" and spark_memory("512 MB") == "512m"


def test_generic_marathon_and_chronos_apps() -> None:
    app = marathon_app(
        "/dep/marathon-app",
        {"labels": {"HAPROXY_GROUP": "external"}, "environment_variables": {"A": 1}, "privileged": False},
        "nginx",
        {
            "num_cpus": 0.5,
            "mem_size": 512,
            "publish_ports": [{"protocol": "tcp", "source": 8080}],
            "volumes": ["marathon:/data:rw:dvdi:rexray"],
            "instances": 2,
        },
    )
    assert app["container"]["docker"]["portMappings"][0]["servicePort"] == 8080
    assert app["container"]["volumes"][0]["external"]["options"] == {"dvdi/driver": "rexray"}
    assert app["instances"] == 2 and app["env"] == {"A": "1"} and app["cpus"] == 0.5
    job = chronos_job("nightly", {"command": "echo hi", "schedule": "R/2024-01-01T00:00:00Z/P1D"}, "busybox")
    assert job["schedule"].startswith("R/") and job["container"]["image"] == "busybox"
    assert "schedule" not in chronos_job("child", {"command": "x"}, "busybox", parents=["nightly"])
