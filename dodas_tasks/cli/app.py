"""The `dodas` Typer app, the options several commands share, and how a command fails: one line on stderr and a
non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml

app = typer.Typer(
    help="DODAS on Airflow: a whole cluster on any cloud from one TOSCA template.\n\n"
    "Start with `dodas validate templates/spark_local.yaml` to see what a template needs. The deployment commands "
    "work on this machine's Airflow, or on a remote DODAS service with --url (or DODAS_URL).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Template input as KEY=VALUE; repeat for several.", metavar="KEY=VALUE"),
]
InputsFileOpt = Annotated[
    Path | None, typer.Option("--inputs-file", help="YAML or JSON file with a mapping of inputs.", metavar="FILE")
]


class CommandFailed(Exception):
    """A refusal or failure a command reports as one line (`message`) on stderr before exiting with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    raise CommandFailed(message, code)


def read_inputs(pairs: list[str] | None, inputs_file: Path | None) -> dict[str, Any] | None:
    """Inputs from --inputs-file then -i KEY=VALUE (later wins); None when none were given at all."""
    if not pairs and inputs_file is None:
        return None
    values: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = yaml.safe_load(inputs_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            fail(f"{inputs_file}: cannot read inputs file: {exc}")
        if not isinstance(loaded, dict):
            fail(f"{inputs_file}: the inputs file must hold a mapping of input names to values")
        values.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"-i {pair!r}: expected KEY=VALUE, for example -i number_of_workers=2")
        values[key.strip()] = value
    return values
