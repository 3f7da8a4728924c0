"""The one error hierarchy of pcii-vault.

Every failure a caller can act on is a `VaultError`; its family says what to do about it
and maps to exactly one CLI exit code. Programmer mistakes stay `TypeError`/`ValueError`.

Invariant: messages are one line, safe to print (no key material, no plaintext), and
say what was wrong and, where it helps, what to do.
"""

from __future__ import annotations

__all__ = [
    "ActConflictError",
    "BackendError",
    "ConfigError",
    "ConflictError",
    "InputError",
    "IntegrityError",
    "NotFoundError",
    "ObjectExistsError",
    "PolicyDenied",
    "PreconditionFailedError",
    "VaultError",
]


class VaultError(Exception):
    """Root of every error the vault raises on purpose."""

    exit_code: int = 1
    # Whether the act was handed to the log when this was raised: None when unknown (it
    # may be committed all the same); False when the core knows it never was.
    handed_to_log: bool | None = None

    def diagnostics(self) -> str:
        """Return a one-line, printable description of the error."""
        text = " ".join(str(self).split())
        return text or type(self).__name__


class InputError(VaultError):
    """The input is wrong: fix it and try again (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """The vault or client configuration is missing or wrong (exit 2)."""


class NotFoundError(InputError):
    """The named object, record or principal does not exist (exit 2)."""


class PolicyDenied(VaultError):  # noqa: N818 -- a decision, not a malfunction; named for what it is
    """The protection policies refused the request: do not retry (exit 3)."""

    exit_code = 3


class ActConflictError(VaultError):
    """Another act came first and made this one illegal; nothing of it was logged (exit 3).

    Two users acted at once on the same thing (a validation and a withdrawal, a release
    and a destruction): each act is decided at its log position, and this one lost.
    """

    exit_code = 3


class IntegrityError(VaultError):
    """Tampered, forged, truncated or inconsistent data: never retry (exit 4)."""

    exit_code = 4


class BackendError(VaultError):
    """The store or key service is unavailable or misbehaving: retry later (exit 5)."""

    exit_code = 5


class ConflictError(BackendError):
    """A conditional write lost a race: re-read and retry."""


class ObjectExistsError(ConflictError):
    """put_if_absent found the key already present."""


class PreconditionFailedError(ConflictError):
    """put_if_match found a different version than the one expected."""
