"""Owner commands: submit an assessment, follow its status, withdraw it, check a receipt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from pcii_vault.cli.output import CliState
from pcii_vault.cli.render import record_row
from pcii_vault.cli.session import acting
from pcii_vault.config import VaultConfig, VaultPaths
from pcii_vault.errors import InputError
from pcii_vault.identity import Identity
from pcii_vault.receipt import Receipt, verify_receipt
from pcii_vault.submitter import check_attachments, read_document, upload
from pcii_vault.vault import Vault

__all__ = ["receipt_app", "status", "submit", "withdraw"]

receipt_app = typer.Typer(help="Submitters' receipts.", no_args_is_help=True)


def submit(
    ctx: typer.Context,
    assessment: Annotated[Path, typer.Argument(help="The assessment JSON file.")],
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", help="An attachment (repeatable).")
    ] = None,
    receipt_out: Annotated[
        Path | None, typer.Option("--receipt-out", help="Where to write the receipt.")
    ] = None,
) -> None:
    """Validate, encrypt and submit an assessment; prints its tracking number."""
    state: CliState = ctx.obj
    attachments = check_attachments(list(attach or []))
    document = read_document(assessment)
    if receipt_out is not None:
        _claim_receipt_path(receipt_out)  # before anything is sent
    try:
        with acting(state) as (vault, me):
            receipt = _submit(state, vault, me, document=document, attachments=attachments)
    except BaseException:
        if receipt_out is not None:
            receipt_out.unlink(missing_ok=True)
        raise
    # The submission is logged: its tracking number is printed whatever happens next.
    written = None
    if receipt_out is not None:
        try:
            receipt_out.write_text(json.dumps(receipt.to_json(), indent=2) + "\n")
            written = str(receipt_out)
        except OSError as exc:
            state.output.note(
                f"warning: the receipt could not be written to {receipt_out} "
                f"({exc.strerror}); `pcii audit prove --index {receipt.log_index}` proves "
                "the submission"
            )
    state.output.result(
        {
            "tracking_number": receipt.tracking_number,
            "log_index": receipt.log_index,
            "files": list(receipt.files),
            "receipt": written,
        },
        human=receipt.tracking_number,
    )


def _claim_receipt_path(path: Path) -> None:
    """Create the receipt file now (empty), so an unusable path fails before any upload."""
    try:
        path.open("x", encoding="utf-8").close()
    except FileExistsError as exc:
        raise InputError(f"{path} already exists: refusing to overwrite a receipt") from exc
    except OSError as exc:
        raise InputError(f"cannot write the receipt to {path}: {exc.strerror}") from exc


def _submit(
    state: CliState, vault: Vault, me: Identity, *, document: bytes, attachments: list[Path]
) -> Receipt:
    vault.check_identity(me)
    tracking = vault.new_tracking_number()
    total = sum(p.stat().st_size for p in attachments)
    show = bool(attachments) and not state.output.json_mode and state.output.errors.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=state.output.errors,
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task("encrypting and uploading", total=total)
        sealed = upload(
            vault.store,
            vault_id=vault.config.vault_id,
            tracking_number=tracking,
            intake_public_key=vault.intake_key(),
            kek_version=vault.current_kek_version(),
            document=document,
            attachments=attachments,
            progress=lambda _name, n: bar.advance(task, n),
        )
    request = vault.sign(me, "submit", record=tracking, params={"files": list(sealed.files)})
    return vault.receive(request, sealed)


def status(
    ctx: typer.Context, tracking: Annotated[str, typer.Argument(help="Tracking number.")]
) -> None:
    """Show a submission's state (its submitter and the program office)."""
    state: CliState = ctx.obj
    with acting(state) as (vault, me):
        record = vault.status(vault.sign(me, "status", record=tracking))
    state.output.result(record_row(record), human=f"{record.tracking}: {record.state}")


def withdraw(
    ctx: typer.Context,
    tracking: Annotated[str, typer.Argument(help="Tracking number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded).")] = "",
) -> None:
    """Withdraw your submission before the final decision (its data key is destroyed)."""
    state: CliState = ctx.obj
    with acting(state) as (vault, me):
        request = vault.sign(me, "withdraw", record=tracking, params={"reason": reason})
        record = vault.transition(request, "submission.withdrawn")
    state.output.result(record_row(record), human=f"{record.tracking}: {record.state}")


@receipt_app.command("verify")
def receipt_verify(
    ctx: typer.Context,
    receipt: Annotated[Path, typer.Argument(help="The receipt file from `pcii submit`.")],
    key: Annotated[
        str | None,
        typer.Option("--key", help="The log's verifier key (default: from the vault config)."),
    ] = None,
) -> None:
    """Check a receipt offline: its event is in the log the vault's key signed."""
    state: CliState = ctx.obj
    verified = verify_receipt(_read_receipt(receipt), _log_key(state, key))
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
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"receipt {path} not found") from exc
    except OSError as exc:
        raise InputError(f"cannot read receipt {path}: {exc.strerror}") from exc


def _log_key(state: CliState, key: str | None) -> str:
    if key is not None:
        return key
    if state.vault is None:
        raise InputError("give --key (the log's verifier key) or --vault")
    return VaultConfig.load(VaultPaths(state.vault).config).log_key
