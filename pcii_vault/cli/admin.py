"""Administrator commands: create a vault, register users, check the store, rebuild the index."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pcii_vault.cli.files import refuse_existing
from pcii_vault.cli.help import CliTyper
from pcii_vault.cli.output import CliState
from pcii_vault.cli.params import check_sectors, refuse_undecodable
from pcii_vault.errors import ActConflictError, ConfigError, InputError, PolicyDenied, VaultError

if TYPE_CHECKING:
    from pcii_vault.models.principal import Principal, PrincipalAttributes

__all__ = ["index_app", "init", "principal_app", "store_app"]

principal_app = CliTyper(
    rich_markup_mode=None, help="Register, change, revoke and list users.", no_args_is_help=True
)
store_app = CliTyper(
    rich_markup_mode=None, help="Check the vault's object store.", no_args_is_help=True
)
index_app = CliTyper(
    rich_markup_mode=None, help="The local index (a projection of the log).", no_args_is_help=True
)

# Cheap enough for a test suite that creates hundreds of vaults; never for real keyrings.
_INSECURE_TEST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}

_ROLE = typer.Option(
    "--role", metavar="ROLE", help="owner, office, analyst, auditor or admin.", show_default=False
)
_ORG_HELP = "Organisation (free text, shown on releases and listings)."
_LEVEL_HELP = "Government level: federal, state, local, tribal, territorial or private."
_SECTOR_HELP = (
    "A sector of need to know, as the sector list spells it (repeatable: "
    "--sector Energy --sector 'Nuclear Reactors, Materials, and Waste')."
)
_TrainingOption = Annotated[
    str | None,
    typer.Option(
        "--training-expires",
        metavar="DATE",
        help="PCII training expiry, YYYY-MM-DD.",
        show_default=False,
    ),
]
_NdaOption = Annotated[
    str | None,
    typer.Option(
        "--nda-signed", metavar="DATE", help="NDA signature date, YYYY-MM-DD.", show_default=False
    ),
]
_NAME = typer.Argument(metavar="NAME", help="The user's id.", show_default=False)


def _split_new_secret(
    state: CliState, threshold: int, count: int, shares_out: Path
) -> tuple[bytes, list[Path]]:
    """A random secret nobody sees, written as `count` share files: the custodians hold it."""
    from pcii_vault.keys.shares import split_secret, write_shares

    secret, mnemonics = split_secret(threshold, count)
    share_files = write_shares(shares_out, mnemonics)
    if os.environ.get("PCII_UNSEAL_SECRET"):
        state.output.note(
            "warning: PCII_UNSEAL_SECRET is not this vault's secret (a random one is split "
            "into the shares): unset it and use PCII_UNSEAL_SHARES for this vault"
        )
    return secret, share_files


def init(
    ctx: typer.Context,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            metavar="STORE",
            help="'file' (objects in the vault directory), file:///ABSOLUTE/PATH (objects there), "
            "or s3://BUCKET[/PREFIX].",
        ),
    ] = "file",
    admin: Annotated[
        str, typer.Option("--admin", metavar="NAME", help="Principal id of the first admin.")
    ] = "admin",
    admin_key_out: Annotated[
        Path | None,
        typer.Option(
            "--admin-key-out",
            metavar="FILE",
            help="Where to write the first admin's private key (mode 0600; default DIR/admin.key).",
            show_default=False,
        ),
    ] = None,
    kek: Annotated[
        str,
        typer.Option(
            "--kek",
            metavar="URI",
            help="Where KEKs live: local (the sealed keyring), pkcs11:..., "
            "openbao:https://HOST:PORT/MOUNT/keys/NAME or awskms:KEY. Created when missing.",
        ),
    ] = "local",
    unseal_shares: Annotated[
        int | None,
        typer.Option(
            "--unseal-shares", metavar="N", help="Split the unseal secret into N SLIP-39 shares."
        ),
    ] = None,
    unseal_threshold: Annotated[
        int | None,
        typer.Option("--unseal-threshold", metavar="M", help="How many shares unseal (M of N)."),
    ] = None,
    shares_out: Annotated[
        Path | None,
        typer.Option(
            "--shares-out", metavar="DIR", help="Directory for the share files (one per custodian)."
        ),
    ] = None,
    insecure_fast_kdf: Annotated[
        bool,
        typer.Option(
            "--insecure-fast-kdf",
            hidden=True,
            help="Cheap scrypt parameters, for tests only: weakens the sealed keyring.",
        ),
    ] = False,
) -> None:
    """Create a vault: config, sealed keyring, store layout, log, and the first admin."""
    from pcii_vault.cli.session import unseal_secret, vault_dir
    from pcii_vault.config import VaultPaths
    from pcii_vault.crypto.seal import DEFAULT_SCRYPT, ScryptParams
    from pcii_vault.vault import Vault

    state: CliState = ctx.obj
    root = vault_dir(state)
    _check_principal_name(admin, "--admin")
    _probe_vault_directory(root)
    key_out = admin_key_out or root / "admin.key"
    split = (unseal_shares, unseal_threshold, shares_out)
    if any(v is not None for v in split) and any(v is None for v in split):
        raise InputError("--unseal-shares, --unseal-threshold and --shares-out go together")
    share_files: list[Path] = []
    shares_dir_made = shares_out is not None and not shares_out.exists()
    if unseal_shares is not None and unseal_threshold is not None and shares_out is not None:
        secret, share_files = _split_new_secret(state, unseal_threshold, unseal_shares, shares_out)
    else:
        secret = unseal_secret(confirm=True)
    kdf = DEFAULT_SCRYPT
    if insecure_fast_kdf:
        state.output.note("warning: --insecure-fast-kdf: the keyring is cheap to brute-force")
        kdf = ScryptParams(**_INSECURE_TEST_SCRYPT)
    had_vault = VaultPaths(root).config.exists()  # refused below: its shares are noise
    try:
        vault, _ = Vault.create(
            root,
            store_url=store,
            secret=secret,
            admin_name=admin,
            admin_key_out=key_out,
            kdf_params=kdf,
            kek_uri=kek,
            unseal_threshold=unseal_threshold if share_files else None,
        )
    except BaseException as exc:
        # A refusal (ConfigError: a vault there, another `init` of this directory came
        # first) made nothing of ours; anything else after the config was written did.
        if not isinstance(exc, ConfigError) and VaultPaths(root).config.exists() and not had_vault:
            # Made all the same (interrupted as it opened): its shares are its only secret.
            if isinstance(exc, KeyboardInterrupt):
                state.already_done.append(_made_anyway(root, key_out, shares_out))
            raise
        _remove_shares(share_files, shares_out if shares_dir_made else None)
        raise
    try:
        data: dict[str, Any] = {
            "vault_id": vault.config.vault_id,
            "vault": str(root),
            "store": vault.config.store,
            "admin": admin,
            "admin_key": str(key_out),
            "log_key": vault.config.log_key,
            "kek": vault.config.kek,
            "log_signer": vault.config.log_signer,
        }
        if share_files:
            data["unseal_shares"] = [str(p) for p in share_files]
            data["unseal_threshold"] = unseal_threshold
            state.output.note(
                f"note: {len(share_files)} unseal shares in {shares_out}, {unseal_threshold} "
                "unseal: hand one to each custodian and delete them here"
            )
        if admin_key_out is None:
            state.output.note(
                f"note: the admin key is in {key_out}; move it off this machine "
                "(or pass --admin-key-out next time)"
            )
        state.output.result(data, human=vault.config.vault_id)
    except KeyboardInterrupt:
        state.already_done.append(_made_anyway(root, key_out, shares_out))
        raise
    finally:
        vault.close()


def _remove_shares(files: list[Path], made_dir: Path | None) -> None:
    """Remove the shares of a vault that was not made (noise), and the folder made for them."""
    for path in files:
        path.unlink(missing_ok=True)
    if made_dir is not None:
        with contextlib.suppress(OSError):
            made_dir.rmdir()  # only if still empty


def _made_anyway(root: Path, key_out: Path, shares_out: Path | None) -> str:
    """What an `init` interrupted after the vault was made must tell its user."""
    keys = f"its admin key is {key_out}" + (
        f", its unseal shares are in {shares_out}" if shares_out is not None else ""
    )
    return (
        f"after the vault in {root} was made: it is complete ({keys}); "
        f"`pcii --vault {root} audit verify` shows it"
    )


def _probe_vault_directory(root: Path) -> None:
    """Refuse, before any secret is asked for, a vault directory that cannot be created.

    A path under a file, a read-only or missing place is the user's to change (exit 2,
    one line naming it), as for every output option. The probe removes what it made
    (parents included): `Vault.create` makes the directory itself.

    Raises:
        InputError: the directory cannot be created.
    """
    if root.exists():
        return  # `Vault.create` says whether what is there may become a vault
    if root.is_symlink():
        raise InputError(f"{root} is a symlink to nothing: give a new directory")
    made = [root]
    for parent in root.parents:
        if parent.exists() or parent.is_symlink():
            break
        made.append(parent)
    try:
        root.mkdir(mode=0o700, parents=True)
        for directory in made:  # root first, then the parents the probe made
            directory.rmdir()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot create the vault directory {root}: {reason}") from None


def _check_principal_name(name: str, what: str) -> None:
    """Refuse a principal id the vault would refuse, as one line naming the rule.

    Raises:
        InputError: `name` is not a principal id.
    """
    from pcii_vault.models.principal import PRINCIPAL_ID_PATTERN

    if not re.fullmatch(PRINCIPAL_ID_PATTERN, name):
        raise InputError(
            f"{what} {name!r}: use lower-case letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )


def _attributes(
    role: str,
    org: str,
    level: str,
    sectors: tuple[str, ...],
    training_expires: date | None,
    nda_signed: date | None,
    contractor: bool,
) -> PrincipalAttributes:
    from pydantic import ValidationError

    from pcii_vault.models.principal import PrincipalAttributes
    from pcii_vault.models.problems import describe

    refuse_undecodable("--org", org)
    try:
        return PrincipalAttributes.model_validate(
            {
                "role": role,
                "organisation": org,
                "level": level,
                "sectors": sectors,
                "training_expires": training_expires,
                "nda_signed": nda_signed,
                "contractor": contractor,
            }
        )
    except ValidationError as exc:
        raise InputError(describe(exc, "invalid principal attributes")) from exc


def _principal_row(principal: Principal) -> dict[str, Any]:
    data = principal.model_dump(mode="json")
    data.pop("public_key")
    return data


@principal_app.command("add")
def principal_add(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="The new user's id (lower case, digits, . _ -).",
            show_default=False,
        ),
    ],
    role: Annotated[str, _ROLE],
    key_out: Annotated[
        Path,
        typer.Option(
            "--key-out", metavar="FILE", help="Where to write the user's new private key."
        ),
    ],
    org: Annotated[str, typer.Option("--org", metavar="ORG", help=_ORG_HELP)] = "unspecified",
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            metavar="LEVEL",
            help=_LEVEL_HELP + " Default: private for an owner (its staff), else federal.",
            show_default=False,
        ),
    ] = None,
    sector: Annotated[
        list[str] | None,
        typer.Option("--sector", metavar="SECTOR", help=_SECTOR_HELP, show_default=False),
    ] = None,
    training_expires: _TrainingOption = None,
    nda_signed: _NdaOption = None,
    contractor: Annotated[
        bool, typer.Option("--contractor", help="The user is a contractor, not an employee.")
    ] = False,
) -> None:
    """Register a user and write their new private key file (an admin's act)."""
    from pcii_vault.cli.session import client
    from pcii_vault.crypto.signing import Ed25519PrivateKey
    from pcii_vault.identity import Identity

    state: CliState = ctx.obj
    if level is None:  # an owner's staff work for a company, not a government
        level = "private" if role == "owner" else "federal"
    attributes = _attributes(
        role,
        org,
        level,
        check_sectors(sector or []),
        _date(training_expires, "--training-expires"),
        _date(nda_signed, "--nda-signed"),
        contractor,
    )
    _check_principal_name(name, "principal name")
    refuse_existing(key_out, "--key-out", "a key file")
    with client(state) as me:
        key = Ed25519PrivateKey.generate()
        new_identity = Identity(vault_id=me.info.vault_id, principal=name, key=key)
        new_identity.save_new(key_out)
        try:
            principal = me.add_principal(name, attributes, key.public_key.raw)
        except (InputError, PolicyDenied, ActConflictError):
            key_out.unlink(missing_ok=True)  # refused before anything was logged
            raise
        except VaultError as exc:
            if exc.handed_to_log is False:  # the vault says nothing of it reached the log
                key_out.unlink(missing_ok=True)
                raise
            _keep_key_file(state, name, key_out)
            raise
        except BaseException:
            _keep_key_file(state, name, key_out)
            raise
        state.output.result(
            {**_principal_row(principal), "key_file": str(key_out)},
            human=f"registered {name} ({principal.role}); key written to {key_out}",
        )


def _keep_key_file(state: CliState, name: str, key_out: Path) -> None:
    """Say why a new user's key file stays after a failure: it may be registered."""
    # Interrupted, or failing once perhaps handed to the log (a full disk as the index is
    # written): the registration may stand, and then this file is the only copy of its key
    # (and the id is never given again).
    state.already_done.append(
        f"(while registering {name}: its key file {key_out} is kept, as {name} may "
        "be registered all the same (see `pcii principal list`); delete it if not)"
    )


@principal_app.command("update")
def principal_update(
    ctx: typer.Context,
    name: Annotated[str, _NAME],
    org: Annotated[
        str | None, typer.Option("--org", metavar="ORG", help=_ORG_HELP, show_default=False)
    ] = None,
    level: Annotated[
        str | None,
        typer.Option("--level", metavar="LEVEL", help=_LEVEL_HELP, show_default=False),
    ] = None,
    sector: Annotated[
        list[str] | None,
        typer.Option(
            "--sector",
            metavar="SECTOR",
            help=_SECTOR_HELP + " Replaces the user's sectors.",
            show_default=False,
        ),
    ] = None,
    no_sectors: Annotated[
        bool, typer.Option("--no-sectors", help="Remove every sector of need to know.")
    ] = False,
    training_expires: _TrainingOption = None,
    nda_signed: _NdaOption = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="active or suspended (use `principal revoke` to revoke).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Change a user's attributes or suspend / reactivate them (an admin's act)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    refuse_undecodable("NAME", name)
    changes: dict[str, Any] = {}
    if org is not None:
        refuse_undecodable("--org", org)
        changes["organisation"] = org
    if level is not None:
        changes["level"] = level
    if sector and no_sectors:
        raise InputError("give --sector or --no-sectors, not both")
    if sector:
        changes["sectors"] = list(check_sectors(sector))
    if no_sectors:
        changes["sectors"] = []
    if training_expires is not None:
        changes["training_expires"] = _required_date(training_expires, "--training-expires")
    if nda_signed is not None:
        changes["nda_signed"] = _required_date(nda_signed, "--nda-signed")
    if status is not None:
        if status not in {"active", "suspended"}:
            raise InputError(
                "--status must be active or suspended (revoke with `principal revoke`)"
            )
        changes["status"] = status
    if not changes:
        raise InputError("nothing to change: give at least one option")
    with client(state) as me:
        principal = me.update_principal(name, changes)
        state.output.result(_principal_row(principal), human=f"updated {name}")


@principal_app.command("revoke")
def principal_revoke(ctx: typer.Context, name: Annotated[str, _NAME]) -> None:
    """Revoke a user for good (an admin's act)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    refuse_undecodable("NAME", name)
    with client(state) as me:
        principal = me.revoke_principal(name)
        state.output.result(_principal_row(principal), human=f"revoked {name}")


@principal_app.command("list")
def principal_list(ctx: typer.Context) -> None:
    """List every registered user (from the index of the log)."""
    from pcii_vault.cli.session import client

    state: CliState = ctx.obj
    with client(state) as me:
        rows = [_principal_row(p) for p in me.principals()]
        state.output.rows(
            rows,
            [
                "id",
                "role",
                "organisation",
                "level",
                "sectors",
                "training_expires",
                "nda_signed",
                "contractor",
                "status",
            ],
            title="Principals",
        )


@store_app.command("check")
def store_check(ctx: typer.Context) -> None:
    """Run the conformance probe (conditional writes, checksums, ranges) on the vault's store."""
    from pcii_vault.cli.session import vault_dir
    from pcii_vault.store import open_store
    from pcii_vault.store.probe import check_store

    state: CliState = ctx.obj
    root = vault_dir(state)
    from pcii_vault.config import VaultConfig, VaultPaths

    paths = VaultPaths(root)
    config = VaultConfig.load(paths.config)
    store = open_store(config.store, root_for_file=paths.objects)
    results = check_store(store)
    rows = [{"check": r.check, "result": _outcome(r.passed), "detail": r.detail} for r in results]
    state.output.rows(rows, ["check", "result", "detail"], title=f"Store {store.url}")


@index_app.command("rebuild")
def index_rebuild(
    ctx: typer.Context,
    accept_rollback: Annotated[
        bool,
        typer.Option(
            "--accept-rollback",
            help="Replace an index that holds more events than the log, or other ones "
            "(the vault's evidence that the log was rolled back or forked): the history "
            "the index held is given up for the store's log.",
        ),
    ] = False,
) -> None:
    """Rebuild the local index from the log (it is only a cache of the log)."""
    from pcii_vault.cli.session import opened

    state: CliState = ctx.obj
    with opened(state) as vault:
        count = vault.rebuild_index(accept_rollback=accept_rollback)
        state.output.result({"events": count}, human=f"index rebuilt from {count} log events")


def _date(text: str | None, option: str) -> date | None:
    return None if text is None else _parse_date(text, option)


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from exc


def _required_date(text: str, option: str) -> str:
    return _parse_date(text, option).isoformat()


def _outcome(passed: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "n/a"}[passed]
