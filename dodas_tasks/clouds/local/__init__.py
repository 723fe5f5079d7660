"""The embedded local cloud: sandboxes with their own loopback IP and SSH server (see driver.py).

`LocalCloud` is imported lazily so that starting a node server (`python -m …local.nodeserver`) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dodas_tasks.clouds.local.driver import LocalCloud

__all__ = ["LocalCloud"]


def __getattr__(name: str) -> Any:
    if name == "LocalCloud":
        from dodas_tasks.clouds.local.driver import LocalCloud

        return LocalCloud
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
