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
    from pcii_vault.identity import Identity
    from pcii_vault.vault import Vault

__all__ = ["acting", "identity", "open_vault", "opened", "unseal_secret", "vault_dir"]


def vault_dir(state: CliState) -> Path:
    """The vault directory from `--vault` or `PCII_VAULT`.

    Raises:
        ConfigError: neither is given.
    """
    if state.vault is None:
        raise ConfigError("no vault given: pass --vault DIR or set PCII_VAULT")
    return state.vault


def unseal_secret(*, confirm: bool = False) -> bytes:
    """The unseal secret from `PCII_UNSEAL_SECRET`, else a prompt on a terminal.

    Raises:
        ConfigError: no secret in the environment and no terminal to ask on.
    """
    from pcii_vault.keys.local import UNSEAL_SECRET_ENV, unseal_secret_from_env_or_prompt

    if not os.environ.get(UNSEAL_SECRET_ENV) and not sys.stdin.isatty():
        raise ConfigError(f"the vault is sealed: set {UNSEAL_SECRET_ENV} or run on a terminal")
    return unseal_secret_from_env_or_prompt(confirm=confirm)


def open_vault(state: CliState) -> Vault:
    """Open the vault named by the global options; the keyring unseals on first need."""
    from pcii_vault.vault import Vault

    return Vault(vault_dir(state), unseal=unseal_secret)


def identity(state: CliState) -> Identity:
    """The caller's identity from `--as` or `PCII_IDENTITY`.

    Raises:
        ConfigError: none given, or the file is unusable.
    """
    from pcii_vault.identity import Identity

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


@contextlib.contextmanager
def acting(state: CliState) -> Iterator[tuple[Vault, Identity]]:
    """The vault and the caller's identity, for a command that signs a request."""
    me = identity(state)
    with opened(state) as vault:
        yield vault, me
