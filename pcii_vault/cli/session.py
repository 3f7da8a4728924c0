"""From global options to a working vault and identity: the CLI's only bridge to the core."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pcii_vault.cli.output import CliState
from pcii_vault.errors import ConfigError

if TYPE_CHECKING:
    from pcii_vault.client import Client, Transport
    from pcii_vault.identity import Identity
    from pcii_vault.vault import Vault

__all__ = [
    "client",
    "identity",
    "open_vault",
    "opened",
    "transport",
    "unseal_secret",
    "vault_dir",
]


def vault_dir(state: CliState) -> Path:
    """The vault directory from `--vault` or `PCII_VAULT`.

    Raises:
        ConfigError: neither is given, or a server URL is (the command runs where the
            vault directory is).
    """
    if state.server is not None:
        raise ConfigError(
            "this command runs on the vault's own machine: give --vault DIR, not a server URL"
        )
    if state.vault is None:
        raise ConfigError("no vault given: pass --vault DIR or set PCII_VAULT")
    return state.vault


def unseal_secret(*, confirm: bool = False, shares: bool = False) -> bytes:
    """The unseal secret: from shares when the vault was split, else the passphrase.

    Shares come from the files in `PCII_UNSEAL_SHARES` (which also works for a vault
    whose config does not say so), else from custodians typing them at a terminal; the
    passphrase from `PCII_UNSEAL_SECRET`, else a prompt on a terminal.

    Raises:
        ConfigError: nothing in the environment and no terminal to ask on, or a secret
            in it that is not UTF-8 text.
        InputError: too few, corrupted or foreign shares.
    """
    from pcii_vault.keys.local import UNSEAL_SECRET_ENV, unseal_secret_from_env_or_prompt
    from pcii_vault.keys.shares import SHARES_ENV, shares_from_env_or_prompt

    if shares or os.environ.get(SHARES_ENV):
        return shares_from_env_or_prompt(interactive=sys.stdin.isatty())
    from_env = os.environ.get(UNSEAL_SECRET_ENV)
    if from_env:
        try:
            from_env.encode("utf-8")
        except UnicodeEncodeError:
            # Bytes the environment could not decode (surrogate escapes): no UTF-8 secret.
            raise ConfigError(f"{UNSEAL_SECRET_ENV} is not valid UTF-8 text") from None
    if not from_env and not sys.stdin.isatty():
        if confirm:  # `init`: choosing the secret of a vault to be
            raise ConfigError(
                f"init needs the new vault's unseal secret: set {UNSEAL_SECRET_ENV}, run on a "
                "terminal, or split a random one with --unseal-shares, --unseal-threshold "
                "and --shares-out"
            )
        raise ConfigError(f"the vault is sealed: set {UNSEAL_SECRET_ENV} or run on a terminal")
    return unseal_secret_from_env_or_prompt(confirm=confirm)


def open_vault(
    state: CliState, *, keep_secret: list[bytes] | None = None, serving: bool = False
) -> Vault:
    """Open the vault named by the global options; the keyring unseals on first need.

    `keep_secret` receives the secret that unsealed it (a server hands it to its workers);
    `serving`: for `pcii serve` (its settings for the group commit and the index).
    """
    from pcii_vault.config import Settings
    from pcii_vault.vault import Vault

    vault: Vault | None = None
    given: list[bytes] = []

    def unseal() -> bytes:
        from pcii_vault.keys.local import UNSEAL_SECRET_ENV

        if given:
            # A key operation reads the keyring again under its lock: custodians typed
            # their shares (or the passphrase) once for this command, not once per read.
            return given[0]
        # `vault.json` is authenticated by the keyring it opens: a passphrase in the
        # environment is tried even where the file claims shares, so that a claim
        # edited in is found by the seal (exit 4), not taken for missing shares.
        split = vault is not None and vault.config.unseal_threshold is not None
        secret = unseal_secret(shares=split and not os.environ.get(UNSEAL_SECRET_ENV))
        given.append(secret)
        if keep_secret is not None:
            keep_secret.append(secret)
        return secret

    batching = Settings.from_environment().batching(serving=serving)
    vault = Vault(vault_dir(state), unseal=unseal, batching=batching)
    return vault


def identity(state: CliState) -> Identity:
    """The caller's identity from `--as` or `PCII_IDENTITY`.

    Raises:
        ConfigError: none given, or the file is unusable.
    """
    from pcii_vault.identity import Identity

    if state.server is None:
        vault_dir(state)  # no vault is the first thing to tell a user
    if state.identity is None:
        raise ConfigError("no identity given: pass --as KEYFILE or set PCII_IDENTITY")
    return Identity.load(state.identity)


@contextlib.contextmanager
def opened(state: CliState) -> Iterator[Vault]:
    """The vault, closed again when the command is done."""
    vault = open_vault(state)
    try:
        yield vault
    finally:
        vault.close()


def transport(state: CliState) -> Transport:
    """The way to the core: a `pcii serve` process for an https URL, else this process."""
    if state.server is not None:
        from pcii_vault.service.transport import HttpTransport

        return HttpTransport(state.server, ca=state.ca, identity=identity(state))
    from pcii_vault.client import LocalTransport

    return LocalTransport(open_vault(state))


@contextlib.contextmanager
def client(state: CliState) -> Iterator[Client]:
    """The caller's client of the vault (server or embedded), closed when done.

    Every command acts as someone (`--as`), embedded or not: its role is held to the
    command's, as a server holds it.
    """
    from pcii_vault.client import Client

    me = identity(state)
    way = transport(state)
    try:
        yield Client(way, me)
    finally:
        way.close()
