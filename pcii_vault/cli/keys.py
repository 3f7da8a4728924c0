"""Key custodian commands: KEK status, rotation, re-wrapping, retirement, migration (admin).

Each command is a signed `rotate-keys` request naming its operation; the core decides,
logs and acts (see `Vault.rotate_keys` for the order of log and keyring). Nothing here
ever prints key material: versions, dates and counts only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState

if TYPE_CHECKING:
    from pcii_vault.vault import KeyStatus

__all__ = ["app"]

app = CliTyper(
    help="Key-encryption keys: status, rotate, rewrap, retire, migrate (admin).",
    no_args_is_help=True,
)


def _status_json(status: KeyStatus) -> dict[str, Any]:
    return {
        "current_version": status.current_version,
        "logged_version": status.logged_version,
        "min_decryption_version": status.min_decryption_version,
        "versions": [
            {
                "version": v.version,
                "created": v.created.isoformat() if v.created else None,
                "retired": v.retired,
            }
            for v in status.versions
        ],
        "last_rewrap": status.last_rewrap,
        "locations": {loc.name: loc.where for loc in status.locations},
        "migration": status.migration,
    }


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show KEK versions (created, retired), the current and oldest usable one (admin)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        key_status = me.key_status()
    data = _status_json(key_status)
    if state.output.json_mode:
        state.output.result(data, human="")
        return
    rows = [
        {
            "version": v["version"],
            "created": v["created"],
            "state": "retired"
            if v["retired"]
            else ("current" if v["version"] == key_status.current_version else "usable"),
        }
        for v in data["versions"]
    ]
    state.output.rows(rows, ["version", "created", "state"], title="Key-encryption keys")
    state.output.rows(
        [{"key": loc.name, "lives in": loc.where} for loc in key_status.locations],
        ["key", "lives in"],
        title="Where the keys live",
    )
    migration = key_status.migration
    if migration is not None and migration["phase"] == "started":
        state.output.note(
            f"migration from {migration['from']} to {migration['to']} unfinished: "
            f"{migration['moved']} of {migration['live']} live records moved; run "
            f"`pcii keys migrate --to {migration['to']}` to finish it"
        )
    elif migration is not None:
        state.output.note(
            f"last migration: from {migration['from']} to {migration['to']}, finished "
            f"({migration['count']} live records under the target then)"
        )
    if key_status.logged_version != key_status.current_version:
        state.output.note(
            f"warning: the log says KEK version {key_status.logged_version}, the keyring is "
            f"at {key_status.current_version}: if a rotation here was interrupted, "
            "`pcii keys rotate` completes it; if another replica rotated (or keyring.sealed "
            "was put back from an older copy), copy the newest keyring.sealed here"
        )


@app.command("rotate")
def rotate(ctx: typer.Context) -> None:
    """Add a KEK version and make it current (logged first); then run `pcii keys rewrap`."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        version = me.rotate_keys()
    state.output.result(
        {"version": version},
        human=f"KEK version {version} is current; run `pcii keys rewrap` to move old records",
    )


@app.command("rewrap")
def rewrap(ctx: typer.Context) -> None:
    """Re-wrap every live record's data key under the current KEK (payloads untouched)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        done = me.rewrap_keys()
    state.output.result(
        {"count": done.count, "version": done.version},
        human=f"re-wrapped {done.count} data keys under KEK version {done.version}",
    )


@app.command("retire")
def retire(
    ctx: typer.Context,
    version: Annotated[
        int,
        # A KEK version is a uint32 in every wrapped key's header.
        typer.Argument(metavar="VERSION", min=1, max=2**32 - 1, help="The KEK version to retire."),
    ],
) -> None:
    """Retire an old KEK version (refused while a live record still uses it)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        me.retire_key(version)
    state.output.result(
        {"retired": version}, human=f"KEK version {version} retired: it no longer unwraps"
    )


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URI",
            help="Where the KEKs go: local, pkcs11:..., openbao:https://... or awskms:KEY "
            "(created when missing).",
        ),
    ],
) -> None:
    """Re-wrap every live record's data key into another key provider (logged, resumable)."""
    from pcii_vault.cli.session import client
    from pcii_vault.keys.providers import public_uri

    state: CliState = ctx.obj
    with client(state) as me:
        done = me.migrate_keys(to, public_target=public_uri(to))
    state.output.result(
        {"count": done.count, "from": done.source, "to": done.target},
        human=f"moved {done.count} data keys from {done.source} to {done.target}",
    )
