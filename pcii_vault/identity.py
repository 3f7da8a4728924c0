"""Identity files: a user's Ed25519 private key and the vault and principal it belongs to.

Invariants: written with mode 0600 and never over an existing file; a file readable by
group or others is refused, like ssh refuses a world-readable private key.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from pcii_vault.crypto.canonical import no_duplicate_keys
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.durable import read_bounded, write_new_file
from pcii_vault.errors import ConfigError, InputError
from pcii_vault.models.principal import PRINCIPAL_ID_PATTERN
from pcii_vault.text import printable

__all__ = ["IDENTITY_FORMAT", "Identity"]

IDENTITY_FORMAT = "pcii-identity/1"
# An identity file is about 200 bytes; a bigger one (or a never-ending pipe) is refused.
MAX_IDENTITY_BYTES = 64 << 10


@dataclass(frozen=True)
class Identity:
    """Who the CLI acts as."""

    vault_id: str
    principal: str
    key: Ed25519PrivateKey

    def save_new(self, path: Path) -> None:
        """Write the identity file with mode 0600; refuses to overwrite.

        Raises:
            InputError: the file exists or cannot be created.
        """
        document = {
            "format": IDENTITY_FORMAT,
            "vault_id": self.vault_id,
            "principal": self.principal,
            "ed25519_seed": base64.b64encode(self.key.seed).decode(),
        }
        data = json.dumps(document, indent=2).encode() + b"\n"
        try:
            write_new_file(path, data, mode=0o600)
        except FileExistsError as exc:
            raise InputError(f"{path} already exists: refusing to overwrite a key file") from exc
        except OSError as exc:
            raise InputError(f"cannot create key file {path}: {exc.strerror}") from exc

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read an identity file.

        Raises:
            ConfigError: missing, unreadable, too permissive, or malformed.
        """
        try:
            info = path.stat()
            raw = read_bounded(path, MAX_IDENTITY_BYTES)
        except FileNotFoundError as exc:
            raise ConfigError(f"identity file {path} not found") from exc
        except IsADirectoryError as exc:
            raise ConfigError(f"identity file {path} is a directory") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read identity file {path}: {exc.strerror}") from exc
        if len(raw) > MAX_IDENTITY_BYTES:
            raise ConfigError(f"identity file {path} is larger than {MAX_IDENTITY_BYTES} bytes")
        try:
            document = json.loads(raw, object_pairs_hook=no_duplicate_keys)
            if document.get("format") != IDENTITY_FORMAT:
                raise ConfigError(f"{path} is not a pcii identity file")
            seed = base64.b64decode(document["ed25519_seed"], validate=True)
            loaded = cls(
                vault_id=_text(document["vault_id"]),
                principal=_text(document["principal"]),  # `5` names no principal
                key=Ed25519PrivateKey(seed),
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConfigError(f"identity file {path} is malformed") from exc
        except RecursionError:
            # JSON nested thousands deep: no identity file nests at all.
            raise ConfigError(f"identity file {path} is malformed (nested too deeply)") from None
        if not re.fullmatch(PRINCIPAL_ID_PATTERN, loaded.principal):
            # Names no principal `principal add` makes; the wire's key id could not carry it.
            raise ConfigError(
                f"identity file {path} is malformed: '{printable(loaded.principal)}' is no "
                "principal name (lower-case letters, digits, '.', '_' and '-')"
            )
        # After its kind: a receipt or a submission given by mistake is named as such,
        # not sent to chmod.
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"identity file {path} is readable by others: chmod 600 it and try again"
            )
        return loaded


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, not {type(value).__name__}")
    return value
