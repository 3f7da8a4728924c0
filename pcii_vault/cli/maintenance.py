"""`pcii maintenance`: finish what crashes left half-done, remove what never became a record."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated

import typer

from pcii_vault.cli.output import CliState

__all__ = ["maintenance"]

# 100 years: more keeps everything anyway, and an infinite or huge grace would overflow
# the time arithmetic (a traceback, exit 1) instead of being refused as bad input.
_MAX_GRACE_HOURS = 876_000


def _grace(hours: float) -> float:
    # Checked here, not by the option's range: NaN is outside every range, and was told
    # to be at most 876000.
    if math.isnan(hours):
        raise typer.BadParameter("not a number of hours")
    if not 0 <= hours <= _MAX_GRACE_HOURS:
        raise typer.BadParameter(f"{hours:g} is not between 0 and {_MAX_GRACE_HOURS} hours")
    return hours


def maintenance(
    ctx: typer.Context,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List what would be finished or removed; change nothing."),
    ] = False,
    grace_hours: Annotated[
        float,
        typer.Option(
            "--grace-hours",
            metavar="HOURS",
            callback=_grace,
            help="Leave uploads and leftovers younger than this (an act in flight).",
        ),
    ] = 24.0,
) -> None:
    """Finish shredding that a crash interrupted; remove orphaned uploads and leftovers."""
    from pcii_vault.cli.session import opened

    state: CliState = ctx.obj
    with opened(state) as vault:
        done = vault.maintain(grace=timedelta(hours=grace_hours), dry_run=dry_run)
    verb = "would finish" if dry_run else "finished"
    gone = "would remove" if dry_run else "removed"
    state.output.result(
        {
            "dry_run": done.dry_run,
            "unfinished_shreds": list(done.unfinished_shreds),
            "orphans": list(done.orphans),
            "stale_claims": list(done.stale_claims),
            "leftovers": list(done.leftovers),
            "kept": list(done.kept),
            "policy_texts": list(done.policy_texts),
        },
        f"{verb} shredding {len(done.unfinished_shreds)} records; {gone} "
        f"{len(done.orphans)} orphaned objects, {len(done.stale_claims)} committed or forged "
        "claims, "
        f"{len(done.leftovers)} temporary files, empty record folders or unfinished uploads"
        + (f"; kept {len(done.kept)} (locked by the store)" if done.kept else "")
        + (
            f"; {'would write' if dry_run else 'wrote'} again the text of the policy set "
            "in force, deleted or changed in the store"
            if done.policy_texts
            else ""
        ),
    )
    for item in (*done.unfinished_shreds, *done.orphans, *done.leftovers, *done.policy_texts):
        state.output.note(f"  {item}")
