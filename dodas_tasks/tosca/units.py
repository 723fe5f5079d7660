"""TOSCA scalar sizes ("4 GB") read in binary units, as the Infrastructure Manager reads them (4 GB = 4096 MiB)."""

from __future__ import annotations

import re

_FACTORS_MIB = {
    "b": 1 / 1024**2,
    "kb": 1 / 1024,
    "kib": 1 / 1024,
    "mb": 1,
    "mib": 1,
    "gb": 1024,
    "gib": 1024,
    "tb": 1024**2,
    "tib": 1024**2,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)?\s*$")


def size_to_mib(value: object, default_unit: str = "mb") -> float:
    """'4 GB' -> 4096.0; a bare number is read in `default_unit`. Raises ValueError naming the bad value."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int | float):
        return float(value) * _FACTORS_MIB[default_unit]
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size such as '4 GB' or '512 MB'")
    number, unit = match.groups()
    factor = _FACTORS_MIB.get((unit or default_unit).lower())
    if factor is None:
        raise ValueError(f"{value!r} has an unknown size unit {unit!r} (use B, kB, MB, GB, TB)")
    return float(number) * factor


def size_to_gib(value: object) -> float:
    return size_to_mib(value, default_unit="gb") / 1024
