"""Idempotency tokens for RunInstances: a retried or restarted create of a slot finds the instance it made."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from dodas_tasks.naming import PREFIX, TAG_ATTEMPT, TAG_DEPLOYMENT, TAG_GROUP, TAG_INDEX


def slot_key(tags: Mapping[str, str], name: str) -> str:
    """(deployment, group, index, attempt) of a server, hashed: the base of its ClientTokens."""
    parts = [
        tags.get(TAG_DEPLOYMENT, ""),
        tags.get(TAG_GROUP, ""),
        tags.get(TAG_INDEX, name),
        tags.get(TAG_ATTEMPT, "0"),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:40]


def client_token(slot: str, link: int) -> str:
    """The n-th token of a slot's chain (a token AWS already spent on a dead instance moves us to the next)."""
    return f"{PREFIX}{slot}-{link}"  # ≤ 64 ASCII characters, as AWS requires
