"""Configure nodes over SSH: idempotent shell scripts run on many nodes at once, host keys pinned."""

from dodas_tasks.configure.connect import JumpHost, NodeTarget
from dodas_tasks.configure.errors import (
    AuthenticationRefused,
    ConfigureError,
    JumpHostUnreachable,
    NodesFailed,
    NodeUnreachable,
    ScriptFailed,
    ScriptTimedOut,
    SessionBroken,
)
from dodas_tasks.configure.hostkeys import HostKeyMismatch, KnownHosts, PinnedHostKeyPolicy, host_id
from dodas_tasks.configure.keys import KeyPair, generate_keypair, load_private_key
from dodas_tasks.configure.log_sink import SafeLog, safe_log
from dodas_tasks.configure.payload import script_payload
from dodas_tasks.configure.redaction import redact
from dodas_tasks.configure.runner import ScriptResult, run_on_nodes, run_script
from dodas_tasks.configure.scripts import PRELUDE, render, with_prelude
from dodas_tasks.configure.tunnel import forwarded_port, ssh_banners

__all__ = [
    "PRELUDE",
    "AuthenticationRefused",
    "ConfigureError",
    "HostKeyMismatch",
    "JumpHost",
    "JumpHostUnreachable",
    "KeyPair",
    "KnownHosts",
    "NodeTarget",
    "NodeUnreachable",
    "NodesFailed",
    "PinnedHostKeyPolicy",
    "SafeLog",
    "ScriptFailed",
    "ScriptResult",
    "ScriptTimedOut",
    "SessionBroken",
    "forwarded_port",
    "generate_keypair",
    "host_id",
    "load_private_key",
    "redact",
    "render",
    "run_on_nodes",
    "run_script",
    "safe_log",
    "script_payload",
    "ssh_banners",
    "with_prelude",
]
