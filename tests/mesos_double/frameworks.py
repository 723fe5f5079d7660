"""What the recorder's one-shot framework containers answer: Spark's REST submission client (`spark-submit`).

Mesos support was removed from Spark 4 and no Mesos build of Spark runs here, so this is a double of the Spark
Mesos dispatcher as `spark-submit --master mesos://HOST:7077` sees it through the REST submission protocol:
a create prints a CreateSubmissionResponse with a submissionId, `--status ID` a SubmissionStatusResponse whose
driverState is RUNNING on the first ask and FINISHED afterwards, with the Mesos task status in its message (as
MesosClusterScheduler.getDriverStatus gives it). The driver's task ends as `spark.json`'s "driver_task_state"
says (default TASK_FINISHED). Only the host where Marathon placed /spark-dispatcher answers, on the port the app
requires; any other master URL is refused like a closed port. Submissions are kept in `spark-<host>.json`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from mesos_double.node_services import SharedClusterState

SPARK_VERSION = "2.4.5"


def _log(message: str) -> None:
    """One log4j INFO line of the REST client, on stderr as Spark's console appender writes it."""
    stamp = time.strftime("%y/%m/%d %H:%M:%S")
    print(f"{stamp} INFO RestSubmissionClient: {message}", file=sys.stderr)


def _respond(kind: str, body: dict[str, Any]) -> None:
    _log(f"Server responded with {kind}:\n" + json.dumps({"action": kind, **body}, indent=2, sort_keys=True))


def _value(args: list[str], option: str) -> str:
    return args[args.index(option) + 1] if option in args and args.index(option) + 1 < len(args) else ""


def dispatchers(root: Path, ip: str) -> list[str]:
    """host:port of every /spark-dispatcher task the Marathon on `ip` placed."""
    state = SharedClusterState(root, ip)
    state.refresh()
    app = state.apps.get("/spark-dispatcher")
    if app is None:
        return []
    port = (app.get("portDefinitions") or [{}])[0].get("port", 7077)
    return [f"{host}:{port}" for host in state.place(app)]


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"submissions": {}}


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def spark_submit(root: Path, ip: str, args: list[str]) -> int:
    """`spark-submit --master mesos://HOST:PORT` in cluster mode (create) or with `--status ID`, asked on `ip`."""
    master = _value(args, "--master")
    target = master.removeprefix("mesos://")
    if not master.startswith("mesos://") or target not in dispatchers(root, ip):
        print("Running Spark using the REST application submission protocol.", file=sys.stderr)
        _log(f"Submitting a request to {master}.")
        print(
            'Exception in thread "main" org.apache.spark.deploy.rest.SubmitRestConnectionException: '
            f"Unable to connect to server {master} (dispatchers: {dispatchers(root, ip)})\n"
            "Caused by: java.net.ConnectException: Connection refused (Connection refused)",
            file=sys.stderr,
        )
        return 1
    record = root / f"spark-{target.partition(':')[0]}.json"
    data = _load(record)
    if "--status" in args:
        return _status(root, record, data, master, _value(args, "--status"))
    if _value(args, "--deploy-mode") != "cluster" or not _value(args, "--class"):
        print("Error: the Mesos dispatcher takes cluster-mode submissions with a main class", file=sys.stderr)
        return 1
    submission = f"driver-{time.strftime('%Y%m%d%H%M%S')}-{len(data['submissions']) + 1:04d}"
    data["submissions"][submission] = {"class": _value(args, "--class"), "argv": args, "status_asked": 0}
    _save(record, data)
    print("Running Spark using the REST application submission protocol.", file=sys.stderr)
    _log(f"Submitting a request to launch an application in {master}.")
    _log(f"Submission successfully created as {submission}. Polling submission state...")
    _log(f"Submitting a request for the status of submission {submission} in {master}.")
    _log(f"State of driver {submission} is now QUEUED.")
    _respond(
        "CreateSubmissionResponse",
        {"serverSparkVersion": SPARK_VERSION, "submissionId": submission, "success": True},
    )
    return 0


def _status(root: Path, record: Path, data: dict[str, Any], master: str, submission: str) -> int:
    _log(f"Submitting a request for the status of submission {submission} in {master}.")
    found = data["submissions"].get(submission)
    if found is None:
        body = {"driverState": "NOT_FOUND", "submissionId": submission, "success": False}
        _respond("SubmissionStatusResponse", {"serverSparkVersion": SPARK_VERSION, **body})
        return 0
    found["status_asked"] += 1
    _save(record, data)
    outcome_file = root / "spark.json"
    outcome = json.loads(outcome_file.read_text()) if outcome_file.exists() else {}
    task_state = "TASK_RUNNING" if found["status_asked"] == 1 else outcome.get("driver_task_state", "TASK_FINISHED")
    message = f'task_id {{\n  value: "{submission}"\n}}\nstate: {task_state}\n'
    state = "RUNNING" if task_state == "TASK_RUNNING" else "FINISHED"
    body = {"driverState": state, "message": message, "submissionId": submission, "success": True}
    _respond("SubmissionStatusResponse", {"serverSparkVersion": SPARK_VERSION, **body})
    return 0


def submissions(root: Path, host: str) -> dict[str, dict[str, Any]]:
    """What the dispatcher double on `host` was given: {submissionId: {"class", "argv", "status_asked"}}."""
    return _load(root / f"spark-{host}.json")["submissions"]
