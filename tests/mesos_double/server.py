"""One threaded HTTP(S) server playing the Mesos master, Marathon and Chronos, bound to a loopback address."""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class ClusterState:
    """What the doubles answer from; tests change it directly (under `lock`)."""

    agents: dict[str, bool] = field(default_factory=dict)  # hostname (IP) -> active
    credentials: tuple[str, str] | list[tuple[str, str]] | None = None
    deploy_polls: int = 0  # /v2/deployments polls a deployment stays listed (slow deployments)
    unhealthy: set[str] = field(default_factory=set)  # app ids whose tasks fail their health checks
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, int] = field(default_factory=dict)  # id -> polls left
    puts: list[str] = field(default_factory=list)
    chronos_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # Chronos: name -> job as it answers
    chronos_posts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self) -> None:
        """Called under `lock` before each request: a state shared with other processes reloads here."""

    def changed(self) -> None:
        """Called under `lock` after a PUT changed the apps: a shared state saves them here."""

    def place(self, app: dict[str, Any]) -> list[str]:
        """Hosts for the app's instances: active agents matching its hostname constraints, round robin."""
        hosts = [h for h, active in self.agents.items() if active]
        for constraint in app.get("constraints", []):
            if constraint[0] != "hostname" or len(constraint) < 3:
                continue
            op, value = constraint[1], constraint[2]
            if op == "LIKE":
                hosts = [h for h in hosts if re.fullmatch(value, h)]
            elif op == "UNLIKE":
                hosts = [h for h in hosts if not re.fullmatch(value, h)]
        wanted = int(app.get("instances", 1))
        if not hosts:
            return []
        return [hosts[i % len(hosts)] for i in range(wanted)]


class _Handler(BaseHTTPRequestHandler):
    state: ClusterState

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        expected = self.state.credentials
        if expected is None:
            return True
        pairs = expected if isinstance(expected, list) else [expected]  # e.g. Mesos's and Marathon's
        tokens = {base64.b64encode(f"{user}:{password}".encode()).decode() for user, password in pairs}
        if self.headers.get("Authorization", "").removeprefix("Basic ") in tokens:
            return True
        self._send(401, {"message": "Invalid username or password."})
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/master/health":  # Mesos answers it without authentication (200: the process is up)
            self._send(200, {})
            return
        if not self._authorised():
            return
        with self.state.lock:
            self.state.refresh()
            self._send(*self._get(url.path, parse_qs(url.query)))

    def do_PUT(self) -> None:
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        path = urlsplit(self.path).path
        if not path.startswith("/v2/apps/"):
            self._send(404, {"message": "not found"})
            return
        with self.state.lock:
            self.state.refresh()
            app_id = "/" + path[len("/v2/apps/") :].strip("/")
            deployment = str(uuid.uuid4())
            created = app_id not in self.state.apps
            self.state.apps[app_id] = {**body, "id": app_id, "version": deployment}
            self.state.deployments[deployment] = self.state.deploy_polls
            self.state.puts.append(app_id)
            self.state.changed()
            self._send(201 if created else 200, {"deploymentId": deployment, "version": deployment})

    def do_POST(self) -> None:
        """Chronos: POST /v1/scheduler/iso8601 (scheduled) or /v1/scheduler/dependency (after its parents)."""
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        path = urlsplit(self.path).path
        with self.state.lock:
            jobs = self.state.chronos_jobs
            if path == "/v1/scheduler/dependency":
                missing = [p for p in body.get("parents", []) if p not in jobs]
                if missing or not body.get("parents"):
                    self._send(400, {"message": f"parents not found: {missing or 'none given'}"})
                    return
            elif path != "/v1/scheduler/iso8601" or "schedule" not in body:
                self._send(400 if path == "/v1/scheduler/iso8601" else 404, {"message": f"bad request to {path}"})
                return
            previous = jobs.get(body["name"], {})
            jobs[body["name"]] = {
                **body,
                "successCount": previous.get("successCount", 0),
                "errorCount": previous.get("errorCount", 0),
                "lastSuccess": previous.get("lastSuccess", ""),
                "lastError": previous.get("lastError", ""),
                "disabled": False,
            }
            self.state.chronos_posts.append(body["name"])
        self.send_response(204)
        self.end_headers()

    def do_DELETE(self) -> None:
        """DELETE /v2/apps/{id} or /v2/groups/{id} (?force=true): the apps go, through a deployment."""
        if not self._authorised():
            return
        path = urlsplit(self.path).path
        with self.state.lock:
            self.state.refresh()
            if path.startswith("/v1/scheduler/job/"):
                name = path[len("/v1/scheduler/job/") :]
                children = [j for j, job in self.state.chronos_jobs.items() if name in job.get("parents", [])]
                if name not in self.state.chronos_jobs or children:
                    self._send(404 if not children else 400, {"message": f"job {name}: absent or has {children}"})
                    return
                del self.state.chronos_jobs[name]
                self.send_response(204)
                self.end_headers()
                return
            if path.startswith("/v2/groups/"):
                prefix = "/" + path[len("/v2/groups/") :].strip("/")
                gone = [a for a in self.state.apps if a.startswith(prefix + "/")]
            elif path.startswith("/v2/apps/"):
                gone = [a for a in ["/" + path[len("/v2/apps/") :].strip("/")] if a in self.state.apps]
            else:
                self._send(404, {"message": f"no route {path}"})
                return
            if not gone:
                self._send(404, {"message": f"{path} does not exist"})
                return
            for app_id in gone:
                del self.state.apps[app_id]
            deployment = str(uuid.uuid4())
            self.state.deployments[deployment] = self.state.deploy_polls
            self.state.changed()
            self._send(200, {"deploymentId": deployment, "version": deployment})

    def _get(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        s = self.state
        if path == "/ping":
            return 200, "pong"
        if path == "/v2/info":
            return 200, {"name": "marathon", "version": "1.30.0", "leader": "double:8080"}
        if path == "/master/slaves":
            return 200, {"slaves": [self._agent(h, a) for h, a in s.agents.items()]}
        if path == "/master/state":
            tasks = [t | {"slave_id": f"agent-{t['host']}"} for app in s.apps.values() for t in self._tasks(app)]
            return 200, {
                "slaves": [self._agent(h, a) for h, a in s.agents.items()],
                "frameworks": [{"name": "marathon", "tasks": tasks}],
            }
        if path == "/v2/deployments":
            listed = []
            for dep, left in list(s.deployments.items()):
                if left > 0:
                    s.deployments[dep] = left - 1
                    listed.append({"id": dep})
                else:
                    del s.deployments[dep]
            return 200, listed
        if path == "/v2/queue":
            queue = []
            for app in s.apps.values():
                missing = int(app.get("instances", 1)) - len(s.place(app))
                if missing > 0:
                    queue.append(
                        {
                            "app": app,
                            "count": missing,
                            "processedOffersSummary": {
                                "rejectSummaryLastOffers": [
                                    {"reason": "UnfulfilledConstraint", "declined": 3, "processed": 3}
                                ]
                            },
                        }
                    )
            return 200, {"queue": queue}
        if path == "/v1/scheduler/jobs":
            return 200, list(s.chronos_jobs.values())
        if path == "/v2/apps":
            return 200, {"apps": [self._app(a) for a in s.apps.values()]}
        if path.startswith("/v2/groups/"):
            prefix = "/" + path[len("/v2/groups/") :].strip("/")
            held = [self._app(a) for app_id, a in s.apps.items() if app_id.startswith(prefix + "/")]
            return (
                (200, {"id": prefix, "apps": held}) if held else (404, {"message": f"Group '{prefix}' does not exist"})
            )
        if path.startswith("/v2/apps/"):
            app = s.apps.get("/" + path[len("/v2/apps/") :].strip("/"))
            if app is None:
                return 404, {"message": f"App '{path[8:]}' does not exist"}
            return 200, {"app": self._app(app)}
        return 404, {"message": f"no route {path}"}

    def _agent(self, host: str, active: bool) -> dict[str, Any]:
        return {"id": f"agent-{host}", "hostname": host, "active": active, "resources": {"cpus": 2, "mem": 4096}}

    def _tasks(self, app: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{app['id'].strip('/')}.{i}",
                "host": host,
                "state": "TASK_RUNNING",
                "resources": {"cpus": app.get("cpus", 1)},
            }
            for i, host in enumerate(self.state.place(app))
        ]

    def _app(self, app: dict[str, Any]) -> dict[str, Any]:
        tasks = self._tasks(app)
        unhealthy = app["id"].strip("/") in self.state.unhealthy
        if app.get("healthChecks"):
            for task in tasks:
                task["healthCheckResults"] = [
                    {"alive": not unhealthy, "lastFailureCause": "Command exited with status 1" if unhealthy else None}
                ]
        healthy = 0 if unhealthy or not app.get("healthChecks") else len(tasks)
        return {
            **app,
            "tasks": tasks,
            "tasksRunning": len(tasks),
            "tasksHealthy": healthy,
            "tasksStaged": 0,
            "tasksUnhealthy": len(tasks) - healthy if app.get("healthChecks") else 0,
        }


class ClusterDouble:
    """Mesos master + Marathon double on (host, port), HTTPS with `tls`; stop() shuts the server thread down."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state: ClusterState | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.state = state or ClusterState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
