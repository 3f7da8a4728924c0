"""Program office commands: review, validate, reject, mark deficient, decontrol, destroy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import (
    PURPOSE_HELP,
    TRACKING,
    check_purpose,
    refuse_undecodable,
    suggest,
)
from pcii_vault.cli.progress import release_progress
from pcii_vault.errors import InputError
from pcii_vault.text import unreadable, visible

if TYPE_CHECKING:
    from pcii_vault.models.acts import ActParams
    from pcii_vault.models.event import EventType

__all__ = ["app", "decontrol", "deficient", "destroy", "reject", "review", "validate"]

app = CliTyper(help="Program office work lists.", no_args_is_help=True)

_REASON = typer.Option("--reason", metavar="TEXT", help="Why (recorded in the log).")
# `office due --within`: a century is far beyond any 30-day deadline, and a date that far
# ahead is still one Python can represent.
MAX_WITHIN_DAYS = 36500
# The grounds of 6 CFR 29.6(e); tests check this list against the reference data.
GROUNDS = (
    "not-cii",
    "not-voluntary",
    "public-domain",
    "in-lieu-of-regulation",
    "statement-or-certification-missing",
)


def _require_reason(reason: str) -> None:
    refuse_undecodable("--reason", reason)
    if not reason.strip() or not visible(reason):
        raise InputError("--reason must not be empty: it is recorded in the log")
    if why := unreadable(reason, lines=True):
        raise InputError(f"--reason {why}: state it in plain text")


def _transition(
    ctx: typer.Context,
    tracking: str,
    action: str,
    event_type: EventType,
    params: ActParams,
) -> None:
    from pcii_vault.cli.render import record_line, record_row
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        record = me.transition(tracking, action, event_type, params)
    state.output.result(record_row(record), human=record_line(record))


def review(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Directory for the marked, decrypted copy, as DIR/TRACKING (which must be new).",
        ),
    ],
    purpose: Annotated[
        str, typer.Option("--purpose", metavar="TEXT", help=PURPOSE_HELP)
    ] = "validation review",
) -> None:
    """Decrypt a submission for review (logged, marked)."""
    from pcii_vault.cli.render import release_row, release_summary
    from pcii_vault.cli.session import client

    check_purpose(purpose)
    state: CliState = ctx.obj
    with client(state) as me, release_progress(state.output) as progress:
        release = me.release(
            out, action="review", tracking=tracking, purpose=purpose, progress=progress
        )
    state.output.result(release_row(release), human=release_summary(release))


def validate(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    categorical: Annotated[
        bool, typer.Option("--categorical", help="Validated by categorical inclusion.")
    ] = False,
) -> None:
    """Validate a submission as PCII."""
    from pcii_vault.models.acts import ValidateParams

    params = ValidateParams(categorical=categorical)
    _transition(ctx, tracking, "validate", "submission.validated", params)


def reject(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    ground: Annotated[
        str,
        typer.Option(
            "--ground",
            metavar="GROUND",
            help=f"Ground for non-validation: {', '.join(GROUNDS)}.",
        ),
    ],
    reason: Annotated[str, _REASON],
    final: Annotated[
        bool, typer.Option("--final", help="The final decision (after the 30-day answer period).")
    ] = False,
) -> None:
    """Find a submission not PCII (initially; with --final, finally)."""
    from pcii_vault.models.reference import reference_data

    grounds = [g.id for g in reference_data().non_validation_grounds]
    if ground not in grounds:
        raise InputError(
            f"--ground {ground!r} is not a ground{suggest(ground, grounds)}; "
            f"one of: {', '.join(grounds)}"
        )
    _require_reason(reason)
    event: EventType = "submission.final-not-pcii" if final else "submission.rejected"
    from pcii_vault.models.acts import RejectParams

    params = RejectParams.of(ground=ground, reason=reason, final=final)
    _transition(ctx, tracking, "reject", event, params)


def deficient(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    reason: Annotated[str, _REASON],
) -> None:
    """Notify the submitter that the statement or certification is deficient (30 days to cure)."""
    _require_reason(reason)
    from pcii_vault.models.acts import ReasonParams

    params = ReasonParams.of(reason=reason)
    _transition(ctx, tracking, "mark-deficient", "submission.deficient", params)


def decontrol(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    basis: Annotated[
        str,
        typer.Option(
            "--basis",
            metavar="BASIS",
            help="submitter-request (the submitter asked in writing) or customarily-public "
            "(it was customarily in the public domain when submitted).",
        ),
    ],
    reason: Annotated[str, _REASON],
) -> None:
    """Decontrol a record on a basis 6 CFR 29 allows; every earlier recipient gets a notice."""
    from pcii_vault.models.acts import DECONTROL_BASES, DecontrolParams

    if basis not in DECONTROL_BASES:
        raise InputError(
            f"--basis {basis!r} is not a basis for decontrol{suggest(basis, DECONTROL_BASES)}; "
            f"one of: {', '.join(DECONTROL_BASES)}"
        )
    _require_reason(reason)
    params = DecontrolParams.of(basis=basis, reason=reason)
    _transition(ctx, tracking, "decontrol", "record.decontrolled", params)


def destroy(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    reason: Annotated[str, _REASON],
) -> None:
    """Destroy a record by crypto-shredding its data key (logged first)."""
    from pcii_vault.cli.render import record_line, record_row
    from pcii_vault.cli.session import client

    _require_reason(reason)
    state: CliState = ctx.obj
    with client(state) as me:
        record = me.destroy(tracking, reason)
    state.output.result(record_row(record), human=record_line(record))


@app.command("due")
def due(
    ctx: typer.Context,
    within: Annotated[
        int,
        typer.Option(
            "--within",
            metavar="DAYS",
            min=0,
            max=MAX_WITHIN_DAYS,
            help=f"Window in days from now (0 to {MAX_WITHIN_DAYS}).",
        ),
    ] = 7,
) -> None:
    """Items whose 30-day deadlines (6 CFR 29) fall within the window, overdue ones included."""
    from datetime import UTC, datetime

    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        until = datetime.now(UTC) + timedelta(days=within)
        rows = [
            {
                "tracking_number": d.tracking,
                "state": d.state,
                "due": d.due.isoformat(),
                "what": d.what,
            }
            for d in me.deadlines(until)
        ]
    state.output.rows(rows, ["tracking_number", "state", "due", "what"], title="Due")
