"""Auditor commands over the lifecycle projection: who received a record, the checkpoint."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcii_vault.cli.audit import KeyOption, LogOption, TrustedOption, open_reader
from pcii_vault.cli.files import new_output, refuse_existing
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import TRACKING
from pcii_vault.errors import InputError, IntegrityError
from pcii_vault.text import printable, unreadable

if TYPE_CHECKING:
    from pcii_vault.models.event import Event

__all__ = ["checkpoint", "recipients"]


def recipients(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    log: LogOption = None,
    key: KeyOption = None,
    trusted_checkpoint: TrustedOption = None,
) -> None:
    """Everyone who received a record's content: who, when, why, under what authority.

    Read from the log itself, every entry checked against the signed checkpoint (never
    from the local index, which could have been edited). A release the vault logged as
    failed after its permit (`release.failed`) is listed with `delivered` "no" (it still
    counts for notices: part of it may have reached the recipient).
    """
    from pcii_vault.index import Index

    state: CliState = ctx.obj
    if (why := unreadable(tracking)) is not None:
        # Bytes the command line could not decode would fail in the index's SQL.
        raise InputError(f"tracking number '{printable(tracking)}' {why}")
    ledger = open_reader(state, log, key, trusted_checkpoint)
    projection = Index.in_memory()
    failed: dict[object, int] = {}

    def noting_failures(events: Iterable[Event]) -> Iterator[Event]:
        for event in events:
            if event.type == "release.failed" and event.record == tracking:
                failed[event.details.get("access")] = event.seq
            yield event

    try:
        projection.apply_all(noting_failures(ledger.events(0, ledger.size())), strict=False)
        projection.record(tracking)
        rows = [
            {
                **row,
                "delivered": f"no (release.failed, event {failed[row['seq']]})"
                if row["seq"] in failed
                else "yes",
            }
            for row in projection.recipients(tracking)
        ]
    finally:
        projection.close()
    state.output.rows(
        rows,
        ["principal", "seq", "time", "action", "purpose", "use", "authority", "delivered"],
        title=f"Recipients of {tracking}",
    )


def checkpoint(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write the signed checkpoint to this new file.",
            show_default=False,
        ),
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    trusted_checkpoint: TrustedOption = None,
) -> None:
    """Print (or save) the log's current signed checkpoint, to trust later.

    `pcii audit verify --trusted-checkpoint FILE` then proves the log only grew from it:
    no rollback, no fork.
    """
    state: CliState = ctx.obj
    if out is not None:
        refuse_existing(out, "--out")  # before reading the log
    current = open_reader(state, log, key, trusted_checkpoint).checkpoint()
    if current is None:
        raise IntegrityError("the log has no checkpoint yet")
    if out is not None:
        with new_output(out, "--out") as tmp:
            tmp.write_text(current.note, encoding="utf-8")
    state.output.result(
        {
            "size": current.size,
            "root": current.root.hex(),
            "note": current.note,
            "file": str(out) if out else None,
        },
        human=current.note.rstrip("\n")
        if out is None
        else f"checkpoint of size {current.size} written to {out}",
    )
