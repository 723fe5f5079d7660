"""What is sent to a node's shell on stdin: quoted exports, then the script, read whole before it runs."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

REMOTE_COMMAND = "if command -v bash >/dev/null 2>&1; then exec bash -s; else exec /bin/sh -s; fi"
"""The only command line sent to the node; it holds no values, the script and its inputs come on stdin."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def export_lines(env: Mapping[str, str]) -> str:
    """`export NAME='value'` lines; values are shell-quoted, so `$(...)`, backticks and quotes stay literal."""
    lines = []
    for name, value in env.items():
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"environment variable name {name!r} is not a valid shell name: "
                "use letters, digits and underscores, not starting with a digit"
            )
        if not isinstance(value, str):
            raise ValueError(f"environment variable {name} must be a string, got {type(value).__name__}")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def script_payload(script: str, env: Mapping[str, str] | None = None) -> str:
    """Exports and script inside one `{ ... } </dev/null` group.

    The shell parses the whole group before running any of it, so a command in the script that reads
    stdin cannot swallow the rest of the script, and a truncated transfer runs nothing.
    """
    exports = export_lines(env or {})
    body = script if script.endswith("\n") else script + "\n"
    return "{\n" + (exports + "\n" if exports else "") + body + "} </dev/null\n"
