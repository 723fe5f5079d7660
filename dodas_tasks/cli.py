"""The `dodas` command line: validate and compile TOSCA templates (submit, status, demo come with the Airflow layer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.compiler import plan_stages
from dodas_tasks.tosca.errors import DodasTemplateError
from dodas_tasks.tosca.plan import Plan

app = typer.Typer(
    help="DODAS on Airflow: a whole cluster on any cloud from one TOSCA template.\n\n"
    "Start with `dodas validate templates/spark_local.yaml` to see what a template needs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TemplateArg = Annotated[Path, typer.Argument(help="TOSCA template file (YAML).", show_default=False)]
InputOpt = Annotated[
    list[str] | None,
    typer.Option("--input", "-i", help="Template input as KEY=VALUE; repeat for several.", metavar="KEY=VALUE"),
]
InputsFileOpt = Annotated[
    Path | None, typer.Option("--inputs-file", help="YAML or JSON file with a mapping of inputs.", metavar="FILE")
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def read_inputs(pairs: list[str] | None, inputs_file: Path | None) -> dict[str, Any] | None:
    """Inputs from --inputs-file then -i KEY=VALUE (later wins); None when none were given at all."""
    if not pairs and inputs_file is None:
        return None
    values: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = yaml.safe_load(inputs_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            _fail(f"{inputs_file}: cannot read inputs file: {exc}")
        if not isinstance(loaded, dict):
            _fail(f"{inputs_file}: the inputs file must hold a mapping of input names to values")
        values.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"-i {pair!r}: expected KEY=VALUE, for example -i number_of_workers=2")
        values[key.strip()] = value
    return values


def compile_file(template: Path, inputs: dict[str, Any] | None) -> Plan:
    try:
        text = template.read_text()
    except OSError as exc:
        _fail(f"{template}: cannot read template: {exc.strerror}")
    try:
        return compile_template(text, inputs, source=str(template))
    except DodasTemplateError as exc:
        _fail(exc.report())
    raise AssertionError("unreachable")


@app.command()
def validate(template: TemplateArg, input: InputOpt = None, inputs_file: InputsFileOpt = None) -> None:
    """Check a template (and inputs, if given); print its groups, components and stages.

    Exit 0 when it can be deployed, 2 with every problem listed on stderr when not. Without inputs the template
    alone is checked and the inputs a submission must give are listed.
    """
    plan = compile_file(template, read_inputs(input, inputs_file))
    typer.echo(f"{template}: OK")
    typer.echo(summary(plan))


@app.command("compile")
def compile_command(template: TemplateArg, input: InputOpt = None, inputs_file: InputsFileOpt = None) -> None:
    """Print the Plan (JSON) that a submission of this template would be deployed from."""
    plan = compile_file(template, read_inputs(input, inputs_file))
    json.dump(plan.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")


def summary(plan: Plan) -> str:
    lines = ["compute groups:"]
    for g in plan.groups:
        size = ", ".join(
            x for x in (f"{g.num_cpus} cpu" if g.num_cpus else "", f"{g.mem_mb} MiB" if g.mem_mb else "") if x
        )
        lines.append(
            f"  {g.name}: count {g.count} (min {g.min_count}, max {g.max_count}){' — ' + size if size else ''}"
        )
    lines.append("stages:")
    for stage, names in plan_stages(plan).items():
        lines.append(f"  {stage}: {', '.join(names) or '-'}")
    if plan.elasticity.enabled:
        e = plan.elasticity
        lines.append(f"elastic: group {e.group} between {e.min_count} and {e.max_count} nodes ({e.source})")
    needed = [i for i in plan.inputs if i.name in plan.missing_inputs]
    if needed:
        lines.append("inputs a submission must give:")
        lines += [f"  {i.name} ({i.type}){' — ' + i.description if i.description else ''}" for i in needed]
    secret = [i.name for i in plan.inputs if i.secret]
    if secret:
        lines.append(f"secret inputs (stored encrypted, never shown): {', '.join(secret)}")
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
