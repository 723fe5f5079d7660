"""The `dodas` command line as a user runs it: exit codes, stdout/stderr, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPARK = REPO / "templates" / "spark_local.yaml"


def dodas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dodas_tasks.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_validate_ok_lists_stages_and_needed_inputs(tmp_path: Path) -> None:
    needs = tmp_path / "needs.yaml"
    needs.write_text(SPARK.read_text().replace('      default: "ubuntu-22.04"\n', ""))
    result = dodas("validate", str(needs))
    assert result.returncode == 0, result.stderr
    assert "deploy: spark_master, spark_worker" in result.stdout
    assert "inputs a submission must give:" in result.stdout and "server_image" in result.stdout


def test_validate_with_inputs_file_and_flags(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("number_of_workers: 5\n")
    result = dodas("validate", str(SPARK), "--inputs-file", str(inputs), "-i", "worker_cpus=2")
    assert result.returncode == 0, result.stderr
    assert "spark-worker-server: count 5" in result.stdout and "2 cpu" in result.stdout


def test_validate_errors_exit_2_on_stderr_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPARK.read_text().replace("tosca.nodes.indigo.dodas.SparkWorker", "tosca.nodes.DODAS.Worker"))
    result = dodas("validate", str(bad), "-i", "number_of_workers=lots")
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{bad}:" in result.stderr and "tosca.nodes.DODAS.Worker" in result.stderr
    assert "'number_of_workers' = 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_unreadable_and_malformed_arguments(tmp_path: Path) -> None:
    missing = dodas("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read template" in missing.stderr
    bad_flag = dodas("validate", str(SPARK), "-i", "novalue")
    assert bad_flag.returncode == 2 and "expected KEY=VALUE" in bad_flag.stderr
    for result in (missing, bad_flag):
        assert "Traceback" not in result.stderr


def test_compile_prints_plan_json() -> None:
    result = dodas("compile", str(SPARK), "-i", "number_of_workers=3")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["version"] == 1
    assert {g["name"]: g["count"] for g in plan["groups"]} == {"spark-master-server": 1, "spark-worker-server": 3}


def test_help_names_every_command() -> None:
    result = dodas("--help")
    assert result.returncode == 0
    for command in ("validate", "compile", "submit", "list", "status", "scale", "undeploy", "demo"):
        assert command in result.stdout
