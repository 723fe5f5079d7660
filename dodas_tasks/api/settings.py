"""Settings of the orchestrator-compatible REST API, read once from the environment by the plugin."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ADMIN_GROUPS_VARIABLE = "DODAS_API_ADMIN_GROUPS"


@dataclass(frozen=True)
class ApiSettings:
    """admin_groups: members of any of these IAM groups (the IAM connection's group claim) see and act on every
    deployment. Page sizes follow Spring Data, which the orchestrator's clients expect (default 10)."""

    admin_groups: frozenset[str] = field(default_factory=frozenset)
    display_name: str = "DODAS on Airflow (INDIGO PaaS orchestrator API)"
    default_page_size: int = 10
    max_page_size: int = 1000

    @classmethod
    def from_env(cls) -> ApiSettings:
        """DODAS_API_ADMIN_GROUPS: comma-separated group names (a leading '/' of WLCG groups is ignored)."""
        raw = os.environ.get(ADMIN_GROUPS_VARIABLE, "")
        return cls(admin_groups=frozenset(g.strip().lstrip("/") for g in raw.split(",") if g.strip()))
