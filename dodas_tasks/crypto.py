"""Encrypt secrets at rest with the same Fernet key(s) Airflow uses, so one key rotation covers both.

Key source, first found wins: env AIRFLOW__CORE__FERNET_KEY; Airflow's ``[core] fernet_key`` (through
``airflow.configuration.conf`` when airflow is loaded or the key is indirect, else read from airflow.cfg);
else a key generated once at ``dodas_home()/fernet.key`` (mode 0600).
Several comma-separated keys mean rotation (as in Airflow): the first encrypts, all are tried to decrypt.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import sys
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from dodas_tasks.settings import dodas_home

KEY_FILE_NAME = "fernet.key"


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with the configured key(s) — usually the key changed."""


def encrypt(plaintext: str) -> str:
    """Encrypt a string; the result is URL-safe ASCII, safe for a text column."""
    return _cipher(_configured_keys()).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt what ``encrypt`` produced; raise SecretDecryptionError (never showing the token) if it cannot."""
    try:
        return _cipher(_configured_keys()).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise SecretDecryptionError(
            "cannot decrypt a stored secret with the configured Fernet key(s). If the key was rotated, put the new "
            "key first and keep the old one after it, comma-separated, in AIRFLOW__CORE__FERNET_KEY "
            f"(or [core] fernet_key); the generated fallback key lives at {dodas_home() / KEY_FILE_NAME}."
        ) from None


def key_file_path() -> Path:
    """Where the generated fallback key is (or will be) kept."""
    return dodas_home() / KEY_FILE_NAME


def _configured_keys() -> str:
    """The comma-separated key string from the first source that has one."""
    return os.environ.get("AIRFLOW__CORE__FERNET_KEY", "").strip() or _airflow_config_key() or _file_key()


def _airflow_config_key() -> str:
    """Airflow's [core] fernet_key, read the way Airflow would; empty if Airflow has none.

    Importing airflow costs seconds, so a process that has not imported it yet reads airflow.cfg directly, unless
    the key is indirect (fernet_key_cmd / fernet_key_secret), which only Airflow itself can resolve.
    """
    if "airflow.configuration" in sys.modules or _key_is_indirect():
        return _key_from_airflow_conf()
    return _read_airflow_cfg().get("fernet_key", "").strip()


def _key_from_airflow_conf() -> str:
    try:
        from airflow.configuration import conf  # lazy: heavy, and optional for the library
    except Exception:
        return ""
    try:
        return (conf.get("core", "fernet_key", fallback="") or "").strip()
    except Exception:
        return ""


def _key_is_indirect() -> bool:
    indirect = ("fernet_key_cmd", "fernet_key_secret")
    if any(os.environ.get(f"AIRFLOW__CORE__{name.upper()}") for name in indirect):
        return True
    core = _read_airflow_cfg()
    return any(core.get(name, "").strip() for name in indirect)


def _read_airflow_cfg() -> dict[str, str]:
    """The [core] section of airflow.cfg (AIRFLOW_CONFIG, else $AIRFLOW_HOME/airflow.cfg); empty if absent."""
    airflow_home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    path = Path(os.environ.get("AIRFLOW_CONFIG") or Path(airflow_home) / "airflow.cfg")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error):
        return {}
    return dict(parser["core"]) if parser.has_section("core") else {}


def _file_key() -> str:
    """Read the fallback key file, creating it atomically (0600) on first use; racing processes agree."""
    path = key_file_path()
    if not path.exists():
        temp = path.with_name(f".{KEY_FILE_NAME}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won the race: we read theirs
                os.link(temp, path)  # atomic: the key appears complete or not at all
        finally:
            temp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


@lru_cache(maxsize=8)
def _cipher(keys: str) -> MultiFernet:
    """Build (once per key string) the MultiFernet; the first key encrypts."""
    parts = [part.strip() for part in keys.split(",") if part.strip()]
    try:
        return MultiFernet([Fernet(part.encode("ascii")) for part in parts])
    except (ValueError, UnicodeError):
        raise ValueError(
            "the configured Fernet key is not valid: it must be 32 url-safe base64-encoded bytes (make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`); "
            "several keys are separated by commas"
        ) from None
