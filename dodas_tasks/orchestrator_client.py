"""A client of the orchestrator-compatible REST API (dodas_tasks/api/, served under /dodas/orchestrator of Airflow's
api-server) over httpx: what `dodas` talks to with --url / DODAS_URL.

Answers come back as the same models the API serves (deploy/orchestrator_view.py, orchestrator_resources.py);
every failure is an OrchestratorError whose message is one line a user can act on.
"""

from __future__ import annotations

from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from dodas_tasks.deploy.orchestrator_resources import ResourceBody
from dodas_tasks.deploy.orchestrator_view import API_PREFIX, DeploymentResource, LogEntry, parse_log

PAGE_SIZE = 1000  # the API's largest page: a listing takes one request for most users
M = TypeVar("M", bound=BaseModel)


class OrchestratorError(RuntimeError):
    """The API refused a request (`status`: its HTTP status, `title` the title of its error body), or could not be
    reached or understood (`title` None)."""

    def __init__(self, message: str, status: int | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.title = title


def api_url(url: str) -> str:
    """The API's own URL from what a user gives: the api-server's address (the Airflow UI's, e.g.
    http://host:8080), to which the API's prefix is added, or the API's URL itself (ending with /dodas/orchestrator,
    as orchent's ORCHENT_URL holds it), taken as it is."""
    base = url.strip().rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise OrchestratorError(f"{url!r} is not an http(s) URL: give the DODAS api-server's address")
    return base if parts.path.endswith(API_PREFIX) else base + API_PREFIX


class OrchestratorClient:
    """One user's calls to the API: `token` goes in every request's Authorization header (never in a message)."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = api_url(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"OrchestratorClient({self.url!r})"

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- deployments -----------------------------------------------------------------------------------------

    def deployments(self) -> list[DeploymentResource]:
        """Every deployment the caller may see (not deleted ones), oldest first."""
        return [DeploymentResource.model_validate(d) for d in self._pages("/deployments", {"sort": "createdAt,asc"})]

    def deployment(self, reference: str) -> DeploymentResource:
        """One deployment by its id or its first 8+ characters."""
        return self._model(DeploymentResource, self._call("GET", _deployment_path(reference)))

    def create(
        self,
        template: str,
        parameters: dict[str, Any],
        user_group: str | None = None,
        callback: str | None = None,
    ) -> DeploymentResource:
        body: dict[str, Any] = {"template": template, "parameters": parameters}
        if user_group:
            body["userGroup"] = user_group
        if callback:
            body["callback"] = callback
        return self._model(DeploymentResource, self._call("POST", "/deployments", json=body))

    def update(self, reference: str, template: str, parameters: dict[str, Any]) -> DeploymentResource:
        """A template update (a changed scalable count scales; parameters merge into the old inputs)."""
        answer = self._call("PUT", _deployment_path(reference), json={"template": template, "parameters": parameters})
        return self._model(DeploymentResource, answer)

    def delete(self, reference: str) -> None:
        self._call("DELETE", _deployment_path(reference))

    def template(self, reference: str) -> str:
        return self._call("GET", f"{_deployment_path(reference)}/template").text

    def resources(self, reference: str, node_type: str | None = None) -> list[ResourceBody]:
        """The deployment's node instances (VMs, then the components on them), of one TOSCA type if given."""
        params = {"type": node_type} if node_type else {}
        found = self._pages(f"{_deployment_path(reference)}/resources", params)
        return [ResourceBody.model_validate(r) for r in found]

    def log(self, reference: str) -> list[LogEntry]:
        return parse_log(self._call("GET", f"{_deployment_path(reference)}/log").text)

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        number = 0
        while True:
            body = self._json(self._call("GET", path, params={**params, "page": number, "size": PAGE_SIZE}))
            try:
                items += body["content"]
                pages = int(body["page"]["totalPages"])
            except (KeyError, TypeError, ValueError):
                raise self._not_the_api(f"GET {path}") from None
            number += 1
            if number >= pages:
                return items

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise OrchestratorError(
                f"the DODAS service at {self.url} did not answer within {self._http.timeout.read} s"
            ) from None
        except httpx.TransportError as exc:
            raise OrchestratorError(
                f"cannot reach the DODAS service at {self.url}: {exc or type(exc).__name__}"
            ) from None
        if response.is_error:
            raise self._refusal(method, path, response)
        return response

    def _refusal(self, method: str, path: str, response: httpx.Response) -> OrchestratorError:
        """The API's own error body ({code, title, message}); anything else means the URL is not the API."""
        status = response.status_code
        try:
            body = response.json()
            return OrchestratorError(str(body["message"]), status, str(body.get("title") or _phrase(status)))
        except (ValueError, KeyError, TypeError):
            return OrchestratorError(
                f"{method} {self.url}{path} answered HTTP {status} {_phrase(status)}, not as the orchestrator API: "
                "is it the DODAS api-server's address?",
                status,
            )

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._not_the_api(f"{response.request.method} {response.request.url.path}") from None

    def _model(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate(self._json(response))
        except ValidationError:
            raise self._not_the_api(f"{response.request.method} {response.request.url.path}") from None

    def _not_the_api(self, what: str) -> OrchestratorError:
        return OrchestratorError(
            f"{what} at {self.url} did not answer as the orchestrator API: is it the DODAS api-server's address?"
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "(unknown status)"


def _deployment_path(reference: str) -> str:
    """/deployments/<id>, the id quoted so that whatever was typed stays one path segment."""
    return f"/deployments/{quote(reference.strip(), safe='')}"
