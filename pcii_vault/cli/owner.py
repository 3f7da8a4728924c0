"""Owner commands: submit an assessment, follow its status, withdraw it, check a receipt."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState, Output
from pcii_vault.cli.params import TRACKING, path_argument, refuse_undecodable
from pcii_vault.cli.progress import progress_bar, short_name
from pcii_vault.errors import InputError, IntegrityError

if TYPE_CHECKING:
    from pcii_vault.client import Client
    from pcii_vault.receipt import Receipt

__all__ = ["receipt_app", "status", "submit", "withdraw"]

receipt_app = CliTyper(help="Submitters' receipts.", no_args_is_help=True)


def submit(
    ctx: typer.Context,
    assessment: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            parser=path_argument,
            help="The assessment JSON file (start from `pcii submission template`).",
            show_default=False,
        ),
    ],
    attach: Annotated[
        list[Path] | None,
        typer.Option(
            "--attach",
            metavar="FILE",
            help="An attachment the assessment describes (repeatable).",
            show_default=False,
        ),
    ] = None,
    receipt_out: Annotated[
        Path | None,
        typer.Option(
            "--receipt-out",
            metavar="FILE",
            help="Write the receipt (with its inclusion proof) to this new file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Validate, encrypt and submit an assessment; prints its tracking number."""
    from pcii_vault.cli.session import client
    from pcii_vault.submitter import check_attachments, read_document

    state: CliState = ctx.obj
    attachments = check_attachments(list(attach or []))
    document = read_document(assessment)
    if receipt_out is not None:
        _claim_receipt_path(receipt_out)  # before anything is sent
    try:
        with client(state) as me:
            receipt = _submit(state, me, document=document, attachments=attachments)
    except BaseException as exc:
        # Handed to the vault already (interrupted, or failing once it may be logged)?
        # The note names its tracking number.
        state.already_done.extend(getattr(exc, "__notes__", ()))
        raise
    # The submission is logged: its tracking number is printed whatever happens next (on
    # stderr with the error, when stdout cannot be written or the command is interrupted).
    state.already_done.append(
        f"({receipt.tracking_number} is submitted, log index {receipt.log_index}: "
        "do not submit it again)"
    )
    written = None
    problem = None
    if receipt_out is not None:
        from pcii_vault.durable import new_file_via_temporary

        try:
            # Through a temporary file beside it: whole under its name, or not at all.
            text = json.dumps(receipt.to_json(), indent=2) + "\n"
            with new_file_via_temporary(receipt_out, mode=0o600) as tmp:
                tmp.write_text(text, encoding="utf-8")
            written = str(receipt_out)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                exc.strerror = "another file was put there meanwhile"
            problem = (
                f"{receipt.tracking_number} is submitted (log index {receipt.log_index}), but "
                f"its receipt could not be written to {receipt_out} ({exc.strerror}): do not "
                f"submit it again; an auditor proves it with `pcii audit prove --index "
                f"{receipt.log_index}`"
            )
    data = {
        "tracking_number": receipt.tracking_number,
        "log_index": receipt.log_index,
        "files": list(receipt.files),
        "receipt": written,
    }
    if problem is not None and state.output.json_mode:
        # One JSON object on stdout, as for any error: the submission with the error in it.
        state.output.result({**data, "error": problem, "exit_code": InputError.exit_code})
        raise typer.Exit(InputError.exit_code)
    state.output.result(data, human=receipt.tracking_number)
    if problem is not None:
        state.already_done.clear()  # the problem names the submission already
        raise InputError(problem)  # an output path that failed: exit 2, as for any


def _claim_receipt_path(path: Path) -> None:
    """Check, before any upload, that the receipt can be written there.

    Nothing is left under its name: a submit killed part-way leaves no empty receipt.
    """
    from pcii_vault.durable import temp_name

    try:
        if os.path.lexists(path):
            raise InputError(f"{path} already exists: refusing to overwrite a receipt")
        probe = temp_name(path)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise InputError(f"cannot write the receipt to {path}: {exc.strerror}") from exc
    probe.unlink(missing_ok=True)


def _attachment_bytes(attachments: list[Path]) -> int:
    """The bytes to send, for the progress bar (the files were checked, yet may go since).

    Raises:
        InputError: an attachment vanished or became unreadable after it was checked.
    """
    total = 0
    for path in attachments:
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            raise InputError(f"attachment {path} not found") from None
        except OSError as exc:
            raise InputError(f"cannot read attachment {path}: {exc.strerror}") from None
    return total


def _submit(state: CliState, me: Client, *, document: bytes, attachments: list[Path]) -> Receipt:
    total = _attachment_bytes(attachments)
    # One 80-column line: the file being sent, a short bar, bytes, speed and time left.
    with progress_bar(state.output if attachments else Output(json_mode=True)) as bar:
        task = bar.add_task("encrypting", total=total) if bar is not None else None

        def advance(name: str, done: int) -> None:
            if bar is not None and task is not None:
                bar.update(task, advance=done, description=short_name(name))

        return me.submit(document, attachments, progress=advance)


def status(ctx: typer.Context, tracking: Annotated[str, TRACKING]) -> None:
    """Show a submission's state (its submitter and the program office)."""
    from pcii_vault.cli.render import record_line, record_row
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        record = me.status(tracking)
    state.output.result(record_row(record), human=record_line(record))


def withdraw(
    ctx: typer.Context,
    tracking: Annotated[str, TRACKING],
    reason: Annotated[
        str, typer.Option("--reason", metavar="TEXT", help="Why (recorded in the log).")
    ] = "",
) -> None:
    """Withdraw your submission before the final decision (its data key is destroyed)."""
    from pcii_vault.cli.render import record_line, record_row
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    from pcii_vault.models.acts import ReasonParams

    refuse_undecodable("--reason", reason)
    with client(state) as me:
        params = ReasonParams.of(reason=reason)
        record = me.transition(tracking, "withdraw", "submission.withdrawn", params)
    state.output.result(record_row(record), human=record_line(record))


@receipt_app.command("verify")
def receipt_verify(
    ctx: typer.Context,
    receipt: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            parser=path_argument,
            help="The receipt file from `pcii submit`.",
            show_default=False,
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY|FILE",
            help="The log's verifier key string, or a file holding it (default: the vault's).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Check a receipt offline: its event is in the log the vault's key signed."""
    from pcii_vault.receipt import verify_receipt

    state: CliState = ctx.obj
    data = _read_receipt(receipt)
    try:
        verified = verify_receipt(data, _log_key(state, key))
    except IntegrityError as exc:  # which file failed, when several are checked in a row
        raise IntegrityError(f"receipt {receipt}: {exc}") from exc
    state.output.result(
        {
            "tracking_number": verified.tracking_number,
            "log_index": verified.log_index,
            "checkpoint_size": verified.checkpoint_size,
            "files": list(verified.files),
            "verified": True,
        },
        human=f"receipt verified: {verified.tracking_number} is entry {verified.log_index} "
        f"of a log of {verified.checkpoint_size} signed by the vault",
    )


def _read_receipt(path: Path) -> bytes:
    from pcii_vault.cli.files import read_given_file, refuse_other_document

    data = read_given_file(path, "receipt")
    refuse_other_document(data, path, "pcii-receipt/1", "a pcii receipt")
    return data


def _log_key(state: CliState, key: str | None) -> str:
    from pcii_vault.cli.audit import read_key
    from pcii_vault.config import VaultConfig, VaultPaths

    if key is not None:
        return read_key(key).key_string()  # as every command's --key: a string or a file
    if state.server is not None:
        from pcii_vault.service.transport import HttpTransport

        server = HttpTransport(state.server, ca=state.ca, identity=None)
        try:
            return server.info().log_key
        finally:
            server.close()
    if state.vault is None:
        raise InputError("give --key (the log's verifier key) or --vault")
    return VaultConfig.load(VaultPaths(state.vault).config).log_key
