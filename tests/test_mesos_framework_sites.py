"""Site settings and checks the framework end-to-end runs needed: where worker-node scripts write (etc_dir), and
Spark on Mesos's check following its SparkPi driver to the end instead of trusting the submission."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dodas_tasks.frameworks.ams import AmsOnMesos
from dodas_tasks.frameworks.base import Cluster, Node, Script, ScriptResult, VerificationFailed
from dodas_tasks.frameworks.cms import CmsOnMesos, cms_apps
from dodas_tasks.frameworks.registry import check_options
from dodas_tasks.frameworks.spark_mesos import SparkOnMesos, driver_status, submission_id

MASTER, AGENT = Node("master", "10.0.0.1"), Node("agent", "10.0.0.2")
CLUSTER = Cluster({"services": (MASTER,)})
DRIVER = "driver-20240101000000-0001"


def rest_log(kind: str, body: dict[str, object]) -> str:
    """What Spark's REST submission client logs for a server response (log4j INFO on the console)."""
    return (
        "Running Spark using the REST application submission protocol.\n"
        f"24/01/01 00:00:00 INFO RestSubmissionClient: Server responded with {kind}:\n"
        + json.dumps({"action": kind, "serverSparkVersion": "2.4.5", **body}, indent=2)
        + "\n"
    )


def status(state: str, task: str = "") -> str:
    message = f'task_id {{\n  value: "{DRIVER}"\n}}\nstate: {task}\n' if task else ""
    return rest_log("SubmissionStatusResponse", {"driverState": state, "message": message, "success": True})


class FakeMaster:
    """A Runner for the master node: Marathon (through the curl script) and spark-submit's answers in turn."""

    def __init__(self, created: str, statuses: list[str]) -> None:
        self.created, self.statuses, self.asked = created, statuses, 0

    def __call__(self, node: Node, script: Script) -> ScriptResult:
        assert node == MASTER
        if script.name == "marathon-request":
            if script.env["DODAS_PATH"].startswith("/v2/queue"):
                return ScriptResult(0, json.dumps({"queue": []}) + "\n200\n", "")
            task = {"id": "spark-dispatcher.1", "host": AGENT.ip, "state": "TASK_RUNNING"}
            app = {"id": "/spark-dispatcher", "instances": 1, "tasks": [task], "tasksRunning": 1}
            return ScriptResult(0, json.dumps({"app": app}) + "\n200\n", "")
        if script.name == "spark-mesos-pi":
            return ScriptResult(0, self.created, "")
        assert script.name == "spark-mesos-status" and script.env["SUBMISSION"] == DRIVER
        assert script.env["DISPATCHER"] == f"{AGENT.ip}:7077"
        self.asked += 1
        return ScriptResult(0, self.statuses[min(self.asked, len(self.statuses)) - 1], "")


CREATED = rest_log("CreateSubmissionResponse", {"submissionId": DRIVER, "success": True})


def test_spark_check_follows_the_driver_until_it_finishes() -> None:
    master = FakeMaster(
        CREATED, [status("QUEUED"), status("RUNNING", "TASK_RUNNING"), status("FINISHED", "TASK_FINISHED")]
    )
    verified = SparkOnMesos(poll_seconds=0).verify(CLUSTER, master)
    assert master.asked == 3
    assert verified.summary == f"dispatcher healthy, SparkPi driver {DRIVER} FINISHED through {AGENT.ip}:7077"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([status("FINISHED", "TASK_FAILED")], f"driver {DRIVER} on {AGENT.ip}:7077 ended TASK_FAILED: task_id"),
        ([status("KILLED")], f"driver {DRIVER} on {AGENT.ip}:7077 ended KILLED"),
        (
            [rest_log("SubmissionStatusResponse", {"driverState": "NOT_FOUND", "success": False})],
            "ended NOT_FOUND",
        ),
        ([status("RUNNING", "TASK_RUNNING")], "still RUNNING after 0 s (frameworks.spark-mesos.driver_timeout)"),
    ],
)
def test_spark_check_fails_on_a_driver_that_does_not_finish(answers: list[str], expected: str) -> None:
    """Mesos's dispatcher calls every ended driver FINISHED: the Mesos task state tells a failed one."""
    with pytest.raises(VerificationFailed, match=r"^spark-mesos: SparkPi ") as failed:
        SparkOnMesos(poll_seconds=0, driver_timeout=0).verify(CLUSTER, FakeMaster(CREATED, answers))
    assert expected in str(failed.value)


def test_spark_check_fails_when_the_dispatcher_refuses_the_submission() -> None:
    refused = rest_log("CreateSubmissionResponse", {"message": "Malformed request", "success": False})
    with pytest.raises(VerificationFailed, match=re.escape(f"SparkPi submission through {AGENT.ip}:7077 failed")):
        SparkOnMesos(poll_seconds=0).verify(CLUSTER, FakeMaster(refused, []))
    assert submission_id(CREATED) == DRIVER and driver_status("no answer") == ("", "")


@pytest.fixture
def agent_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home


def run_locally(script: Script, home: Path, props: dict[str, str]) -> None:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", **script.env, **props}
    done = subprocess.run(["sh", "-c", script.body], env=env, capture_output=True, text=True, cwd=home)
    assert done.returncode == 0, done.stderr


def test_worker_node_configuration_goes_where_the_site_says(agent_home: Path, tmp_path: Path) -> None:
    """etc_dir: a relative path is under the agent user's home (rootless agents, tests never write /etc)."""
    cms = CmsOnMesos(etc_dir="site-etc").configure_script("wn", AGENT, CLUSTER)
    props = ("MYSQUID_HOST", "CMS_LOCAL_SITE", "CMS_STAGEOUTPROTOCOL", "CMS_STAGEOUTSITE", "CMS_STAGEOUTCOMMAND")
    run_locally(cms, agent_home, {f"TOSCA_PROPERTY_{p}": "10.0.0.9" for p in (*props, "CMS_PHEDEXNODE")})
    assert "http://10.0.0.9:3128" in (agent_home / "site-etc/cvmfs/default.local").read_text()
    ams = AmsOnMesos(etc_dir=str(tmp_path / "abs")).configure_script("wn", AGENT, CLUSTER)
    repo = {
        "TOSCA_PROPERTY_AMS_REPO_PUBLIC_KEY": "KEY",
        "TOSCA_PROPERTY_AMS_REPO_REPOSITORY_NAME": "ams.cern.ch",
        "TOSCA_PROPERTY_AMS_DEFAULT_SQUID": "10.0.0.9",
        "TOSCA_PROPERTY_AMS_REPO_SERVER_URL": "http://s/cvmfs/@fqrn@",
    }
    run_locally(ams, agent_home, repo)
    conf = (tmp_path / "abs/cvmfs/config.d/ams.cern.ch.conf").read_text()
    assert f"CVMFS_PUBLIC_KEY={tmp_path}/abs/cvmfs/keys/ams.cern.ch.pub" in conf
    # the CMS workers mount the SITECONF the wn role wrote, when the site's etc_dir is a host path; volumes are the
    # container's (Marathon has no container.docker.volumes: there they were not mounted)
    container = cms_apps({}, 1, "/srv/etc/")[2]["container"]
    assert "volumes" not in container["docker"]
    volumes = {v["containerPath"]: v["hostPath"] for v in container["volumes"]}
    assert volumes["/etc/cvmfs/SITECONF"] == "/srv/etc/cvmfs/SITECONF" and volumes["/cvmfs"] == "/cvmfs"
    options = {"frameworks": {"cms-mesos": {"etc_dir": "x"}, "ams-mesos": {"etc_dir": "/y"}}}
    assert (
        check_options({**options, "frameworks": {**options["frameworks"], "spark-mesos": {"driver_timeout": 5}}}) == []
    )
