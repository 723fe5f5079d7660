"""Request and response bodies of the orchestrator API (the deployment itself: deploy/orchestrator_view.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, model_validator

from dodas_tasks.deploy.orchestrator_resources import ResourceBody
from dodas_tasks.deploy.orchestrator_view import DeploymentResource, Link


class DeploymentRequest(BaseModel):
    """The orchestrator's DeploymentRequest (POST creates, PUT updates); unknown fields are ignored as it does."""

    template: str = Field(min_length=1, description="TOSCA template (YAML text)")
    parameters: dict[str, Any] = Field(default_factory=dict, description="TOSCA inputs")
    callback: AnyHttpUrl | None = Field(None, description="http(s) URL POSTed the deployment at each final state")
    timeoutMins: int | None = Field(None, ge=1, description="overall time allowed (recorded)")
    providerTimeoutMins: int | None = Field(None, ge=1, description="time a cloud may take to boot the VMs")
    maxProvidersRetry: int | None = Field(None, ge=1, description="how many clouds (DODAS_CLOUDS, in order) to try")
    keepLastAttempt: bool = Field(False, description="keep what the last failed cloud created instead of deleting it")
    userGroup: str | None = Field(None, min_length=1, description="share with the members of this IAM group")

    @model_validator(mode="after")
    def provider_timeout_within_timeout(self) -> DeploymentRequest:
        if self.timeoutMins and self.providerTimeoutMins and self.providerTimeoutMins > self.timeoutMins:
            raise ValueError(
                f"providerTimeoutMins ({self.providerTimeoutMins}) must not exceed timeoutMins ({self.timeoutMins})"
            )
        return self


class StatusPatch(BaseModel):
    """PATCH body: the only change allowed resets a deletion stuck in progress."""

    model_config = {"extra": "forbid"}

    status: Literal["DELETE_FAILED"]


class PageInfo(BaseModel):
    size: int
    totalElements: int
    totalPages: int
    number: int


class DeploymentPageBody(BaseModel):
    """Spring HATEOAS paged resources, as orchent reads them."""

    content: list[DeploymentResource]
    links: list[Link]
    page: PageInfo


class ResourcePageBody(BaseModel):
    content: list[ResourceBody]
    links: list[Link]
    page: PageInfo
