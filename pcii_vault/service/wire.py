"""What travels between a client and `pcii serve`: one typed body per route, errors as data.

Every act's body carries the canonical signed request (it goes into the log as in
embedded mode) and the act's own fields. Results travel as JSON (pydantic dumps of the
core's types); errors as `{"error", "exit_code", "kind", "problems"}`, so the client
raises the same error class with the same one-line message as embedded mode.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.models.request import SignedRequest

__all__ = [
    "API_PREFIX",
    "ERROR_KINDS",
    "MAX_SHARE_CHARS",
    "RELEASE_HEADER",
    "Act",
    "ErrorBody",
    "decode_b64",
    "error_from_body",
    "shown",
    "status_for",
]

API_PREFIX = "/v1"
SHOWN_CHARACTERS = 80  # of a client-supplied name that an error message echoes
MAX_SHARE_CHARS = 2000  # an unseal share (33 words) is far shorter
RELEASE_HEADER = "X-PCII-Release"  # the staged release's metadata (JSON), before its files

# Error classes a server may name; anything else arrives as the family's base class.
ERROR_KINDS: dict[str, type[VaultError]] = {
    cls.__name__: cls
    for cls in (
        VaultError,
        ActConflictError,
        InputError,
        ConfigError,
        NotFoundError,
        PolicyDenied,
        IntegrityError,
        BackendError,
        ConflictError,
    )
}


# The most specific family first: a NotFoundError is an InputError too.
_STATUS: tuple[tuple[type[VaultError], int], ...] = (
    (ActConflictError, 409),
    (NotFoundError, 404),
    (InputError, 400),
    (PolicyDenied, 403),
    (IntegrityError, 422),
    (ConflictError, 409),
    (BackendError, 503),
)


def status_for(exc: VaultError) -> int:
    """The HTTP status a core error answers with (the exit code travels in the body)."""
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 500)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorBody(_Wire):
    """Every error answer."""

    error: str = Field(description="one line, safe to print")
    exit_code: int = Field(ge=1, le=5)
    kind: str = Field(description="the error class (e.g. PolicyDenied)")
    problems: list[str] = Field(default_factory=list)
    handed_to_log: bool | None = Field(
        default=None,
        description="false when the act was never handed to the log (absent: unknown)",
    )


def error_from_body(body: ErrorBody) -> VaultError:
    """The error a client raises for a server's answer (same class, same message)."""
    from pcii_vault.models.submission import SubmissionInvalid  # noqa: PLC0415 -- rare

    if body.kind == SubmissionInvalid.__name__ and body.exit_code == SubmissionInvalid.exit_code:
        with contextlib.suppress(ValueError):  # no problems listed: the plain error below
            return SubmissionInvalid(body.problems)  # a summary line, then one per problem
    cls = ERROR_KINDS.get(body.kind)
    if cls is None or cls.exit_code != body.exit_code:
        cls = next((c for c in ERROR_KINDS.values() if c.exit_code == body.exit_code), VaultError)
    error = cls(body.error)
    error.handed_to_log = body.handed_to_log
    if body.problems:
        error.problems = tuple(body.problems)  # type: ignore[attr-defined]
    return error


class Act(_Wire):
    """A signed request alone (status, identify, destroy, key acts...)."""

    request: SignedRequest


class SearchBody(Act):
    """`search`: optional filters."""

    sector: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=40)


class TransitionBody(Act):
    """A lifecycle transition: the event type the signed action stands for."""

    event_type: str = Field(max_length=40)


UPLOAD_TICKET_MAX = 64  # characters; the server's tickets have 32


class SubmissionBody(Act):
    """`submit`: the uploaded objects' manifest and the data key sealed to the intake key."""

    tracking_number: str = Field(max_length=64)
    sealed_dek: str = Field(max_length=512, description="base64")
    files: list[dict[str, Any]] = Field(max_length=1000)
    upload_ticket: str | None = Field(
        default=None,
        max_length=UPLOAD_TICKET_MAX,
        description="the ticket issued with the tracking number (POST /v1/tracking-numbers)",
    )


class PrincipalBody(Act):
    """`principal add`."""

    principal_id: str = Field(max_length=64)
    attributes: dict[str, Any]
    public_key: str = Field(max_length=64, description="base64 Ed25519 public key")


class PrincipalUpdateBody(Act):
    """`principal update`."""

    principal_id: str = Field(max_length=64)
    changes: dict[str, Any]


class PrincipalIdBody(Act):
    """`principal revoke`."""

    principal_id: str = Field(max_length=64)


class DeadlinesBody(Act):
    """`office due`."""

    until: AwareDatetime


class RetireBody(Act):
    """`keys retire`."""

    version: int = Field(ge=1)


class MigrateBody(Act):
    """`keys migrate` (the target URI as the admin gave it)."""

    target: str = Field(max_length=2000)


class UnsealBody(Act):
    """`unseal`: one custodian's SLIP-39 share (the act is signed for `unseal`)."""

    share: str = Field(max_length=MAX_SHARE_CHARS, description="the share's words")


class VaultInfoBody(_Wire):
    """`GET /v1/info`: the vault's public facts."""

    vault_id: str
    intake_public_key: str = Field(description="base64 X25519 public key")
    kek_version: int | None = Field(description="the current KEK version; null while sealed")
    log_key: str
    log_origin: str


class TrackingNumberBody(_Wire):
    """A fresh tracking number, and the ticket its uploads, discards and submit carry."""

    tracking_number: str
    upload_ticket: str = Field(
        description="binds the tracking number to the owner who asked for it: give it as "
        "`?ticket=` to PUT and DELETE /v1/uploads/..., and in the submission's body"
    )


def shown(name: str) -> str:
    """A client-supplied name (key id, upload name) as an error message quotes it: cut.

    An error is one line a person reads; a 60 KiB key id echoed whole is neither.
    """
    if len(name) <= SHOWN_CHARACTERS:
        return repr(name)
    return f"{name[:SHOWN_CHARACTERS]!r}..."


def decode_b64(text: str, what: str) -> bytes:
    """Strict base64, or an InputError naming the field."""
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise InputError(f"{what} is not base64") from exc


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _adapter(kind: type[Any]) -> TypeAdapter[Any]:
    # Building an adapter builds the type's whole schema (about 1 ms for a result type):
    # once per type, not once per response. (Two threads may both build one: harmless.)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def dump(value: object) -> dict[str, Any]:
    """A core result (a dataclass or a model) as a JSON-ready object."""
    data = _adapter(type(value)).dump_python(value, mode="json")
    if not isinstance(data, dict):  # pragma: no cover - every result type is a record
        raise TypeError(f"{type(value).__name__} does not dump to an object")
    return data


def load(kind: type[Any], data: Any) -> Any:  # noqa: ANN401 -- any core result type
    """A core result type from JSON data (strictly)."""
    return _adapter(kind).validate_python(data)


def aware(value: datetime) -> datetime:
    """A datetime that carries its time zone (the wire never sends naive times)."""
    if value.tzinfo is None:
        raise InputError("times on the wire carry their time zone")
    return value
