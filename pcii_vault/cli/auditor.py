"""Auditor commands over the lifecycle projection: who received a record, a log report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from pcii_vault.cli.audit import KeyOption, LogOption, open_log
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import TRACKING
from pcii_vault.errors import InputError, IntegrityError

__all__ = ["checkpoint", "recipients", "report"]


def recipients(ctx: typer.Context, tracking: Annotated[str, TRACKING]) -> None:
    """Everyone who received a record's content: who, when, why, under what authority."""
    from pcii_vault.cli.session import opened

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


def report(ctx: typer.Context, log: LogOption = None, key: KeyOption = None) -> None:
    """A self-inspection report from the verified log: events, denials, releases, states."""
    from pcii_vault.index import Index
    from pcii_vault.ledger.verify import verify_log
    from pcii_vault.models.event import Event

    state: CliState = ctx.obj
    store, _, verifier = open_log(state, log, key)
    history = Index.in_memory()
    by_type: Counter[str] = Counter()
    denials: Counter[str] = Counter()

    def tally(event: Event) -> None:
        history.apply(event)  # the legal-history check, as in `audit verify`
        by_type[event.type] += 1
        if event.decision == "deny":
            denials[event.actor] += 1

    try:
        verified = verify_log(store, verifier, event_checker=tally)
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
        history.close()
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
) -> None:
    """Print (or save) the log's current signed checkpoint, to trust later.

    `pcii audit verify --trusted-checkpoint FILE` then proves the log only grew from it:
    no rollback, no fork.
    """
    from pcii_vault.ledger.log import Ledger

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
