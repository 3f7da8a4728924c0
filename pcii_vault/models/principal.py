"""Principals: the people (and their keys) the vault knows.

A principal is a projection of `principal.*` log events. Invariant: attributes that the
policies reason about (role, level, sectors, training, NDA, status) are typed and closed,
so a typo cannot widen access.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pcii_vault.errors import PolicyDenied

__all__ = [
    "DEADLINE_READERS",
    "PRINCIPAL_ID_PATTERN",
    "PRINCIPAL_READERS",
    "UPLOADERS",
    "Level",
    "Principal",
    "PrincipalAttributes",
    "Role",
    "Status",
    "require_role",
]

PRINCIPAL_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

Role = Literal["owner", "office", "analyst", "auditor", "admin"]
Level = Literal["federal", "state", "local", "tribal", "territorial", "private"]
Status = Literal["active", "suspended", "revoked"]


class PrincipalAttributes(BaseModel):
    """What an admin states about a user when registering or updating them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    organisation: str = Field(min_length=1, max_length=200)
    level: Level
    sectors: tuple[str, ...] = ()
    training_expires: date | None = None
    nda_signed: date | None = None
    contractor: bool = False


class Principal(PrincipalAttributes):
    """A registered user: attributes, status and the Ed25519 public key that signs for them."""

    id: str = Field(pattern=PRINCIPAL_ID_PATTERN)
    status: Status = "active"
    public_key: str = Field(description="Ed25519 public key, base64")


# Who may list what, in both modes (a listing is not a Cedar decision: no record).
PRINCIPAL_READERS: frozenset[Role] = frozenset({"admin", "auditor"})
DEADLINE_READERS: frozenset[Role] = frozenset({"office", "admin", "auditor"})
# Who puts a submission's ciphertext in the store (and removes it again, unsubmitted).
UPLOADERS: frozenset[Role] = frozenset({"owner"})


def require_role(principal: Principal, roles: frozenset[Role], what: str) -> None:
    """Refuse `principal` unless their role is among `roles`.

    Raises:
        PolicyDenied: another role ("... may not list principals: only admins, auditors").
    """
    if principal.role not in roles:
        allowed = ", ".join(
            "the office" if role == "office" else f"{role}s" for role in sorted(roles)
        )
        raise PolicyDenied(f"{principal.id} ({principal.role}) may not {what}: only {allowed}")
