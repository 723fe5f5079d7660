"""Deployment ids as users type them: the full UUID or its first 8+ characters (the short id in DAG names).

Every door (CLI, DAG params, REST API) resolves what it was given through Store.resolve_id, so a prefix, a
malformed id and an ambiguous prefix are accepted or refused the same way everywhere, each with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MIN_ID_PREFIX = 8  # the short id the DAG names show
MAX_CANDIDATES = 10  # an ambiguous prefix lists at most this many of the deployments it matches
_HEX = re.compile(r"^[0-9a-f]+$")


class DeploymentIdError(LookupError):
    """A typed id that names no single deployment; the message says why in one line."""


class MalformedDeploymentId(DeploymentIdError, ValueError):
    """Not something a deployment id (or an 8+ character prefix of one) can be."""


class AmbiguousDeploymentId(DeploymentIdError):
    """An id prefix that several deployments start with; ``candidates`` lists (some of) them."""

    def __init__(self, prefix: str, candidates: Sequence[str]) -> None:
        self.candidates = list(candidates)
        shown = ", ".join(self.candidates[:MAX_CANDIDATES])
        more = " ..." if len(self.candidates) > MAX_CANDIDATES else ""
        super().__init__(
            f"deployment id prefix {prefix!r} is ambiguous: it matches {shown}{more}; give more characters"
        )


def id_prefix(reference: str) -> str:
    """The hexadecimal digits of a typed id (case and dashes ignored); MalformedDeploymentId says what is wrong."""
    text = str(reference).strip().lower()
    digits = text.replace("-", "")
    if not digits or not _HEX.match(digits) or len(digits) > 32:
        raise MalformedDeploymentId(
            f"{reference!r} is not a deployment id: ids are UUIDs such as 96ef7b8a-0c1d-4e5f-8a9b-0123456789ab "
            f"(or their first {MIN_ID_PREFIX}+ characters)"
        )
    if len(digits) < MIN_ID_PREFIX:
        raise MalformedDeploymentId(
            f"deployment id {reference!r} is too short: give at least {MIN_ID_PREFIX} characters"
        )
    return digits
