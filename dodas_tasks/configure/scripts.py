"""Building blocks for idempotent node scripts: a POSIX-sh prelude and templates with shell-quoted values."""

from __future__ import annotations

import shlex
import string
from functools import cache
from importlib import resources
from pathlib import PurePath

PRELUDE = r"""set -eu

# once MARKER CMD...: run CMD the first time only; MARKER (a file) records that it succeeded.
once() {
    _once_marker=$1
    shift
    if [ -e "$_once_marker" ]; then
        return 0
    fi
    "$@" || return $?
    mkdir -p "$(dirname "$_once_marker")"
    : >"$_once_marker"
}

# start_daemon NAME PIDFILE LOGFILE CMD...: start CMD in the background unless PIDFILE names a live process.
# Its output goes to LOGFILE and its stdin is /dev/null, so the SSH session can end while it runs.
start_daemon() {
    _daemon_name=$1
    _daemon_pidfile=$2
    _daemon_logfile=$3
    shift 3
    if [ -s "$_daemon_pidfile" ]; then
        _daemon_pid=$(cat "$_daemon_pidfile")
        if kill -0 "$_daemon_pid" 2>/dev/null; then
            echo "$_daemon_name already running (pid $_daemon_pid)"
            return 0
        fi
    fi
    mkdir -p "$(dirname "$_daemon_pidfile")" "$(dirname "$_daemon_logfile")"
    nohup "$@" >>"$_daemon_logfile" 2>&1 </dev/null &
    echo "$!" >"$_daemon_pidfile"
    echo "$_daemon_name started (pid $!)"
}
"""


class ShellTemplate(string.Template):
    """string.Template with `@{name}` placeholders, so the shell's own `$VAR` and `${VAR}` need no escaping.

    `@@{` gives a literal `@{`; an `@` not followed by `{` is left alone.
    """

    delimiter = "@"
    pattern = r"""
        @(?:
            (?P<escaped>@)(?=\{)                     |
            \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}   |
            (?P<named>(?!))                          |
            (?P<invalid>\{)
        )
    """


def shell_value(value: object) -> str:
    """One shell word holding value literally."""
    if isinstance(value, str | int | float | PurePath) and not isinstance(value, bool):
        return shlex.quote(str(value))
    raise ValueError(f"cannot put a {type(value).__name__} into a shell script; pass a string or number")


def render(template: str, **values: object) -> str:
    """Fill `@{name}` placeholders with shell-quoted values; every placeholder must get a value."""
    shell_template = ShellTemplate(template)
    if not shell_template.is_valid():
        raise ValueError("script template has a malformed placeholder: use @{name} (and @@{ for a literal @{)")
    missing = sorted(set(shell_template.get_identifiers()) - values.keys())
    if missing:
        raise ValueError(f"script template needs values for: {', '.join(missing)}")
    return shell_template.substitute({name: shell_value(value) for name, value in values.items()})


def with_prelude(body: str) -> str:
    """A complete script: `#!/bin/sh`, the prelude (set -eu, once, start_daemon), then body."""
    return "#!/bin/sh\n" + PRELUDE + "\n" + body.strip("\n") + "\n"


@cache
def _packaged_text(package: str, name: str) -> str:
    return resources.files(package).joinpath("scripts", name).read_text()


def packaged_script(package: str, name: str) -> str:
    """A node script shipped in `package`'s scripts/ folder: that folder's common.sh (its shared functions), then
    the named script."""
    return _packaged_text(package, "common.sh") + "\n" + _packaged_text(package, name)
