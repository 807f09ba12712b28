"""What `grantflow check` and `grantflow simulate` print: rich tables for people, one JSON
object on stdout for scripts."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from grantflow.services.consistency import CheckResult


def print_check(result: CheckResult, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.as_json()))
        return
    console = Console()
    if result.consistent:
        console.print(f"[green]{result.checked} applications checked: workflows and rows agree[/]")
        return
    table = check_table(result)
    console.print(table)
    console.print(
        f"[red]{len(result.disagreements)} disagreements in {result.checked} applications[/]"
    )


def check_table(result: CheckResult) -> Table:
    table = Table(title="Workflows and rows that disagree", title_justify="left")
    for column in ("application", "workflow id", "field", "workflow", "postgres"):
        table.add_column(column, overflow="fold")
    for d in result.disagreements:
        table.add_row(d.application_id, d.workflow_id, d.field, d.workflow, d.database)
    return table


def print_json(figures: dict[str, Any]) -> None:
    print(json.dumps(figures))
