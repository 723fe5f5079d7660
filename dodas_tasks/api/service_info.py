"""The service itself: its name (`GET /`), version (`GET /info`, orchent's `test`) and endpoints
(`GET /configuration`, orchent's `showconf`). Open to anyone, as on the orchestrator: they reveal no deployment."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import Request
from fastapi.responses import PlainTextResponse

from dodas_tasks.api.context import BothSlashesRouter, ContextDep, base_url

router = BothSlashesRouter(tags=["service"])


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@router.get("/", response_class=PlainTextResponse)
def root(ctx: ContextDep) -> str:
    return ctx.settings.display_name


@router.get("/info")
def info(ctx: ContextDep) -> dict:
    return {
        "app": {"name": ctx.settings.display_name, "version": _version("dodas-airflow")},
        "airflow": _version("apache-airflow"),
    }


@router.get("/configuration")
def configuration(request: Request, ctx: ContextDep) -> dict:
    iam = ctx.iam()
    endpoints = {
        "orchestratorUrl": base_url(request),
        "iamUrl": iam.config.issuer if iam is not None else None,
        "iamGroupClaim": iam.config.group_claim if iam is not None else None,
    }
    return {k: v for k, v in endpoints.items() if v is not None}
