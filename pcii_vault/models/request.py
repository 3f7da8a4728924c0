"""Signed requests: every action names its principal and carries their signature.

The signature covers the RFC 8785 canonical JSON of `RequestBody`, so the log can prove
who asked for what, when and why. Invariants: a body names its vault (a request for one
vault is useless at another), a time (stale requests are refused) and a random nonce
(a replayed request is refused); the signature is checked before anything else is read.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from pcii_vault.crypto.canonical import canonical_json
from pcii_vault.crypto.signing import Ed25519PrivateKey, Ed25519PublicKey
from pcii_vault.errors import InputError, IntegrityError
from pcii_vault.models.problems import describe

__all__ = ["RequestBody", "SignedRequest", "sign_request", "verify_act"]


class RequestBody(BaseModel):
    """What a principal asks the vault to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    vault: str = Field(min_length=1, max_length=64)
    principal: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    record: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=1000)
    use: str | None = Field(default=None, max_length=64)
    authority: str | None = Field(default=None, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    time: AwareDatetime = Field(description="when it was signed, with its time zone")
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")

    @field_validator("params")
    @classmethod
    def _survives_the_log(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Parameters are signed and logged as canonical JSON, and read back from the log.

        They must read back as they were: NaN and infinity have no JSON form, and a whole
        float from 2**53 on is written as an integer beyond JSON's exact ones, which the
        audit could not canonicalise again.
        """
        _check_depth(params)
        canonical_json(json.loads(canonical_json(params)))  # ValueError names the number
        return params

    def signing_bytes(self) -> bytes:
        """The exact bytes the principal signs."""
        return canonical_json(self.model_dump(mode="json"))


# An act's parameters are a few levels deep (a submission's file list: 3); the log's
# reader refuses JSON nested past about 200, so a request must never come near it.
MAX_PARAMS_DEPTH = 16


def _check_depth(params: dict[str, Any]) -> None:
    """Refuse parameters nested deeper than `MAX_PARAMS_DEPTH` (checked without recursion).

    Raises:
        ValueError: too deep.
    """
    level: list[Any] = [params]
    for depth in range(1, MAX_PARAMS_DEPTH + 2):
        if depth > MAX_PARAMS_DEPTH:
            raise ValueError(f"params are nested deeper than {MAX_PARAMS_DEPTH} levels")
        inner: list[Any] = []
        for value in level:
            if isinstance(value, dict):
                inner.extend(v for v in value.values() if isinstance(v, dict | list))
            elif isinstance(value, list):
                inner.extend(v for v in value if isinstance(v, dict | list))
        if not inner:
            return
        level = inner


class SignedRequest(BaseModel):
    """A request body and its Ed25519 signature (base64)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: RequestBody
    signature: str = Field(min_length=86, max_length=88)

    def signature_bytes(self) -> bytes:
        """The raw 64-byte signature (empty bytes if it is not valid base64)."""
        try:
            return base64.b64decode(self.signature, validate=True)
        except ValueError:
            return b""

    def to_log(self) -> dict[str, Any]:
        """The form stored verbatim in a log event."""
        return self.model_dump(mode="json")


def sign_request(
    key: Ed25519PrivateKey,
    *,
    vault: str,
    principal: str,
    action: str,
    now: datetime,
    record: str | None = None,
    purpose: str | None = None,
    use: str | None = None,
    authority: str | None = None,
    params: dict[str, Any] | None = None,
    nonce: str | None = None,
) -> SignedRequest:
    """Build and sign a request; `now` and `nonce` are parameters so tests can replay them.

    Raises:
        InputError: a field is over its limit (a tracking number, a purpose...), or text
            that is not valid UTF-8 (undecodable command-line bytes) has no signed form.
    """
    try:
        body = RequestBody(
            vault=vault,
            principal=principal,
            action=action,
            record=record,
            purpose=purpose,
            use=use,
            authority=authority,
            params=params or {},
            time=now,
            nonce=nonce or secrets.token_hex(16),
        )
        signed = body.signing_bytes()
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "string_unicode":  # surrogate escapes of undecodable bytes
                where = ".".join(str(part) for part in error["loc"])
                raise InputError(f"{action} request: {where}: text is not valid UTF-8") from None
        raise InputError(describe(exc, f"{action} request")) from None
    except ValueError as exc:
        # Lone surrogates: bytes the command line could not decode have no UTF-8 form.
        raise InputError(f"{action} request: text is not valid UTF-8") from exc
    signature = key.sign(signed)
    return SignedRequest(body=body, signature=base64.b64encode(signature).decode())


def verify_act(
    request: SignedRequest,
    *,
    vault: str,
    action: str,
    public_key: str,
    now: datetime,
    window: timedelta,
) -> None:
    """Check a signed act: for this vault and action, signed by `public_key`, fresh.

    The nonce (replay) and the principal's standing are the caller's to check.

    Raises:
        IntegrityError: another vault, another action, a bad signature, or a time
            outside `now +- window`.
    """
    body = request.body
    if body.vault != vault:
        raise IntegrityError("request is for another vault")
    if body.action != action:
        raise IntegrityError(f"request was signed for {body.action!r}, not {action!r}")
    key = Ed25519PublicKey(base64.b64decode(public_key))
    try:
        key.verify(body.signing_bytes(), request.signature_bytes())
    except IntegrityError as exc:
        raise IntegrityError(f"request signature of {body.principal!r} does not verify") from exc
    if not now - window <= body.time <= now + window:
        raise IntegrityError(
            f"request time {body.time.isoformat()} is outside the "
            f"{int(window.total_seconds())} s window: check the clock"
        )
