"""Template errors that help: every problem found, each with where it is and how to fix it, in one report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class TemplateProblem:
    """One thing wrong with a submission."""

    kind: str  # yaml | import | input | unknown_type | unsupported_type | cycle | function | tosca
    message: str
    node: str | None = None  # node template, input or output name
    line: int | None = None  # 1-based line in the template, when known
    column: int | None = None
    hint: str | None = None  # how to fix it
    type_name: str | None = None  # for unknown/unsupported types: the TOSCA type refused
    path: tuple[Any, ...] = ()  # YAML path of the culprit; turned into line/column only when reporting

    def render(self, source: str = "template") -> str:
        where = source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: [{self.kind}] {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class DodasTemplateError(Exception):
    """A template or its inputs cannot be deployed; `problems` lists every reason found."""

    def __init__(self, problems: list[TemplateProblem], source: str = "template") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(self.report())

    def report(self) -> str:
        head = f"{self.source}: {len(self.problems)} problem(s) found, nothing was deployed"
        return "\n".join([head, *(p.render(self.source) for p in self.problems)])

    def to_list(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(p).items() if k != "path"} for p in self.problems]

    @property
    def unsupported_types(self) -> list[str]:
        """Type names refused because the project cannot deploy them (unknown or unsupported)."""
        return sorted({p.type_name for p in self.problems if p.type_name})
