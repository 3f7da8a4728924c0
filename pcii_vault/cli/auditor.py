"""Auditor commands over the lifecycle projection: who received a record, a log report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from pcii_vault.cli.audit import KeyOption, LogOption, open_log
from pcii_vault.cli.output import CliState
from pcii_vault.errors import InputError, IntegrityError
from pcii_vault.history import HistoryAuditor
from pcii_vault.index import Index
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event

__all__ = ["checkpoint", "recipients", "report"]


def recipients(
    ctx: typer.Context,
    tracking: Annotated[str, typer.Argument(help="Tracking number.")],
    log: LogOption = None,
    key: KeyOption = None,
) -> None:
    """Everyone who received a record's content: who, when, why, under what authority.

    Read from the log itself, every entry checked against the signed checkpoint (never
    from the local index, which could have been edited).
    """
    state: CliState = ctx.obj
    store, origin, verifier = open_log(state, log, key)
    ledger = Ledger(store, origin, signer=None, verifier=verifier.public_key)
    projection = Index.in_memory()
    try:
        projection.apply_all(ledger.events(0, ledger.size()), strict=False)
        projection.record(tracking)
        rows = projection.recipients(tracking)
    finally:
        projection.close()
    state.output.rows(
        rows,
        ["principal", "seq", "time", "action", "purpose", "use", "authority"],
        title=f"Recipients of {tracking}",
    )


def report(ctx: typer.Context, log: LogOption = None, key: KeyOption = None) -> None:
    """A self-inspection report from the verified log: events, denials, releases, states."""
    state: CliState = ctx.obj
    store, _, verifier = open_log(state, log, key)
    auditor = HistoryAuditor(store)
    history = auditor.index
    by_type: Counter[str] = Counter()
    denials: Counter[str] = Counter()

    def tally(event: Event) -> None:
        auditor(event)  # the legal-history check and decision replay of `audit verify`
        by_type[event.type] += 1
        if event.decision == "deny":
            denials[event.actor] += 1

    try:
        verified = verify_log(store, verifier, event_checker=tally)
        auditor.finish()
        records = history.records()
        data: dict[str, Any] = {
            "size": verified.size,
            "root": verified.checkpoint.root.hex(),
            "events_by_type": dict(sorted(by_type.items())),
            "denials_by_principal": dict(sorted(denials.items())),
            "records_by_state": dict(sorted(Counter(r.state for r in records).items())),
            "releases_by_record": {
                r.tracking: len(history.recipients(r.tracking)) for r in records
            },
            "principals_by_status": dict(
                sorted(Counter(p.status for p in history.principals()).items())
            ),
        }
    finally:
        auditor.close()
    if state.output.json_mode:
        state.output.result(data)
        return
    state.output.note(f"log verified: {data['size']} events, root {data['root']}")
    for title in (
        "events_by_type",
        "denials_by_principal",
        "records_by_state",
        "releases_by_record",
        "principals_by_status",
    ):
        counts: dict[str, int] = data[title]
        state.output.rows(
            [{"name": name, "count": count} for name, count in counts.items()],
            ["name", "count"],
            title=title.replace("_", " "),
        )


def checkpoint(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the signed checkpoint to this file.")
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
) -> None:
    """Print (or save) the log's current signed checkpoint, to trust later.

    `pcii audit verify --trusted-checkpoint FILE` then proves the log only grew from it:
    no rollback, no fork.
    """
    state: CliState = ctx.obj
    store, origin, verifier = open_log(state, log, key)
    current = Ledger(store, origin, signer=None, verifier=verifier.public_key).checkpoint()
    if current is None:
        raise IntegrityError("the log has no checkpoint yet")
    if out is not None:
        try:
            with out.open("x", encoding="utf-8") as handle:
                handle.write(current.note)
        except FileExistsError as exc:
            raise InputError(f"{out} already exists; choose another --out") from exc
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
