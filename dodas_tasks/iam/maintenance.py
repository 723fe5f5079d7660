"""Keep stored refresh tokens alive and find the dead ones before a 3 a.m. scale-out does (orchestrator#299)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from dodas_tasks.iam.client import IamClient
from dodas_tasks.iam.delegation import mark_token_failure
from dodas_tasks.iam.errors import IamError, RefreshTokenRevoked
from dodas_tasks.iam.token_source import TokenSource
from dodas_tasks.store import Store

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """Counts only (it goes to XCom): never a token."""

    checked: int = 0
    renewed: int = 0
    rotated: int = 0
    revoked: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def refresh_all(store: Store, iam: IamClient) -> RefreshReport:
    """Refresh every live deployment's token once: store rotations, mark revoked ones, report the rest."""
    report = RefreshReport()
    for deployment in store.list_deployments(live_only=True):
        if not deployment.has_refresh_token or deployment.owner_issuer.rstrip("/") != iam.config.issuer:
            continue
        report.checked += 1
        try:
            rotated = TokenSource(store, deployment.id, iam).refresh_now()
        except RefreshTokenRevoked as exc:
            report.revoked += 1
            reason = mark_token_failure(store, deployment.id, exc)
            log.warning("deployment %s: %s", deployment.id, reason)
            continue
        except IamError as exc:
            report.failed += 1
            mark_token_failure(store, deployment.id, exc)
            log.warning("deployment %s: token refresh failed: %s", deployment.id, exc)
            continue
        report.renewed += 1
        report.rotated += int(rotated)
        store.add_event(deployment.id, "token", "refresh token renewed at the IdP" + (" (rotated)" if rotated else ""))
    log.info("token refresh: %s", report.as_dict())
    return report
