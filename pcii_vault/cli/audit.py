"""`pcii audit ...`: verify the log offline, prove and check inclusion, read and export.

Every command here needs only the log (a vault directory, a copied ``log/`` directory or
an s3:// URL) and the log's public verifier key: never the unseal secret. Integrity
failures raise `IntegrityError`, which `main()` turns into exit code 4.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from pcii_vault.cli.files import (
    new_output,
    new_text_output,
    read_given_file,
    refuse_existing,
    refuse_other_document,
)
from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import aware_time, path_argument, refuse_undecodable
from pcii_vault.durable import path_exists
from pcii_vault.errors import ConfigError, InputError, IntegrityError, NotFoundError
from pcii_vault.text import printable

if TYPE_CHECKING:
    from pcii_vault.ledger.log import Ledger
    from pcii_vault.ledger.note import Checkpoint, NoteVerifier
    from pcii_vault.models.event import Event
    from pcii_vault.store import ObjectStore

__all__ = ["app"]

app = CliTyper(
    name="audit",
    help="Verify the access log offline, prove inclusion, read and export events.",
    no_args_is_help=True,
)

LogOption = Annotated[
    str | None,
    typer.Option(
        "--log",
        metavar="DIR|URL",
        help="A vault directory, a directory holding log/, or an s3://BUCKET[/PREFIX] URL "
        "(default: the vault's).",
        show_default=False,
    ),
]
TrustedOption = Annotated[
    Path | None,
    typer.Option(
        "--trusted-checkpoint",
        metavar="FILE",
        help="A checkpoint (or receipt, or proof) seen before: the log must have only grown "
        "from it.",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        metavar="KEY|FILE",
        help="The log's verifier key string, or a file holding it (default: the vault's).",
        show_default=False,
    ),
]


def _state(ctx: typer.Context) -> CliState:
    state = ctx.obj
    return state if isinstance(state, CliState) else CliState()


def read_key(key: str, option: str = "--key") -> NoteVerifier:
    """The log's verifier key a user gave: the key string, or a file holding it.

    Every command's `--key` reads it this way. The user typed or chose it, so a key that
    is not a verifier key is bad input (exit 2), not a sign of tampering.

    Raises:
        InputError: the file cannot be read, or it (or the string) is not a verifier key.
    """
    from pcii_vault.ledger.note import NoteVerifier

    if not key.strip():
        raise InputError(f"{option} is empty: give the key `pcii audit key` prints, or its file")
    path = Path(key)
    text = key
    if "+" not in key and not path_exists(path, option):
        raise InputError(
            f"{option} '{printable(key)}' is neither a verifier key (`pcii audit key` prints "
            "it) nor a file"
        )
    if "+" not in key or path.is_file():
        data = read_given_file(path, f"{option} key file")  # bounded: never /dev/zero whole
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(f"cannot read key file {key}: not UTF-8 text") from exc
        text = _key_of_json(text)
    try:
        return NoteVerifier.from_key_string(text)
    except IntegrityError as exc:
        raise InputError(
            f"{option}: {exc} (give the key `pcii audit key` prints, or a file holding it)"
        ) from exc


def _json_object(text: str) -> dict[str, Any] | None:
    """`text` as a JSON object, or None when it is none (a key string, a signed note)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # nested thousands deep: no key or checkpoint file
        return None
    return document if isinstance(document, dict) else None


def _key_of_json(text: str) -> str:
    """The key of `pcii --json audit key`'s output saved to a file; else `text` as it is."""
    key = (_json_object(text) or {}).get("key")
    return key if isinstance(key, str) else text


@dataclass(frozen=True)
class _Log:
    """Where a command reads the log, with what key, and the vault's anchor if local."""

    store: ObjectStore
    verifier: NoteVerifier
    anchor: Path | None = None


def open_log(
    state: CliState, log: str | None = None, key: str | None = None
) -> tuple[ObjectStore, str, NoteVerifier]:
    """Find the log and its key: `--log`/`--key`, else the vault's configuration.

    A vault directory's log is held against the vault's own last checkpoint
    (`log-checkpoint`), as every vault command does: a store rolled back whole is exit 4.

    Returns:
        (store holding log/, origin, verifier key).

    Raises:
        ConfigError: no log or no key can be found.
        IntegrityError: the log is rolled back or forked from the vault's anchor.
    """
    found = _locate_log(state, log, key)
    _check_anchor(found)
    return found.store, found.verifier.name, found.verifier


def open_log_noting(
    state: CliState, log: str | None = None, key: str | None = None
) -> tuple[ObjectStore, NoteVerifier, str | None]:
    """As `open_log`, with what is wrong with the log's head said, not raised.

    For the auditor's report, which is made of a log that is not sound too (and says so).

    Returns:
        (store holding log/, verifier key, the problem with the log's head or None).
    """
    found = _locate_log(state, log, key)
    try:
        _check_anchor(found)
    except IntegrityError as exc:
        return found.store, found.verifier, exc.diagnostics()
    return found.store, found.verifier, None


def _locate_log(state: CliState, log: str | None, key: str | None) -> _Log:
    """The log `--log`/`--key` name, else the vault's; nothing is read from it yet.

    Raises:
        ConfigError: no log or no key can be found.
    """
    from pcii_vault.config import VaultConfig, VaultPaths
    from pcii_vault.ledger.note import NoteVerifier
    from pcii_vault.store import open_store

    if state.server is not None and log is None:
        store, verifier = _server_log(state, key)
        return _Log(store, verifier)
    config: VaultConfig | None = None
    if state.vault is not None:
        config = VaultConfig.load(VaultPaths(state.vault).config)
    anchor: Path | None = None
    if log is not None:
        if "://" in log and not log.startswith("s3://"):
            served = log.startswith(("https://", "http://"))
            raise ConfigError(
                f"--log {log}: give a copy of the log (a directory) or a bucket (s3://...)"
                + ("; a server's log is read with --vault https://HOST:PORT" if served else "")
            )
        if log.startswith("s3://"):
            store = open_store(log, root_for_file=Path())
        else:
            store, anchor = _log_store(Path(log))
    elif config is not None and state.vault is not None:
        paths = VaultPaths(state.vault)
        store = open_store(config.store, root_for_file=paths.objects)
        anchor = paths.anchor
    else:
        raise ConfigError("no log: give --log DIR|s3://... or --vault DIR")
    if key is not None:
        verifier = read_key(key)
    elif config is not None:
        verifier = NoteVerifier.from_key_string(config.log_key)
    elif state.server is not None:
        # A copy of the log checked with the key the server claims (`--key` is the one
        # to trust, obtained out of band).
        verifier = _server_verifier(state)
    else:
        raise ConfigError("no log key: give --key KEY|FILE or --vault DIR")
    return _Log(store, verifier, anchor)


def _check_anchor(found: _Log) -> None:
    """Hold a vault's log against its `log-checkpoint`, exactly as `pcii status` does.

    A log copied elsewhere (`--log DIR`, s3://) has no anchor: an auditor brings a
    checkpoint of their own (`--trusted-checkpoint`).

    Raises:
        IntegrityError: the log is missing, rolled back or forked from the anchor, or
            the anchored checkpoint vanished from the history.
    """
    if found.anchor is None:
        return
    from pcii_vault.ledger.anchor import ReadOnlyAnchor
    from pcii_vault.ledger.log import Ledger

    verifier = found.verifier
    Ledger(
        found.store,
        verifier.name,
        signer=None,
        verifier=verifier.public_key,
        anchor=ReadOnlyAnchor(found.anchor),
    ).checkpoint()


def open_reader(
    state: CliState, log: str | None = None, key: str | None = None, trusted: Path | None = None
) -> Ledger:
    """The log to read events from, its head checked as `audit verify` checks it.

    `trusted`: a checkpoint file seen before (`--trusted-checkpoint`), which the log must
    extend, as `audit verify` holds it: what a copied log, without the vault's anchor,
    is held against.

    Raises:
        IntegrityError: the checkpoint was deleted or rolled back (`check_log_head`), or
            differs from the vault's anchor; or the log is empty, which no vault's log is
            (as `audit verify`, not an empty listing).
    """
    from pcii_vault.ledger.verify import check_log_head, refuse_other_tree, refuse_shorter_than

    store, _, verifier = open_log(state, log, key)
    seen = read_trusted_checkpoint(trusted, verifier)
    head = check_log_head(store, verifier)
    if head is None:
        # `init` logs the vault's creation before anything else: an empty log was
        # deleted whole (with the vault's anchor), or is not a vault's log at all.
        raise IntegrityError(
            "the log holds nothing (no log/checkpoint), yet every vault logs its creation "
            "first: the log was deleted, or this is not a vault's log"
        )
    reader = _reader(store, verifier)
    if seen is not None:
        refuse_shorter_than(seen, head)
        refuse_other_tree(seen, reader.root_at(seen.size, head))
    return reader


def _server_log(state: CliState, key: str | None) -> tuple[ObjectStore, NoteVerifier]:
    """A vault server's log, read-only over HTTPS (signed requests by an auditor).

    The objects are verified here against the log key exactly as from a bucket; the key
    comes from `--key` (best: obtained out of band) or, without it, from the server.
    """
    from pcii_vault.cli.session import identity
    from pcii_vault.ledger.note import NoteVerifier
    from pcii_vault.service.transport import HttpTransport, RemoteLog

    assert state.server is not None  # noqa: S101 -- the caller checked
    transport = HttpTransport(state.server, ca=state.ca, identity=identity(state))
    verifier = (
        read_key(key) if key is not None else NoteVerifier.from_key_string(transport.info().log_key)
    )
    return RemoteLog(transport), verifier


def _vault_verifier(state: CliState, key: str | None) -> NoteVerifier | None:
    """The log key: `--key`, else the vault's (its directory, or its server's `/info`).

    None when neither is given. A key obtained out of band (`--key`) is the one to trust;
    the server's own is what it claims.
    """
    from pcii_vault.config import VaultConfig, VaultPaths
    from pcii_vault.ledger.note import NoteVerifier

    if key is not None:
        return read_key(key)
    if state.vault is not None:
        return NoteVerifier.from_key_string(
            VaultConfig.load(VaultPaths(state.vault).config).log_key
        )
    if state.server is not None:
        return _server_verifier(state)
    return None


def _server_verifier(state: CliState) -> NoteVerifier:
    """The log key the vault's server names in its `/info` (what it claims)."""
    from pcii_vault.ledger.note import NoteVerifier
    from pcii_vault.service.transport import HttpTransport

    assert state.server is not None  # noqa: S101 -- callers check
    transport = HttpTransport(state.server, ca=state.ca, identity=None)
    return NoteVerifier.from_key_string(transport.info().log_key)


def _log_store(directory: Path) -> tuple[ObjectStore, Path | None]:
    """The store holding `log/`: a copied log directory, or a vault directory (any store).

    Returns:
        The store, and the vault's anchor file when `directory` is a vault directory.
    """
    from pcii_vault.config import VaultConfig, VaultPaths
    from pcii_vault.store import open_store

    paths = VaultPaths(directory)
    # A vault directory first, whatever else it holds: a `log/` planted beside
    # vault.json must not stand in for the vault's store, read without its anchor.
    if paths.config.is_symlink() or paths.config.exists():
        config = VaultConfig.load(paths.config)
        return open_store(config.store, root_for_file=paths.objects), paths.anchor
    if (directory / "log").is_dir():
        return open_store(f"file://{directory.resolve()}", root_for_file=directory), None
    raise ConfigError(f"{directory} holds no log/ directory and is not a vault directory")


def read_trusted_checkpoint(path: Path | None, verifier: NoteVerifier) -> Checkpoint | None:
    """The checkpoint saved earlier, signature checked.

    A note saved by `audit checkpoint --out`, or the one a submitter's receipt or an
    inclusion proof (`audit prove`) carries.

    Raises:
        InputError: the file cannot be read, or holds no signed note at all (another file).
        IntegrityError: it is not a checkpoint signed by the log key.
    """
    if path is None:
        return None
    from pcii_vault.ledger.note import parse_checkpoint

    data = read_given_file(path, "--trusted-checkpoint")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    data = _carried_checkpoint(text) or data
    if "\n\n\u2014 " not in data.decode("utf-8", "replace"):
        # No signature line: some other file, not a damaged note.
        raise InputError(
            f"--trusted-checkpoint {path} is not a signed checkpoint, receipt or proof "
            "(save one with `pcii audit checkpoint --out FILE`)"
        )
    try:
        return parse_checkpoint(data, verifier)
    except IntegrityError as exc:
        raise IntegrityError(f"--trusted-checkpoint {path}: {exc}") from exc


def _carried_checkpoint(text: str) -> bytes | None:
    """The signed checkpoint a submitter's receipt or an inclusion proof carries, if any."""
    document = _json_object(text) or {}
    if isinstance(document.get("proof"), dict):
        document = document["proof"]  # a receipt: its proof bundle
    note = document.get("checkpoint")
    return note.encode("utf-8") if isinstance(note, str) else None


def _reader(store: ObjectStore, verifier: NoteVerifier) -> Ledger:
    from pcii_vault.ledger.log import Ledger

    return Ledger(store, verifier.name, signer=None, verifier=verifier.public_key)


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    trusted_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--trusted-checkpoint",
            metavar="FILE",
            help="A checkpoint file seen before: the log must have only grown from it.",
            show_default=False,
        ),
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    structure_only: Annotated[
        bool,
        typer.Option(
            "--structure-only",
            help="Check the tree, tiles and signatures but not the lifecycle rules "
            "(for logs that are not a vault's event history).",
        ),
    ] = False,
    skip_decision_replay: Annotated[
        bool,
        typer.Option(
            "--skip-decision-replay",
            help="Do not re-run logged decisions (when the policysets/ beside the log "
            "were not copied).",
        ),
    ] = False,
) -> None:
    """Audit the whole log: signatures, entries, tiles, history, legal events (exit 4 if not)."""
    from pcii_vault.history import HistoryAuditor
    from pcii_vault.ledger.verify import verify_log

    state = _state(ctx)
    found = _locate_log(state, log, key)
    store, verifier = found.store, found.verifier
    trusted = read_trusted_checkpoint(trusted_checkpoint, verifier)
    # The lifecycle projection doubles as the legal-history check: replaying every event
    # into a scratch index raises on a release without a permit, a release of a withdrawn
    # or destroyed record, an unregistered or inactive actor, a forged or replayed request;
    # every logged decision is re-run on the policy set it names.
    history = HistoryAuditor(store, replay_decisions=not skip_decision_replay)
    try:
        _check_anchor(found)  # in the verdict: a vault rolled back whole is not sound
        checker = None if structure_only else history
        report = verify_log(store, verifier, trusted=trusted, event_checker=checker)
        if not structure_only:
            history.finish()
    except IntegrityError as exc:
        if not state.output.json_mode:
            raise
        # A verdict, not only an error: programs read `sound` whatever the outcome.
        state.output.result(
            {"sound": False, "error": exc.diagnostics(), "exit_code": exc.exit_code}
        )
        raise typer.Exit(code=exc.exit_code) from None
    finally:
        history.close()
    pending = f"; pending: {len(report.pending)}" if report.pending else ""
    legal = "" if structure_only else ", event history legal"
    replayed = (
        f", {history.decisions_replayed} decisions replayed"
        if not structure_only and not skip_decision_replay
        else ""
    )
    state.output.result(
        {
            **report.to_json(),
            "key": verifier.key_string(),
            "sound": True,
            "legal_history": not structure_only,
            "decisions_replayed": None
            if structure_only or skip_decision_replay
            else history.decisions_replayed,
        },
        f"log sound: {report.size} events, root {report.checkpoint.root.hex()}, "
        f"{report.tiles} tiles and {report.history} historic checkpoints checked"
        f"{legal}{replayed}{pending}; signed by {verifier.key_string()} (compare with the "
        "key you hold from elsewhere)",
    )
    for item in report.pending:
        state.output.note(f"pending: {item}")


@app.command("prove")
def prove_command(
    ctx: typer.Context,
    index: Annotated[
        int, typer.Option("--index", metavar="N", min=0, help="Log index of the event.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write the bundle to this file.", show_default=False
        ),
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    trusted_checkpoint: TrustedOption = None,
) -> None:
    """Print (or write) the inclusion proof bundle of one event."""
    from pcii_vault.ledger.proof import prove

    state = _state(ctx)
    if out is not None:
        refuse_existing(out, "--out")  # before reading the log
    ledger = open_reader(state, log, key, trusted_checkpoint)
    checkpoint = ledger.checkpoint()
    size = 0 if checkpoint is None else checkpoint.size
    if index >= size:
        # An index the log never reached is a typo, not a sign of tampering.
        raise InputError(
            f"--index {index} is beyond the log: it holds {size} events"
            + (f" (0 to {size - 1})" if size else "")
        )
    bundle = prove(ledger, index, checkpoint)
    if out is None:
        # The bundle is JSON by nature: one line with --json, like every other command.
        indent = None if state.output.json_mode else 2
        sys.stdout.write(json.dumps(bundle.to_json(), indent=indent, sort_keys=True) + "\n")
        return
    text = json.dumps(bundle.to_json(), indent=2, sort_keys=True) + "\n"
    with new_output(out, "--out") as tmp:
        tmp.write_text(text, encoding="utf-8")
    state.output.result({"index": index, "out": str(out)}, f"proof of event {index} -> {out}")


@app.command("verify-proof")
def verify_proof_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE", parser=path_argument, help="A proof bundle file.", show_default=False
        ),
    ],
    key: KeyOption = None,
) -> None:
    """Check a proof bundle offline (exit 4 if it does not verify)."""
    from pcii_vault.ledger.proof import ProofBundle, verify_bundle

    state = _state(ctx)
    verifier = _vault_verifier(state, key)
    if verifier is None:
        raise ConfigError("no log key: give --key KEY|FILE or --vault DIR|https://...")
    data = read_given_file(file, "proof bundle")
    refuse_other_document(data, file, "pcii-log-proof/1", "a log proof bundle")
    try:
        event = verify_bundle(ProofBundle.from_json(data), verifier)
    except IntegrityError as exc:
        raise IntegrityError(f"proof bundle {file}: {exc}") from exc
    state.output.result(
        {"verified": True, "index": event.seq, "type": event.type, "event": _row(event)},
        f"proof verified: event {event.seq} ({event.type}) is in the log signed by this "
        "key, at the checkpoint the proof carries (hold that checkpoint against yours: "
        "`audit verify --trusted-checkpoint FILE`)",
    )


@app.command("key")
def key_command(ctx: typer.Context, log: LogOption = None, key: KeyOption = None) -> None:
    """Print the log's signed-note verifier key."""
    state = _state(ctx)
    verifier = _vault_verifier(state, key) if log is None else None
    if verifier is None:
        verifier = _locate_log(state, log, key).verifier
    text = verifier.key_string()
    state.output.result({"key": text, "origin": verifier.name}, text)


_COLUMNS = ("seq", "time", "type", "actor", "record", "action", "decision", "policies")


def _row(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")


def _filtered(
    state: CliState,
    log: str | None,
    key: str | None,
    filters: dict[str, Any],
    trusted: Path | None = None,
) -> Iterator[Event]:
    from pcii_vault.ledger.proof import iter_events

    return iter_events(open_reader(state, log, key, trusted), **filters)


def _parse_time(value: str | None, what: str) -> datetime | None:
    return None if value is None else aware_time(value, what)


@app.command("log")
def log_command(
    ctx: typer.Context,
    record: Annotated[
        str | None,
        typer.Option(
            "--record", metavar="TRACKING", help="Only this record's events.", show_default=False
        ),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option(
            "--principal", metavar="NAME", help="Only events by this user.", show_default=False
        ),
    ] = None,
    event_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            metavar="TYPE",
            help="Only events of this type, e.g. access.decided or submission.validated.",
            show_default=False,
        ),
    ] = None,
    decision: Annotated[
        str | None,
        typer.Option("--decision", metavar="DECISION", help="permit or deny.", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="TIME",
            help="From this ISO 8601 time with zone, e.g. 2026-11-01T00:00Z.",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="Until this ISO 8601 time with zone.",
            show_default=False,
        ),
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    trusted_checkpoint: TrustedOption = None,
) -> None:
    """List events (a table, or JSON lines with --json), streaming."""
    state = _state(ctx)
    if decision not in {None, "permit", "deny"}:
        raise InputError("--decision must be permit or deny")
    for option, text in {"--record": record, "--principal": principal}.items():
        if text is not None:
            refuse_undecodable(option, text)
    if event_type is not None:
        _check_event_type(event_type)
    filters = {
        "record": record,
        "principal": principal,
        "event_type": event_type,
        "decision": decision,
        "since": (began := _parse_time(since, "--since")),
        "until": (ended := _parse_time(until, "--until")),
    }
    time_range(began, ended)
    only_record = {"record": record}
    if (
        record is not None
        and next(_filtered(state, log, key, only_record, trusted_checkpoint), None) is None
    ):
        # As `audit recipients` and `audit report --record`: not an empty listing.
        raise NotFoundError(f"no record with tracking number {record!r} in the log")
    rows = (_row(e) for e in _filtered(state, log, key, filters, trusted_checkpoint))
    state.output.rows(rows, _COLUMNS, title="access log")


def time_range(since: datetime | None, until: datetime | None) -> None:
    """Refuse a range that ends before it begins (it would list nothing, silently).

    Raises:
        InputError: `since` is after `until`.
    """
    if since is not None and until is not None and since > until:
        raise InputError(f"--since {since.isoformat()} is after --until {until.isoformat()}")


def _check_event_type(event_type: str) -> None:
    """Refuse a `--type` no event has (it would list nothing, silently).

    Raises:
        InputError: not an event type (with the closest one, or the list).
    """
    from pcii_vault.cli.params import suggest
    from pcii_vault.models.event import EVENT_TYPES

    if event_type not in EVENT_TYPES:
        names = sorted(EVENT_TYPES)
        hint = suggest(event_type, names) or f"; one of: {', '.join(names)}"
        raise InputError(f"--type {event_type!r} is not an event type{hint}")


@app.command("export")
def export_command(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT", help="jsonl or csv.")] = "jsonl",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", metavar="FILE", help="Write here (default stdout).", show_default=False
        ),
    ] = None,
    log: LogOption = None,
    key: KeyOption = None,
    trusted_checkpoint: TrustedOption = None,
) -> None:
    """Export every event as JSON lines or CSV, streaming."""
    state = _state(ctx)
    if fmt not in {"jsonl", "csv"}:
        raise InputError("--format must be jsonl or csv")
    if out is not None:
        refuse_existing(out, "--out")  # before reading the log
    events = _filtered(state, log, key, {}, trusted_checkpoint)
    if out is None:
        _export(events, fmt, sys.stdout)
        return
    written = 0

    def counted() -> Iterator[Event]:
        nonlocal written
        for event in events:
            written += 1
            yield event

    with new_text_output(out, "--out") as handle:
        _export(counted(), fmt, handle)
    # As every other --out: say what was written (with --json, as one object).
    state.output.result(
        {"events": written, "format": fmt, "out": str(out)},
        f"{written} events exported to {out}",
    )


def _export(events: Iterator[Event], fmt: str, handle: TextIO) -> None:
    """Write the events as JSON lines or CSV.

    CSV cells are defused as the report's are (`csv_cell`): the log holds text users
    typed (purposes, reasons), which a spreadsheet would otherwise run as a formula.
    """
    from pcii_vault.models.event import Event
    from pcii_vault.report.data import csv_cell

    if fmt == "jsonl":
        for event in events:
            handle.write(json.dumps(_row(event), sort_keys=True) + "\n")
        return
    writer = csv.DictWriter(handle, fieldnames=list(Event.model_fields))
    writer.writeheader()
    for event in events:
        row = _row(event)
        writer.writerow(
            {
                k: csv_cell(json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v)
                for k, v in row.items()
            }
        )
