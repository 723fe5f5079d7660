"""Elasticity and healing settings: from the template where TOSCA carries them, else submit options, else defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# What each setting means, for the DAG docs (seconds unless said otherwise).
HELP = {
    "poll_interval": "seconds between two reads of the framework's load",
    "backlog_window": "seconds demand must stay unmet before nodes are added",
    "idle_time": "seconds a worker must stay idle before it is removed",
    "cooldown": "seconds after a scaling action before the next one",
    "max_booting": "most nodes requested and not yet serving at any time",
    "grace": (
        "seconds a running VM may fail its SSH or framework check before it is replaced "
        "(a VM the cloud reports gone, in ERROR or stopped is replaced at once)"
    ),
    "backoff": "first wait after a failed scale-out or replacement (doubles each time)",
    "backoff_max": "longest wait between two attempts after failures",
}


@dataclass(frozen=True)
class ElasticSettings:
    """The knobs of the autoscaler and of healing; defaults follow CLUES/INDIGO where they exist."""

    poll_interval: float = 2.0  # CLUES polls every 5 s; 2 s keeps the p95 reaction under 15 s
    backlog_window: float = 5.0
    idle_time: float = 300.0  # INDIGO's CLUES IDLE_TIME
    cooldown: float = 30.0
    max_booting: int = 4
    grace: float = 60.0
    backoff: float = 30.0
    backoff_max: float = 900.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElasticSettings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def markdown(self) -> str:
        """A table for doc_md."""
        rows = "\n".join(f"| {k} | {v:g} | {HELP[k]} |" for k, v in self.to_dict().items())
        return f"| setting | value | meaning |\n|---|---|---|\n{rows}"


class SettingError(ValueError):
    """A setting that is not a positive number; the message names it and where it came from."""


def resolve(template: dict[str, Any] | None, options: dict[str, Any] | None) -> ElasticSettings:
    """Template settings (Plan.elasticity.settings) win, then the deployment's submit options, then defaults."""
    template, options = template or {}, options or {}
    values: dict[str, Any] = {}
    for f in fields(ElasticSettings):
        for source, where in ((template, "template"), (options, "submit options")):
            if source.get(f.name) is None:
                continue
            values[f.name] = _number(source[f.name], f.name, where, int if f.name == "max_booting" else float)
            break
    return ElasticSettings(**values)


def _number(value: Any, name: str, where: str, kind: type) -> float | int:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name}={value!r} in the {where} is not a number; give {HELP[name]}") from None
    if number <= 0 if name != "backlog_window" else number < 0:
        raise SettingError(f"{name}={value!r} in the {where} must be positive ({HELP[name]})")
    return number
