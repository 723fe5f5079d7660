"""`dodas validate` and `dodas compile`: a TOSCA template checked and compiled on this machine, nothing deployed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dodas_tasks.cli.app import InputOpt, InputsFileOpt, app, fail, read_inputs
from dodas_tasks.tosca.compiler import compile as compile_template
from dodas_tasks.tosca.compiler import plan_stages
from dodas_tasks.tosca.errors import DodasTemplateError
from dodas_tasks.tosca.plan import NodeGroup, Plan

TemplateArg = Annotated[Path, typer.Argument(help="TOSCA template file (YAML).", show_default=False)]


def compile_file(template: Path, inputs: dict[str, Any] | None) -> Plan:
    try:
        text = template.read_text()
    except OSError as exc:
        fail(f"{template}: cannot read template: {exc.strerror}")
    try:
        return compile_template(text, inputs, source=str(template))
    except DodasTemplateError as exc:
        fail(exc.report())


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
    placed = [g for g in plan.groups if g.availability_zone or g.sla_id]
    if placed:
        lines.append("placement:")
        lines += [f"  {g.name}: " + ", ".join(_placement(g)) for g in placed]
    if plan.warnings:
        lines.append("warnings (accepted, as the INDIGO orchestrator did, but ignored):")
        lines += [f"  {w}" for w in plan.warnings]
    return "\n".join(lines)


def _placement(group: NodeGroup) -> list[str]:
    zone = [f"zone {group.availability_zone}"] if group.availability_zone else []
    return zone + ([f"SLA {group.sla_id} (its site is chosen at submission)"] if group.sla_id else [])
