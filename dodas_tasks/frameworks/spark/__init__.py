"""Spark standalone framework: node scripts, SparkPi verification and the master's load signal."""

from dodas_tasks.frameworks.spark.framework import SparkStandalone, parse_pi, worker_memory_mb
from dodas_tasks.frameworks.spark.state import (
    AppCores,
    SparkStateError,
    load_from_state,
    parse_app_cores,
    read_app_cores,
    read_load,
    read_master_state,
)

__all__ = [
    "AppCores",
    "SparkStandalone",
    "SparkStateError",
    "load_from_state",
    "parse_app_cores",
    "parse_pi",
    "read_app_cores",
    "read_load",
    "read_master_state",
    "worker_memory_mb",
]
