"""/delegations (a DODAS extension): delegate your IAM access token ahead of a submission made elsewhere.

The token is validated and exchanged here, in the api-server, and answered with a one-time handle that a
`dodas_submit` run names in its `delegation` field: the access token itself never enters a DAG run's conf, so no
Airflow table ever holds it (the orchestrator's POST /deployments needs no handle: it delegates directly).
"""

from __future__ import annotations

from fastapi.responses import JSONResponse

from dodas_tasks.api.context import BothSlashesRouter, CallerDep, ContextDep
from dodas_tasks.api.errors import ApiError
from dodas_tasks.iam import IamError, IdpUnreachable, InvalidToken, delegate_ahead

router = BothSlashesRouter(tags=["delegations"])


@router.post("/delegations", status_code=201)
def create_delegation(ctx: ContextDep, caller: CallerDep) -> JSONResponse:
    """Exchange the caller's IAM access token for a delegation the service keeps; answers the handle that names it
    in one submission within 15 minutes (`delegation` of dodas_submit), the owner and the handle's expiry."""
    iam = ctx.iam()
    if caller.access_token is None or iam is None:
        raise ApiError(400, "only an IAM access token can be delegated: authenticate with your IAM token (Bearer)")
    try:
        pending = delegate_ahead(ctx.store, iam, caller.access_token)
    except InvalidToken as exc:
        raise ApiError(401, str(exc)) from None
    except IdpUnreachable as exc:
        raise ApiError(503, f"the IAM service cannot delegate your token now: {exc}") from None
    except IamError as exc:
        raise ApiError(403, f"the IAM service did not delegate your token: {exc}") from None
    body = {
        "delegation": pending.handle,
        "createdBy": f"{pending.subject}@{pending.issuer}",
        "expiresAt": pending.expires_at.isoformat(),
    }
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})
