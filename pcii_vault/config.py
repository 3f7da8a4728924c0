"""Vault configuration: one file in the vault directory, one settings model for the client.

`VaultConfig` is written once by `pcii init` and holds nothing secret: the vault id, where
objects live, the log's origin and public key, and the intake public key owners seal data
keys to. `Settings` reads the `PCII_` environment once, at the edge, and is passed down.

Invariant: a config file that fails to parse or names an unknown format version is refused
(IntegrityError, or ConfigError for the user's own field and another format); the vault
never guesses.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pcii_vault.durable import read_regular, write_new_file
from pcii_vault.errors import ConfigError, IntegrityError
from pcii_vault.models.problems import describe

__all__ = ["CONFIG_NAME", "INIT_MARKER", "Settings", "VaultConfig", "VaultPaths"]

CONFIG_NAME = "vault.json"
_MAX_CONFIG_BYTES = 64 << 10  # a vault.json is about 1 KiB

# Made by `init` in a new vault directory before anything else, removed once it is done.
INIT_MARKER = ".init-under-way"


class VaultConfig(BaseModel):
    """What `pcii init` records about a vault (public facts only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["pcii-vault/1"] = "pcii-vault/1"
    vault_id: str = Field(pattern=r"^[a-z0-9-]{8,64}$")
    created: datetime
    store: str = Field(description="'file' (objects in the vault directory) or s3://bucket/prefix")
    log_origin: str = Field(min_length=1, max_length=200)
    log_key: str = Field(
        # name+keyid+base64(0x01 || Ed25519 key): the form, before any use checks the rest.
        pattern=r"^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$",
        description="the log's signed-note verifier key",
    )
    intake_public_key: str = Field(description="X25519 public key, base64, for owner-side sealing")
    request_window_seconds: int = Field(default=300, ge=10, le=3600)
    kek: str = Field(
        default="local",
        description="where KEKs live at init: local, pkcs11:..., openbao:..., awskms:... "
        "(no secrets: a PKCS#11 pin-value is never recorded); migrations are in the log",
    )
    unseal_threshold: int | None = Field(
        default=None,
        ge=2,
        le=16,
        description="when set, the unseal secret is split into SLIP-39 shares: how many unseal",
    )
    log_signer: str = Field(
        default="local", description="where the log's Ed25519 key lives: local or a provider"
    )
    seal: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="HMAC-SHA256 (hex) of every field above but `store`, under a key derived "
        "from the sealed keyring: the vault refuses a vault.json edited outside it (a key "
        "holder's address or module path) before it opens any key holder",
    )

    @field_validator("intake_public_key")
    @classmethod
    def _an_x25519_key(cls, value: str) -> str:
        """Read before the seal is checked (a client's first look): refused here if no key."""
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes, not an X25519 public key's 32")
        return value

    def sealed_fields(self) -> bytes:
        """What `seal` authenticates: every field but `store` (a vault may move) and itself."""
        return self.model_dump_json(exclude={"store", "seal"}).encode()

    def save_new(self, path: Path) -> None:
        """Write the config file; refuses to replace an existing one."""
        data = self.model_dump_json(indent=2).encode() + b"\n"
        try:
            write_new_file(path, data, mode=0o644)
        except FileExistsError as exc:
            raise ConfigError(f"{path} already exists: refusing to overwrite a vault") from exc

    @classmethod
    def load(cls, path: Path) -> VaultConfig:
        """Read and validate a vault's config file.

        Raises:
            ConfigError: missing, unreadable, of another format, or its `store` invalid.
            IntegrityError: too large, or any other field damaged (see `_refusal`).
        """
        try:
            data = read_regular(path, _MAX_CONFIG_BYTES)
        except FileNotFoundError as exc:
            where = str(path.parent)
            if re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", where):
                # `--vault 127.0.0.1:8443`: a server's address without its scheme.
                raise ConfigError(
                    f"no vault at {where} (missing {path.name}); for a vault server, "
                    f"write --vault https://{where}"
                ) from exc
            if (path.parent / INIT_MARKER).exists():
                raise ConfigError(
                    f"no vault at {where} (missing {path.name}): an `init` of it is under "
                    "way or was cut short; if none is running, remove the directory and "
                    "run `pcii --vault DIR init` again"
                ) from exc
            raise ConfigError(
                f"no vault at {where} (missing {path.name}); run `pcii --vault DIR init`"
            ) from exc
        except IsADirectoryError:
            raise IntegrityError(
                f"{path} is a directory, not the vault's config (put there): restore the "
                "file from a backup"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if len(data) > _MAX_CONFIG_BYTES:
            raise IntegrityError(f"{path} is larger than any vault config ({len(data)} bytes)")
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise _refusal(exc, path) from exc


def _refusal(exc: ValidationError, path: Path) -> ConfigError | IntegrityError:
    """Why `path` is no usable config: the user's to fix, or damage of ours.

    `store` is the one field a user edits (a vault moves to another bucket): a bad value
    there is a config error (exit 2), as is another format version (written by another
    release). Any other field is written by `pcii init` and sealed: a file that is no JSON,
    lacks a field or holds a wrong value was damaged or edited outside the vault (exit 4,
    like a failed seal).
    """
    fields = {str(error["loc"][0]) if error["loc"] else "" for error in exc.errors()}
    if fields == {"store"}:
        return ConfigError(describe(exc, f"{path}: invalid vault config"))
    if "format" in fields:
        return ConfigError(
            describe(exc, f"{path}: not a vault config of this release (format pcii-vault/1)")
        )
    return IntegrityError(
        describe(
            exc, f"{path} is damaged or was edited outside the vault, not as `pcii init` wrote it"
        )
    )


class VaultPaths:
    """Where a vault's local files live inside its directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def config(self) -> Path:
        """The public configuration file."""
        return self.root / CONFIG_NAME

    @property
    def keyring(self) -> Path:
        """The sealed keyring (KEKs, log signing key, intake key)."""
        return self.root / "keyring.sealed"

    @property
    def index(self) -> Path:
        """The SQLite projection of the log (a cache: rebuildable from the log)."""
        return self.root / "index.sqlite"

    @property
    def anchor(self) -> Path:
        """The last log checkpoint this vault signed or verified (rollback and fork check)."""
        return self.root / "log-checkpoint"

    @property
    def objects(self) -> Path:
        """The embedded filesystem store's root."""
        return self.root / "objects"


@dataclass(frozen=True)
class Batching:
    """Group commit: a batch closes at `max_acts` acts or `max_age` seconds.

    `index_write_every`: a long-lived core (a server) writes its index file at most this
    often (seconds) and when it stops, rather than after every batch (0): the file is a
    cache of the log, and whoever reads it behind the log catches up from the log.
    """

    max_acts: int = 256
    max_age: float = 0.002
    max_pending: int = 4096
    index_write_every: float = 0.0


class Settings(BaseSettings):
    """Client settings from `PCII_` environment variables, read once at the edge.

    The vault directory, identity and unseal secret are read by the CLI's own options
    (`--vault`/`PCII_VAULT`, `--as`/`PCII_IDENTITY`) and by the keyring
    (`PCII_UNSEAL_SECRET`, never stored in a settings object).
    """

    model_config = SettingsConfigDict(env_prefix="PCII_", extra="ignore")

    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: key=value on a terminal, JSON lines otherwise"
    )
    batch_max_acts: int = Field(
        default=256, ge=1, le=65536, description="a group commit closes at this many acts"
    )
    batch_max_age_ms: float = Field(
        default=2.0, ge=0, le=1000, description="... or when its oldest act waited this long"
    )
    batch_max_pending: int = Field(
        default=4096, ge=1, le=1_000_000, description="acts waiting beyond this are refused"
    )

    server_max_body: int = Field(
        default=1 << 20, ge=1024, description="`pcii serve`: largest JSON body (bytes)"
    )
    server_max_upload: int = Field(
        default=8 << 30, ge=1024, description="`pcii serve`: largest uploaded object (bytes)"
    )
    server_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="`pcii serve`: longest wait for a request's line and headers, "
        "or between body bytes",
    )
    server_skew_s: float = Field(
        # `created` counts whole seconds: a window under one second would refuse them all.
        default=60.0,
        ge=1,
        le=3600,
        description="`pcii serve`: a signed request's max age",
    )
    server_index_write_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="`pcii serve`: write the index file at most this often (and at stop); "
        "0: after every batch",
    )

    def batching(self, *, serving: bool = False) -> Batching:
        """The group-commit settings for the core (`serving`: of a `pcii serve` process)."""
        return Batching(
            max_acts=self.batch_max_acts,
            max_age=self.batch_max_age_ms / 1000,
            max_pending=max(self.batch_max_pending, self.batch_max_acts),
            index_write_every=self.server_index_write_s if serving else 0.0,
        )

    @classmethod
    def from_environment(cls) -> Settings:
        """Read the settings once.

        Raises:
            ConfigError: a `PCII_` variable holds an invalid value.
        """
        try:
            return cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "PCII_" + ".".join(str(p) for p in first["loc"]).upper()
            raise ConfigError(f"{name}: {first['msg']}") from exc
