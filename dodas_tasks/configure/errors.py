"""Errors of the SSH configurator; every message is already redacted and names the node it is about."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dodas_tasks.configure.runner import ScriptResult


class ConfigureError(Exception):
    """Base of every configuration failure; `node` names the node (or None for several).

    `permanent`: running the step again cannot help (the script itself said no, the node refused our key or
    showed another host key); anything else may be transient, and the idempotent steps are worth running again."""

    permanent = False

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class NodeUnreachable(ConfigureError):
    """The node did not accept SSH connections before its boot deadline."""


class JumpHostUnreachable(NodeUnreachable):
    """A jump host on the way to the node could not be reached or logged in to: this says nothing about the node."""


class AuthenticationRefused(ConfigureError):
    """The node answered but refused our key; retrying would not help."""

    permanent = True


class SessionBroken(ConfigureError):
    """The SSH channel to the node broke while the script ran (network, sshd, VM): running the step again is safe."""


class ScriptTimedOut(ConfigureError):
    """The script ran longer than allowed (often a background job keeping the session's output open)."""


class ScriptFailed(ConfigureError):
    """The script exited non-zero; carries the exit code and the last lines of its (redacted) output."""

    permanent = True

    def __init__(self, node: str, exit_code: int, tail: str, result: ScriptResult) -> None:
        message = f"script on node {node} exited with code {exit_code}"
        if tail:
            message += f"; last output lines:\n{tail}"
        super().__init__(message, node)
        self.exit_code = exit_code
        self.tail = tail
        self.result = result


class NodesFailed(ConfigureError):
    """One or more nodes failed while the others completed; lists every failed node with its reason."""

    def __init__(self, failures: dict[str, ConfigureError], results: dict[str, ScriptResult]) -> None:
        lines = [f"{len(failures)} of {len(failures) + len(results)} node(s) failed:"]
        lines += [f"- {name}: {error}" for name, error in sorted(failures.items())]
        super().__init__("\n".join(lines))
        self.failures = failures
        self.results = results
        self.permanent = all(error.permanent for error in failures.values())
