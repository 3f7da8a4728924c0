"""Auditor commands that read the lifecycle projection: who received a record."""

from __future__ import annotations

from typing import Annotated

import typer

from pcii_vault.cli.output import CliState
from pcii_vault.cli.session import opened

__all__ = ["recipients"]


def recipients(
    ctx: typer.Context, tracking: Annotated[str, typer.Argument(help="Tracking number.")]
) -> None:
    """Everyone who received a record's content: who, when, why, under what authority."""
    state: CliState = ctx.obj
    with opened(state) as vault:
        vault.sync()
        vault.index.record(tracking)
        rows = vault.index.recipients(tracking)
    state.output.rows(
        rows,
        ["principal", "seq", "time", "action", "purpose", "use", "authority"],
        title=f"Recipients of {tracking}",
    )
