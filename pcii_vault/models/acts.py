"""One typed model per action: the parameters a signed request may carry, as fields.

The client builds a request's `params` from these models, the core refuses a request
whose parameters do not fit its action (exit 2, with the field path), and the history
replay of `pcii audit verify` refuses a logged request that does not (exit 4). So a
`validate` cannot carry a stray `ground`, a `destroy` cannot smuggle anything into the
event its details are copied to, and every parameter that reaches the log has a meaning.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pcii_vault.errors import InputError
from pcii_vault.models.problems import describe

__all__ = [
    "ACT_PARAMS",
    "DECONTROL_BASES",
    "ActParams",
    "DecontrolParams",
    "KeyParams",
    "ReasonParams",
    "RegisterParams",
    "RejectParams",
    "RevokeParams",
    "SubmitParams",
    "UpdateParams",
    "ValidateParams",
    "check_params",
    "params_of",
]

_Reason = Annotated[str, StringConstraints(max_length=2000)]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class ActParams(BaseModel):
    """The parameters of one action (subclassed per action).

    Build them from a user's input with `of(...)`: a value over its limit is the user's to
    fix, one line naming the field. `check_params` reads a request's parameters with
    `model_validate` and names the action they belong to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    @classmethod
    def of(cls, **fields: Any) -> Self:  # noqa: ANN401 -- the model's own fields
        """These parameters from a user's input.

        Raises:
            InputError: a field is missing, of the wrong type or over its limit.
        """
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InputError(describe(exc, "request parameters")) from None


class NoParams(ActParams):
    """Reads and questions: `status`, `search`, `retrieve`, `review`, `identify`..."""


class ValidateParams(ActParams):
    """`validate`: by categorical inclusion or not."""

    categorical: bool = False


class RejectParams(ActParams):
    """`reject`: the 6 CFR 29.6(e) ground and why; `final` for the final finding.

    Whether a finding is the initial or the final one is signed too, so nobody between
    the office and the log can turn one into the other.
    """

    ground: Literal[
        "not-cii",
        "not-voluntary",
        "public-domain",
        "in-lieu-of-regulation",
        "statement-or-certification-missing",
    ]
    reason: _Reason = ""
    final: bool = False


class ReasonParams(ActParams):
    """`withdraw`, `mark-deficient`, `destroy`: why (recorded in the log).

    A `decontrol` logged before its basis was signed carries these too.
    """

    reason: _Reason = ""


# 6 CFR 29 allows a decontrol on these two grounds only.
DECONTROL_BASES = ("submitter-request", "customarily-public")


class DecontrolParams(ActParams):
    """`decontrol`: on which ground 6 CFR 29 allows it, and why.

    `submitter-request`: the submitter asked in writing; `customarily-public`: the office
    found the information customarily in the public domain when it was submitted.
    """

    basis: Literal["submitter-request", "customarily-public"]
    reason: _Reason = ""


class SubmitParams(ActParams):
    """`submit`: the uploaded objects' manifest (name, object, plaintext SHA-256, size)."""

    files: list[dict[str, Any]] = Field(max_length=101)


class RegisterParams(ActParams):
    """`manage-principals` / register: every registered fact."""

    op: Literal["register"]
    principal: _Id
    attributes: dict[str, Any]
    public_key: Annotated[str, StringConstraints(max_length=64)]


class UpdateParams(ActParams):
    """`manage-principals` / update."""

    op: Literal["update"]
    principal: _Id
    changes: dict[str, Any]


class RevokeParams(ActParams):
    """`manage-principals` / revoke."""

    op: Literal["revoke"]
    principal: _Id


class KeyParams(ActParams):
    """`rotate-keys`: status, rotate, rewrap, retire a version, migrate to a provider."""

    op: Literal["status", "rotate", "rewrap", "retire", "migrate"]
    version: int | None = Field(default=None, ge=1)
    to: Annotated[str, StringConstraints(max_length=2000)] | None = None


# Every action a request may name, and the parameters it takes.
ACT_PARAMS: dict[str, tuple[type[ActParams], ...]] = {
    "identify": (NoParams,),
    "unseal": (NoParams,),
    "status": (NoParams,),
    "search": (NoParams,),
    "retrieve": (NoParams,),
    "review": (NoParams,),
    "read-log": (NoParams,),
    "submit": (SubmitParams,),
    "validate": (ValidateParams,),
    "reject": (RejectParams,),
    "withdraw": (ReasonParams,),
    "mark-deficient": (ReasonParams,),
    # Without a basis: a decontrol logged before the basis was signed (audit replay); the
    # core refuses a new one without it.
    "decontrol": (DecontrolParams, ReasonParams),
    "destroy": (ReasonParams,),
    "manage-principals": (RegisterParams, UpdateParams, RevokeParams),
    "rotate-keys": (KeyParams,),
}


def check_params(action: str, params: dict[str, Any]) -> ActParams:
    """The parameters of a request for `action`, as their typed model.

    Raises:
        InputError: an unknown action, or parameters the action does not take (with the
            field path of the first problem).
    """
    models = ACT_PARAMS.get(action)
    if models is None:
        raise InputError(f"unknown action {action!r}")
    first: ValidationError | None = None
    for model in models:
        try:
            return model.model_validate(params)
        except ValidationError as exc:
            first = first or exc
    assert first is not None  # noqa: S101 -- every action has at least one model
    error = first.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "params"
    raise InputError(f"{action} parameters: {where}: {error['msg']}")


def params_of(model: ActParams) -> dict[str, Any]:
    """A model as the `params` a request signs (JSON values, defaults included)."""
    return model.model_dump(mode="json", exclude_none=True)
