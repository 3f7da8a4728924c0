"""Analyst commands: retrieve a record under policy, search what you may see."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import (
    DEFAULT_USE,
    PURPOSE_HELP,
    TRACKING,
    USE_HELP,
    check_purpose,
    check_sectors,
    check_use,
    suggest,
)
from pcii_vault.cli.progress import release_progress
from pcii_vault.errors import InputError

__all__ = ["get", "search"]


def get(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    purpose: Annotated[str, typer.Option("--purpose", metavar="TEXT", help=PURPOSE_HELP)],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory to write the release into, as DIR/TRACKING (which must be new).",
        ),
    ],
    use: Annotated[str, typer.Option("--use", metavar="USE", help=USE_HELP)] = DEFAULT_USE,
    authority: Annotated[
        str | None,
        typer.Option(
            "--authority",
            metavar="EXCEPTION",
            help="A 6 CFR 29.8(f) disclosure exception, when you invoke one: "
            "criminal-investigation, submitter, congress, gao or dhs-oig.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Retrieve a record: the policy decides, the log records, the release is marked."""
    from pcii_vault.cli.render import release_row, release_summary
    from pcii_vault.cli.session import client
    from pcii_vault.models.reference import reference_data

    check_purpose(purpose)
    check_use(use)
    if authority is not None:
        exceptions = {e.id for e in reference_data().disclosure_exceptions}
        name = authority.removeprefix("exception:")
        if name not in exceptions:
            raise InputError(f"--authority must be one of: {', '.join(sorted(exceptions))}")
        # Invoking a 29.8(f) exception is itself the intended use the policies check.
        authority, use = f"exception:{name}", "disclosure-exception"
    state: CliState = ctx.obj
    with client(state) as me, release_progress(state.output) as progress:
        release = me.release(
            out,
            action="retrieve",
            tracking=tracking,
            purpose=purpose,
            use=use,
            authority=authority,
            progress=progress,
        )
    state.output.result(release_row(release), human=release_summary(release))


def search(
    ctx: typer.Context,
    sector: Annotated[
        list[str] | None,
        typer.Option(
            "--sector",
            metavar="SECTOR",
            help="Only this sector (repeatable).",
            show_default=False,
        ),
    ] = None,
    state_filter: Annotated[
        str | None,
        typer.Option(
            "--state", metavar="STATE", help="Only records in this state.", show_default=False
        ),
    ] = None,
    purpose: Annotated[
        str,
        typer.Option(
            "--purpose",
            metavar="TEXT",
            help="Why you are searching (the policies require one).",
        ),
    ] = "find records within my need to know",
    use: Annotated[str, typer.Option("--use", metavar="USE", help=USE_HELP)] = DEFAULT_USE,
) -> None:
    """List the records you may act on (metadata only)."""
    from pcii_vault.cli.render import record_row
    from pcii_vault.cli.session import client

    check_purpose(purpose)
    check_use(use)
    sectors = check_sectors(sector or [])
    if state_filter is not None:
        _check_state(state_filter)
    # "categorical", as policies and denials name it: validated by categorical inclusion.
    categorical = state_filter == _CATEGORICAL
    state: CliState = ctx.obj
    with client(state) as me:
        records = me.search(
            purpose=purpose,
            use=use,
            sector=sectors[0] if len(sectors) == 1 else None,
            state="validated" if categorical else state_filter,
        )
    records = [
        r
        for r in records
        if (not sectors or r.sector in sectors) and (not categorical or r.categorical)
    ]
    state.output.rows(
        [record_row(r) for r in records],
        ["tracking_number", "state", "sector", "tlp", "received_at"],
        title="Records you may see",
    )


_CATEGORICAL = "categorical"


def _check_state(value: str) -> None:
    """Refuse a `--state` that is no record state (it would match nothing, silently).

    Raises:
        InputError: naming the closest state, and every state.
    """
    from pcii_vault.lifecycle import SEARCH_STATES

    states = list(SEARCH_STATES)
    if value not in states:
        hint = suggest(value, states)
        raise InputError(
            f"--state {value!r} is not a record state{hint}; one of: {', '.join(states)}"
        )
