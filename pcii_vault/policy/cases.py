"""Declarative policy test cases: request facts in, expected decision out.

A case file (`policies/tests/*.json`) holds `defaults` (principal, record, context
attributes shared by its cases) and `cases`; each case overrides those attributes
(`record: null` for actions on the vault itself) and states what it expects:

    {"defaults": {"principal": {...}, "record": {...}, "context": {...}},
     "cases": [{"name": "...", "principal": {"role": "auditor"}, "action": "retrieve",
                "expect": {"decision": "deny", "policy_ids": ["auditor-no-content"]}}]}

Invariants: files are parsed strictly (unknown keys, bad values and duplicate case names
are input errors, never skipped); `obligations` are compared as exact sets and default
to none, so a new obligation on a permit shows up as a failing case; `policy_ids` are
compared as exact sets when given; a case fails on any evaluation error unless it says
`"error": true`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pcii_vault.crypto.canonical import DuplicateKeyError, no_duplicate_keys
from pcii_vault.durable import read_named_file
from pcii_vault.errors import InputError
from pcii_vault.policy.engine import Decision, PolicyEngine
from pcii_vault.policy.entities import PrincipalFacts, RecordFacts, RequestFacts

__all__ = [
    "CaseRequest",
    "CaseResult",
    "PolicyCase",
    "load_case_file",
    "run_case_file",
    "run_cases",
]

_MAX_CASE_FILE = 16 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_sector(value: str) -> str:
    from pcii_vault.models.reference import reference_data  # noqa: PLC0415

    known = reference_data().sector_names
    if value not in known:
        raise ValueError(f"{value!r} is not a sector; one of: {'; '.join(known)}")
    return value


class PrincipalSpec(_Strict):
    """Principal attributes of a case (see `PrincipalFacts`)."""

    id: str = "principal-1"
    role: str
    organisation: str
    level: str
    sectors: list[str]
    training_expires: datetime | None
    nda_signed: date | None = None
    contractor: bool = False
    status: str = "active"

    @field_validator("sectors")
    @classmethod
    def _known_sectors(cls, value: list[str]) -> list[str]:
        """Sectors of need to know a principal can hold (a typo would decide silently)."""
        for sector in value:
            _known_sector(sector)
        return value

    def facts(self) -> PrincipalFacts:
        """Return the engine's facts for this principal."""
        return PrincipalFacts(
            id=self.id,
            role=self.role,
            organisation=self.organisation,
            level=self.level,
            sectors=frozenset(self.sectors),
            training_expires=self.training_expires,
            nda_signed=self.nda_signed,
            contractor=self.contractor,
            status=self.status,
        )


class RecordSpec(_Strict):
    """Record attributes of a case (see `RecordFacts`)."""

    tracking_number: str = "PCII-0000-0001"
    state: str
    sector: str
    tlp: str = "TLP:AMBER"
    submitter: str = "owner-1"
    submitter_org: str

    @field_validator("sector", "tlp")
    @classmethod
    def _in_the_reference_lists(cls, value: str, info: ValidationInfo) -> str:
        """A sector or TLP label a record can carry (a typo would decide silently)."""
        if info.field_name == "sector":
            return _known_sector(value)
        from pcii_vault.models.reference import reference_data  # noqa: PLC0415

        known = reference_data().tlp_names
        if value not in known:
            raise ValueError(f"{value!r} is not a TLP label; one of: {', '.join(known)}")
        return value

    def facts(self) -> RecordFacts:
        """Return the engine's facts for this record."""
        return RecordFacts(
            tracking_number=self.tracking_number,
            state=self.state,
            sector=self.sector,
            tlp=self.tlp,
            submitter=self.submitter,
            submitter_org=self.submitter_org,
        )


class ContextSpec(_Strict):
    """Request context of a case (see `RequestFacts`)."""

    purpose: str = ""
    use: str = ""
    authority: str | None = None
    emergency: bool = False
    now: datetime

    def facts(self) -> RequestFacts:
        """Return the engine's facts for this request."""
        return RequestFacts(
            purpose=self.purpose,
            use=self.use,
            authority=self.authority,
            emergency=self.emergency,
            now=self.now,
        )


class Expectation(_Strict):
    """What a case expects."""

    decision: Literal["permit", "deny"]
    obligations: list[str] = Field(default_factory=list)
    policy_ids: list[str] | None = None
    # True: the request must fail evaluation (and so be denied with errors).
    error: bool = False


class _CaseSpec(_Strict):
    name: str = Field(min_length=1)
    principal: dict[str, Any] = Field(default_factory=dict)
    action: str
    record: dict[str, Any] | None = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    expect: Expectation


class _Defaults(_Strict):
    principal: dict[str, Any] = Field(default_factory=dict)
    record: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class _CaseFile(_Strict):
    defaults: _Defaults = Field(default_factory=_Defaults)
    cases: list[_CaseSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """A request as facts, ready for `PolicyEngine.decide`."""

    principal: PrincipalFacts
    action: str
    record: RecordFacts | None
    context: RequestFacts

    @classmethod
    def from_attributes(
        cls,
        principal: dict[str, Any],
        action: str,
        record: dict[str, Any] | None,
        context: dict[str, Any],
    ) -> CaseRequest:
        """Build a request from attribute mappings (case-file vocabulary).

        Raises:
            InputError: an attribute is missing, unknown or has a bad value.
        """
        try:
            return cls(
                principal=PrincipalSpec.model_validate(principal).facts(),
                action=action,
                record=None if record is None else RecordSpec.model_validate(record).facts(),
                context=ContextSpec.model_validate(context).facts(),
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise InputError(f"bad request attributes: {problems}") from None
        except ValueError as exc:
            raise InputError(f"bad request attributes: {exc}") from None


@dataclass(frozen=True, slots=True)
class PolicyCase:
    """One declarative case."""

    name: str
    request: CaseRequest
    expect: Expectation


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case."""

    case: PolicyCase
    decision: Decision
    passed: bool
    mismatch: str


def load_case_file(path: Path) -> list[PolicyCase]:
    """Read and check a case file.

    Args:
        path: a JSON case file.

    Returns:
        Its cases, in file order.

    Raises:
        InputError: the file is unreadable, not JSON, or not a valid case file.
    """
    try:
        text = read_named_file(path, _MAX_CASE_FILE, "case file", too_large="16 MiB").decode(
            "utf-8"
        )
        document = json.loads(text, object_pairs_hook=no_duplicate_keys)
        spec = _CaseFile.model_validate(document)
    except DuplicateKeyError as exc:  # a ValueError too: before the catch-all below
        raise InputError(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    except UnicodeDecodeError:  # a ValueError too: before the catch-all below
        raise InputError(f"{path}: not UTF-8 text (a case file is JSON)") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: bad case file at {where}: {first['msg']}") from None
    except ValueError:  # after ValidationError (a ValueError): a number of 5,000 digits
        raise InputError(f"{path}: a JSON number is too large to read") from None
    cases: list[PolicyCase] = []
    seen: set[str] = set()
    for case in spec.cases:
        if case.name in seen:
            raise InputError(f"{path}: duplicate case name {case.name!r}")
        seen.add(case.name)
        record = None if case.record is None else {**spec.defaults.record, **case.record}
        try:
            request = CaseRequest.from_attributes(
                {**spec.defaults.principal, **case.principal},
                case.action,
                record,
                {**spec.defaults.context, **case.context},
            )
        except InputError as exc:
            raise InputError(f"{path}: case {case.name!r}: {exc}") from None
        cases.append(PolicyCase(name=case.name, request=request, expect=case.expect))
    return cases


def run_cases(engine: PolicyEngine, cases: list[PolicyCase]) -> list[CaseResult]:
    """Decide every case and compare with its expectation."""
    results: list[CaseResult] = []
    for case in cases:
        request = case.request
        decision = engine.decide(request.principal, request.action, request.record, request.context)
        problems: list[str] = []
        if decision.decision != case.expect.decision:
            problems.append(f"decision {decision.decision}, expected {case.expect.decision}")
        if set(decision.obligations) != set(case.expect.obligations):
            problems.append(
                f"obligations {sorted(decision.obligations)}, "
                f"expected {sorted(case.expect.obligations)}"
            )
        expected_ids = case.expect.policy_ids
        if expected_ids is not None and set(decision.policy_ids) != set(expected_ids):
            problems.append(
                f"policies {sorted(decision.policy_ids)}, expected {sorted(expected_ids)}"
            )
        if decision.errors and not case.expect.error:
            problems.append("errors: " + "; ".join(decision.errors))
        if case.expect.error and not decision.errors:
            problems.append("expected an evaluation error, got none")
        results.append(CaseResult(case, decision, not problems, "; ".join(problems)))
    return results


def run_case_file(engine: PolicyEngine, path: Path) -> list[CaseResult]:
    """Load `path` and run its cases against `engine`."""
    return run_cases(engine, load_case_file(path))
