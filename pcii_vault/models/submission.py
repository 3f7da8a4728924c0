"""The PCII submission: what an owner hands to the program office, and its local validation.

A submission follows "What a valid submission carries" in 6 CFR 29.5. Invariants:
- the model is frozen, `extra="forbid"` and strict: a typo or an unexpected field is an
  error, never silently dropped; every string has a maximum length, so an oversized
  field is refused before anything is encrypted or stored;
- single-line fields refuse control characters (a name cannot smuggle a newline into a
  marked header or a cover sheet); multi-line fields allow only newline and tab;
- the express statement must be the statutory text; only whitespace, letter case and a
  final period may differ (6 CFR 29 says "substantially": we read that as the exact
  wording, since altered wording could change what protection was asked for);
- the certification must affirm that the information is not customarily in the public
  domain (a false or missing affirmation is a ground for non-validation);
- sectors, TLP labels and states come from `pcii_vault/data/` (see `reference.py`);
- the TLP label has no default: the submitter chooses who may see it beside PCII
  handling, and a default could silently widen or narrow that choice;
- a federal requirement is an object with both agency and legal authority, so "both or
  neither" holds by construction;
- finding ids and attachment names are unique; attachment names are plain file names
  (ASCII, starting with a letter or digit, no path separators, no `..`, not ending in a
  space or `.`) and may not end in `.PCII.txt`, the
  suffix of the marking sidecars a release adds beside each attachment.

`validate_submission_bytes` is the one entry for untrusted bytes: it reports every
problem with its field path at once (`SubmissionInvalid.problems`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pcii_vault.crypto.canonical import parse_json_object
from pcii_vault.errors import InputError
from pcii_vault.models.reference import reference_data
from pcii_vault.text import hidden_character, visible

__all__ = [
    "EXPRESS_STATEMENT",
    "MAX_SUBMISSION_BYTES",
    "SEVERITIES",
    "STORED",
    "SUBMISSION_FORMAT_VERSION",
    "TRACKING_NUMBER_PATTERN",
    "Attachment",
    "Certification",
    "Contact",
    "Facility",
    "FederalRequirement",
    "Finding",
    "ManifestEntry",
    "Submission",
    "SubmissionInvalid",
    "Submitter",
    "check_manifest",
    "example_attachment_bytes",
    "example_submission",
    "format_tracking_number",
    "is_express_statement",
    "same_organisation",
    "validate_submission_bytes",
]

SUBMISSION_FORMAT_VERSION = 1

# The express statement of 6 CFR 29.5(a)(3), verbatim from the regulation.
EXPRESS_STATEMENT = (
    "This information is voluntarily submitted to the Federal Government in expectation of "
    "protection from disclosure as provided by the provisions of the Critical Infrastructure "
    "Information Act of 2002."
)

# Tracking numbers: `PCII-<year>-<8-digit serial>`, e.g. `PCII-2026-00000123`. The vault
# assigns them (serials may be sequential or random, below 10**8); they never change and
# never carry PCII. Fixed width, so one serial has exactly one spelling.
TRACKING_NUMBER_PATTERN = r"^PCII-([0-9]{4})-([0-9]{8})$"  # also valid ECMA-262 (schema)
_TRACKING_NUMBER_RE = re.compile(TRACKING_NUMBER_PATTERN)

# The validation context of a stored document (`Submission.model_validate(d, context=...)`):
# the checks made against the clock at intake are not made again.
STORED = "stored"

# Untrusted input larger than this is refused before it is parsed.
MAX_SUBMISSION_BYTES = 4 * 1024 * 1024

SEVERITIES = ("critical", "high", "medium", "low", "info")
Severity = Literal["critical", "high", "medium", "low", "info"]
AssessmentType = Literal[
    "vulnerability-assessment",
    "risk-assessment",
    "security-plan",
    "incident-report",
    "other",
]

# One line: at least one visible character, no control characters (C0, DEL, C1).
_LINE = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
# Several lines: newline, carriage return and tab allowed; other control characters not.
_TEXT = (
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[^\s\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
    r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
)


def _line(max_length: int, description: str) -> Any:  # noqa: ANN401 -- a pydantic FieldInfo
    return Field(min_length=1, max_length=max_length, pattern=_LINE, description=description)


def _text(max_length: int, description: str) -> Any:  # noqa: ANN401 -- a pydantic FieldInfo
    return Field(min_length=1, max_length=max_length, pattern=_TEXT, description=description)


def _normalise_statement(text: str) -> str:
    return " ".join(text.split()).casefold().removesuffix(".").rstrip()


_EXPRESS_STATEMENT_NORMALISED = _normalise_statement(EXPRESS_STATEMENT)


def is_express_statement(text: str) -> bool:
    """Tell whether `text` is the statutory express statement.

    Whitespace runs, letter case and one final period may differ; any change of wording
    may not.

    Args:
        text: the statement as the submitter wrote it.

    Returns:
        True when it is the statutory text under that normalisation.
    """
    return _normalise_statement(text) == _EXPRESS_STATEMENT_NORMALISED


def _check_express_statement(text: str) -> str:
    if not is_express_statement(text):
        raise PydanticCustomError(
            "express_statement",
            "must be the statutory express statement of the CII Act of 2002 "
            "(only whitespace, letter case and the final period may differ)",
        )
    return text


def _check_in(values: tuple[str, ...], what: str) -> Any:  # noqa: ANN401 -- a validator
    def check(value: str) -> str:
        if value not in values:
            raise PydanticCustomError(
                "not_in_list",
                "unknown {what}; must be one of: {allowed}",
                {"what": what, "allowed": ", ".join(_quote(v) for v in values)},
            )
        return value

    return AfterValidator(check)


def _quote(value: str) -> str:
    """Quote a value for an error message, escaping control characters (no terminal tricks)."""
    return json.dumps(value[:128], ensure_ascii=False)


def _iso_date(value: object) -> object:
    # Dates travel as JSON strings; accept only the plain ISO form (no timestamps, no
    # numbers), then let the strict date validator see a real `date`.
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise PydanticCustomError("date_format", "must be a date written YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date_format", "not a valid calendar date") from None
    return value


def _check_tracking_number(value: str) -> str:
    if not _TRACKING_NUMBER_RE.fullmatch(value):
        raise PydanticCustomError(
            "tracking_number", "must be a tracking number like PCII-2026-00000123"
        )
    return value


_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def _check_email(value: str) -> str:
    local, _, _ = value.partition("@")
    if not _EMAIL_RE.fullmatch(value) or len(local) > 64:
        raise PydanticCustomError("email", "not a valid email address")
    return value


def _check_phone(value: str) -> str:
    digits = sum(ch.isdigit() for ch in value)
    if not re.fullmatch(r"\+?[0-9(][0-9 ().-]*[0-9]( ?(x|ext\.?) ?[0-9]{1,6})?", value) or not (
        7 <= digits <= 20
    ):
        raise PydanticCustomError(
            "phone", "not a valid phone number (digits, spaces, + ( ) . - and an extension)"
        )
    return value


_SIDECAR_SUFFIX = ".pcii.txt"


def _check_file_name(value: str) -> str:
    if (
        not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ +-]*", value)
        or ".." in value
        or value.endswith((" ", "."))
    ):
        raise PydanticCustomError(
            "file_name",
            "not a safe file name (ASCII letters, digits, '.', '_', '-', '+' and spaces, "
            "starting with a letter or digit and not ending in a space or '.'; no path "
            "separators, no '..')",
        )
    if value.casefold().endswith(_SIDECAR_SUFFIX):
        raise PydanticCustomError(
            "file_name", "file names ending in .PCII.txt are reserved for marking sidecars"
        )
    return value


def _duplicates(values: Sequence[object], path: str, key: str) -> list[str]:
    """Describe every repeated value as `path[i].key: duplicate of path[j].key`."""
    first: dict[object, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value in first:
            problems.append(f"{path}[{index}].{key}: duplicate of {path}[{first[value]}].{key}")
        else:
            first.setdefault(value, index)
    return problems


_REF = reference_data()

Line200 = Annotated[str, _line(200, "one line of text")]
# The lists come from data, so the schema's enums are filled in from the same data.
SectorName = Annotated[
    str,
    _check_in(_REF.sector_names, "sector"),
    WithJsonSchema({"type": "string", "enum": list(_REF.sector_names)}),
]
TlpLabel = Annotated[
    str,
    _check_in(_REF.tlp_names, "TLP label"),
    WithJsonSchema({"type": "string", "enum": list(_REF.tlp_names)}),
]
StateCode = Annotated[
    str,
    _check_in(_REF.state_codes, "state or territory"),
    WithJsonSchema({"type": "string", "enum": list(_REF.state_codes)}),
]
Email = Annotated[str, AfterValidator(_check_email)]
Phone = Annotated[str, AfterValidator(_check_phone)]
FileName = Annotated[str, AfterValidator(_check_file_name)]
TrackingNumber = Annotated[
    str,
    AfterValidator(_check_tracking_number),
    WithJsonSchema({"type": "string", "pattern": TRACKING_NUMBER_PATTERN, "maxLength": 18}),
]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def _signed_by_now(value: date, info: ValidationInfo) -> date:
    # A certification cannot be signed after it is received. One day of slack: the
    # signer's "today" east of UTC is tomorrow here. A stored document was checked at its
    # intake, by the receiving clock: a release on another (slower) clock is not refused.
    if info.context and info.context.get(STORED):
        return value
    if value > datetime.now(UTC).date() + timedelta(days=1):
        raise PydanticCustomError(
            "date_future", "is in the future; give the date the certification was signed"
        )
    return value


SignedDate = Annotated[IsoDate, AfterValidator(_signed_by_now)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Contact(_Model):
    """A person the program office may contact about the submission."""

    name: str = _line(200, "full name")
    organisation: str = _line(200, "organisation")
    mailing_address: str = _text(500, "postal address; may span lines")
    email: Email = Field(max_length=254, description="email address")
    phone: Phone = Field(max_length=32, description="phone number, e.g. +1 555 010 0142")


class Submitter(_Model):
    """Who submits: the owner/operator, or its authorised representative."""

    organisation: str = _line(200, "owner or operator organisation")
    name: str = _line(200, "person submitting on its behalf")


class Certification(_Model):
    """The signed certification that accompanies the express statement."""

    signed_by: str = _line(200, "name of the person certifying")
    title: str = _line(200, "title of the person certifying")
    organisation: str = _line(200, "organisation of the person certifying")
    date: SignedDate = Field(
        description="date signed, YYYY-MM-DD; not in the future (UTC, one day's allowance)"
    )
    not_customarily_in_public_domain: bool = Field(
        description="the submitter certifies the information is not customarily in the "
        "public domain; must be true"
    )
    authorised_representative: bool = Field(
        description="true when the signer is an authorised representative rather than "
        "the owner/operator itself"
    )

    @field_validator("not_customarily_in_public_domain")
    @classmethod
    def _must_affirm(cls, value: bool) -> bool:
        # Information customarily in the public domain cannot be PCII (a ground for
        # non-validation); without this affirmation the submission is deficient.
        if value is not True:
            raise PydanticCustomError(
                "certification",
                "must be true: the submitter certifies the information is not "
                "customarily in the public domain",
            )
        return value


class Facility(_Model):
    """The facility or system the assessment is about (fictional in examples)."""

    name: str = _line(200, "facility name")
    city: str = _line(100, "city")
    state: StateCode = Field(description="two-letter USPS code of the state or territory")
    description: str = _text(2000, "what the facility is and does")


class Finding(_Model):
    """One finding of the assessment."""

    id: str = Field(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="identifier, unique within the submission, e.g. F-01",
    )
    severity: Severity
    affected_asset: str = _line(300, "the asset or system affected")
    description: str = _text(10_000, "what was found")
    recommendation: str = _text(10_000, "what to do about it")


class FederalRequirement(_Model):
    """The federal agency that requires the information, and its legal authority."""

    agency: str = _line(200, "requiring federal agency")
    legal_authority: str = _line(500, "statute or regulation under which it is required")


class Attachment(_Model):
    """A file sent with the submission, described in a sentence or two."""

    name: FileName = Field(max_length=128, description="file name as given with --attach")
    description: str = _text(2000, "short description of the file's content")


class Submission(_Model):
    """A PCII submission as the owner writes it (JSON), validated before anything is sent."""

    model_config = ConfigDict(
        title="PCII submission",
        json_schema_extra={"$id": "https://pcii-vault.example/schema/submission/v1"},
    )

    v: Literal[1] = Field(default=1, description="submission format version")
    express_statement: Annotated[str, AfterValidator(_check_express_statement)] = Field(
        max_length=1000, description=f"the statutory text: {EXPRESS_STATEMENT}"
    )
    certification: Certification
    submitter: Submitter
    primary_contact: Contact
    secondary_contact: Contact | None = None
    sector: SectorName = Field(description="critical infrastructure sector (PPD-21 name)")
    facility: Facility
    assessment_type: AssessmentType
    title: str = _line(300, "title of the assessment")
    summary: str = _text(20_000, "executive summary")
    # strict=False on the two lists only: JSON arrays arrive as Python lists; the items
    # stay strict models.
    findings: tuple[Finding, ...] = Field(min_length=1, max_length=500, strict=False)
    related_tracking_number: TrackingNumber | None = Field(
        default=None, description="the earlier submission this one supplements, if any"
    )
    federal_requirement: FederalRequirement | None = Field(
        default=None,
        description="when a federal body requires this information: agency and authority",
    )
    tlp: TlpLabel = Field(
        description="Traffic Light Protocol 2.0 label (beside PCII, never instead of it)"
    )
    attachments: tuple[Attachment, ...] = Field(default=(), max_length=100, strict=False)

    @field_validator("v", mode="before")
    @classmethod
    def _a_number(cls, value: object) -> object:
        # `true == 1` in Python: a JSON true would pass as version 1.
        if isinstance(value, bool):
            raise PydanticCustomError("version", "must be one of: 1")
        return value

    @field_validator("findings")
    @classmethod
    def _unique_finding_ids(cls, findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
        problems = _duplicates([f.id for f in findings], "findings", "id")
        if problems:
            raise PydanticCustomError("duplicate", "; ".join(problems))
        return findings

    @field_validator("attachments")
    @classmethod
    def _unique_attachment_names(
        cls, attachments: tuple[Attachment, ...]
    ) -> tuple[Attachment, ...]:
        # Case-insensitively: two names that differ only in case collide on many disks.
        problems = _duplicates([a.name.casefold() for a in attachments], "attachments", "name")
        if problems:
            raise PydanticCustomError("duplicate", "; ".join(problems))
        return attachments


_PROBLEMS_SHOWN = 50  # lines of problems on a terminal (`--json` lists them all)


class SubmissionInvalid(InputError):  # noqa: N818 -- an InputError family member, named for the CLI
    """A submission failed local validation; `problems` lists each with its field path."""

    def __init__(self, problems: Sequence[str]) -> None:
        if not problems:
            raise ValueError("SubmissionInvalid needs at least one problem")
        self.problems: tuple[str, ...] = tuple(" ".join(p.split()) for p in problems)
        count = len(self.problems)
        summary = f"submission has {count} problems" if count > 1 else "submission has 1 problem"
        super().__init__(
            self.problems[0] if count == 1 else summary + "\n" + "\n".join(self.problems)
        )

    def diagnostics(self) -> str:
        """One line for one problem; else a summary line, then one line per problem."""
        if len(self.problems) == 1:
            return self.problems[0]
        shown = [f"  {problem}" for problem in self.problems[:_PROBLEMS_SHOWN]]
        if len(self.problems) > _PROBLEMS_SHOWN:
            # 20,000 bad attachments are not 20,000 lines: the first ones say what is wrong.
            shown.append(f"  ... and {len(self.problems) - _PROBLEMS_SHOWN} more")
        return f"submission has {len(self.problems)} problems\n" + "\n".join(shown)


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "submission"


_FIXED_MESSAGES = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must be non-blank text without control characters",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "literal_error": "must be one of: {expected}",
    "string_too_long": "too long (at most {max_length} characters)",
    "too_long": "too long (at most {max_length} items)",
    "too_short": "needs at least {min_length} item(s)",
}


def _message(error: Any) -> str:  # noqa: ANN401 -- a pydantic ErrorDetails
    template = _FIXED_MESSAGES.get(error["type"])
    if template is None:
        message = str(error["msg"])
        return message[:1].lower() + message[1:]
    ctx = {key: str(value) for key, value in error.get("ctx", {}).items()}
    if "expected" in ctx:
        ctx["expected"] = ctx["expected"].replace(" or ", ", ")
    return template.format_map(ctx)


def _problems_of(exc: ValidationError, *, skip_duplicates: bool) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        if skip_duplicates and error["type"] == "duplicate":
            continue  # reported per item, with its own path, by _raw_duplicate_problems
        if error["type"] == "duplicate":
            problems.append(str(error["msg"]))
            continue
        # Pattern errors on a specific regex give a better message where we know it.
        path = _path(tuple(error["loc"]))
        if error["type"] == "string_pattern_mismatch" and path.endswith("].id"):
            problems.append(f"{path}: letters, digits, '.', '_' and '-' only")
            continue
        problems.append(f"{path}: {_message(error)}")
    return problems


def _raw_duplicate_problems(document: dict[str, Any]) -> list[str]:
    """Repeated finding ids and attachment names, found even when other fields are wrong."""
    problems: list[str] = []
    findings = document.get("findings")
    if isinstance(findings, list):
        ids = [f.get("id") if isinstance(f, dict) else None for f in findings]
        problems += _duplicates(
            [i if isinstance(i, str) else object() for i in ids], "findings", "id"
        )
    attachments = document.get("attachments")
    if isinstance(attachments, list):
        names = [a.get("name") if isinstance(a, dict) else None for a in attachments]
        problems += _duplicates(
            [n.casefold() if isinstance(n, str) else object() for n in names],
            "attachments",
            "name",
        )
    return problems


def _is_safe_file_name(name: str) -> bool:
    try:
        _check_file_name(name)
    except PydanticCustomError:
        return False
    return True


def _attachment_problems(
    document: dict[str, Any], attachment_names: Sequence[str], *, exact: bool = True
) -> list[str]:
    """Cross-check the attachments the JSON describes against the files given.

    `exact`: a described name must be the given file's own, case included (at intake; a
    record stored by an older version may differ in case, and is released as described).

    An unsafe name is reported once (by the model for the JSON, here for --attach) and
    left out of the cross-check, so one mistake gives one problem.
    """
    problems: list[str] = []
    # Case-insensitively, as the vault checks the manifest: two names that differ only in
    # case collide on many disks.
    first: dict[str, str] = {}
    for name in attachment_names:
        first.setdefault(name.casefold(), name)
    for folded, count in Counter(name.casefold() for name in attachment_names).items():
        if count > 1:
            problems.append(
                f"--attach: {_quote(first[folded])} given {count} times (names must be unique, "
                "ignoring case)"
            )
    for name in dict.fromkeys(attachment_names):
        try:
            _check_file_name(name)
        except PydanticCustomError as exc:
            problems.append(f"--attach: {_quote(name)}: {exc.message()}")
    given = {name.casefold(): name for name in reversed(attachment_names)}
    described: set[str] = set()
    attachments = document.get("attachments", [])
    for index, item in enumerate(attachments if isinstance(attachments, list) else []):
        raw = item.get("name") if isinstance(item, dict) else None
        if not isinstance(raw, str) or not _is_safe_file_name(raw):
            continue  # reported by the model
        if raw.casefold() in described:
            continue  # a duplicate, reported once as such
        described.add(raw.casefold())
        if raw.casefold() not in given:
            problems.append(
                f"attachments[{index}].name: {_quote(raw)} is described but was not "
                "given with --attach"
            )
        elif exact and given[raw.casefold()] != raw:
            # The release names the file as described: it must be the file's own name.
            problems.append(
                f"attachments[{index}].name: {_quote(raw)} is described but was given with "
                f"--attach as {_quote(given[raw.casefold()])}: the names must match exactly, "
                "case included"
            )
    problems.extend(
        f"attachments: {_quote(name)} was given with --attach but is not described here"
        for name in dict.fromkeys(attachment_names)
        if _is_safe_file_name(name) and name.casefold() not in described
    )
    return problems


def _hidden_text_problems(value: Any, path: str, reported: Sequence[str]) -> list[str]:  # noqa: ANN401 -- any JSON value
    """Text that reads other than it is stored: invisible, bidi or blank-looking characters.

    A name of zero-width spaces passes for given, and a right-to-left override reorders
    what the marked copy shows; the model's patterns see neither (they refuse control
    characters only). Paths the model already reported are left out.
    """
    if isinstance(value, dict):
        return [
            problem
            for key, item in value.items()
            for problem in _hidden_text_problems(item, f"{path}.{key}" if path else key, reported)
        ]
    if isinstance(value, list):
        return [
            problem
            for at, item in enumerate(value)
            for problem in _hidden_text_problems(item, f"{path}[{at}]", reported)
        ]
    if not isinstance(value, str) or any(p.startswith(f"{path}:") for p in reported):
        return []
    if (code := hidden_character(value)) is not None:
        return [f"{path}: holds an invisible or bidirectional character ({code}); type plain text"]
    if value and not visible(value):
        return [f"{path}: {_FIXED_MESSAGES['string_pattern_mismatch']}"]
    return []


def same_organisation(one: str, other: str) -> bool:
    """Whether two organisation names are one, case, spacing and Unicode form aside.

    The form: "Société" typed with composed or decomposed accents (NFC or NFD, as
    editors differ), or in fullwidth letters, is one name (compatibility normalisation).
    """
    return _organisation_key(one) == _organisation_key(other)


def _organisation_key(name: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return " ".join(folded.split())


def _signer_problems(submission: Submission) -> list[str]:
    """A certification signed inside the submitter, by someone of another organisation.

    The signer is the owner/operator itself unless `authorised_representative` says
    otherwise (a consultant, a law firm): then the organisations may differ.
    """
    cert = submission.certification
    if cert.authorised_representative or same_organisation(
        cert.organisation, submission.submitter.organisation
    ):
        return []
    return [
        "certification.organisation: differs from submitter.organisation, yet "
        "authorised_representative is false (a signer of another organisation signs as one)"
    ]


def validate_submission_bytes(
    data: bytes, *, attachment_names: Sequence[str], stored: bool = False
) -> Submission:
    """Validate an owner's submission file, reporting every problem at once.

    Args:
        data: the bytes of the submission JSON, untrusted.
        attachment_names: the file names (base names) given with `--attach`, in order.
        stored: the document of a record already received (a release), checked as it was
            at its intake: text refused since (invisible characters) does not strand it.

    Returns:
        The validated submission.

    Raises:
        SubmissionInvalid: too large, not UTF-8, invalid JSON (with line and column), or
            one or more invalid fields; `problems` lists each with its field path.
    """
    if len(data) > MAX_SUBMISSION_BYTES:
        raise SubmissionInvalid(
            [f"submission: too large ({len(data)} bytes; at most {MAX_SUBMISSION_BYTES})"]
        )
    try:
        document = parse_json_object(data, "submission")
    except InputError as exc:
        raise SubmissionInvalid([str(exc)]) from exc
    problems: list[str] = []
    submission: Submission | None = None
    try:
        submission = Submission.model_validate(document, context={STORED: stored})
    except ValidationError as exc:
        problems += _problems_of(exc, skip_duplicates=True)
    problems += _raw_duplicate_problems(document)
    problems += _attachment_problems(document, attachment_names, exact=not stored)
    if not stored:
        problems += _hidden_text_problems(document, "", problems)
        if submission is not None:
            problems += _signer_problems(submission)
    if problems or submission is None:
        raise SubmissionInvalid(problems)
    return submission


def format_tracking_number(year: int, serial: int) -> str:
    """Format a tracking number: `format_tracking_number(2026, 123)` is `PCII-2026-00000123`.

    Args:
        year: the year of receipt, 1000..9999.
        serial: the serial within that year, 0..99999999.

    Returns:
        The tracking number; it matches `TRACKING_NUMBER_PATTERN`.

    Raises:
        ValueError: year or serial out of range.
    """
    if isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 9999:
        raise ValueError(f"tracking number year out of range: {year!r}")
    if isinstance(serial, bool) or not isinstance(serial, int) or not 0 <= serial <= 99_999_999:
        raise ValueError(f"tracking number serial out of range: {serial!r}")
    return f"PCII-{year:04d}-{serial:08d}"


def example_submission() -> dict[str, Any]:
    """A filled, valid, entirely fictional submission (for `pcii submission template`).

    Riverbend Municipal Water Authority and everyone named here are invented; phone
    numbers are in the 555-01xx range reserved for fiction, emails use `example.org`.

    Returns:
        A JSON-ready dict that `Submission.model_validate` accepts; it describes one
        attachment, `riverbend-scada-assessment.pdf` (see `example_attachment_bytes`).
    """
    return {
        "v": 1,
        "express_statement": EXPRESS_STATEMENT,
        "certification": {
            "signed_by": "Dana Okafor",
            "title": "Director of Operations Security",
            "organisation": "Riverbend Municipal Water Authority",
            "date": "2026-11-20",
            "not_customarily_in_public_domain": True,
            "authorised_representative": False,
        },
        "submitter": {
            "organisation": "Riverbend Municipal Water Authority",
            "name": "Dana Okafor",
        },
        "primary_contact": {
            "name": "Dana Okafor",
            "organisation": "Riverbend Municipal Water Authority",
            "mailing_address": "1200 Quarry Road\nRiverbend, OR 97999",
            "email": "dana.okafor@riverbend-water.example.org",
            "phone": "+1 503 555 0142",
        },
        "secondary_contact": {
            "name": "Luis Ferreira",
            "organisation": "Cascade Industrial Security Partners",
            "mailing_address": "88 Alder Street, Suite 400\nPortland, OR 97999",
            "email": "l.ferreira@cascade-isp.example.org",
            "phone": "+1 503 555 0187",
        },
        "sector": "Water and Wastewater Systems",
        "facility": {
            "name": "North Ridge Treatment Plant",
            "city": "Riverbend",
            "state": "OR",
            "description": "Surface-water treatment plant (40 million gallons a day) "
            "serving the fictional Riverbend service area, with three remote pump stations "
            "controlled over a SCADA network.",
        },
        "assessment_type": "vulnerability-assessment",
        "title": "2026 SCADA and physical security vulnerability assessment",
        "summary": "An external team assessed the plant's control network, remote pump "
        "stations and perimeter in October 2026. Two findings need prompt action: the "
        "historian server bridges the business and control networks, and the remote "
        "pump stations accept unauthenticated Modbus writes from the radio link.",
        "findings": [
            {
                "id": "F-01",
                "severity": "critical",
                "affected_asset": "Pump station telemetry radio link",
                "description": "Remote pump stations accept unauthenticated Modbus/TCP "
                "write commands arriving over the licensed radio link.",
                "recommendation": "Terminate the radio link on a protocol-aware gateway "
                "that allows only the operator HMI to write, and alarm on any other write.",
            },
            {
                "id": "F-02",
                "severity": "high",
                "affected_asset": "Process historian server",
                "description": "The historian is dual-homed on the business network and "
                "the control network, with remote desktop open on both interfaces.",
                "recommendation": "Move the historian to a DMZ and replicate data outward "
                "through a one-way transfer.",
            },
            {
                "id": "F-03",
                "severity": "medium",
                "affected_asset": "Chemical feed building",
                "description": "The chemical feed building door alarm is not monitored "
                "outside business hours.",
                "recommendation": "Route the door alarm to the 24-hour operations desk.",
            },
            {
                "id": "F-04",
                "severity": "low",
                "affected_asset": "Operator workstations",
                "description": "Shared operator accounts are used on two HMI workstations.",
                "recommendation": "Issue named accounts and review access quarterly.",
            },
        ],
        "tlp": "TLP:AMBER",
        "attachments": [
            {
                "name": "riverbend-scada-assessment.pdf",
                "description": "Full assessment report with network diagrams and test "
                "evidence (12 pages).",
            }
        ],
    }


def example_attachment_bytes() -> bytes:
    """A small, structurally valid one-page PDF for the fictional example attachment.

    Returns:
        The bytes of a PDF 1.4 file with a correct cross-reference table.
    """
    text = "Riverbend MWA - SCADA assessment (fictional example)"
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    return bytes(out)


class ManifestEntry(BaseModel):
    """One uploaded object of a submission, as the owner's client lists and signs it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    object: str = Field(pattern=r"^(document|files/(0|[1-9][0-9]{0,3}))$")
    name: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


def check_manifest(files: Sequence[Any]) -> list[ManifestEntry]:
    """The file manifest of a submission, each entry checked; the document first, once.

    A manifest the vault logs is read back by every later command (review, search,
    status): an entry without a name or hash would fail them all, so none is accepted.

    Raises:
        InputError: naming the first bad entry.
    """
    entries: list[ManifestEntry] = []
    for at, entry in enumerate(files):
        try:
            entries.append(ManifestEntry.model_validate(entry))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise InputError(
                f"file manifest entry {at}{'.' + where if where else ''}: {problem['msg']}"
            ) from None
    objects = [entry.object for entry in entries]
    if not objects or objects[0] != "document" or objects.count("document") != 1:
        raise InputError("file manifest: the document must come first, and once")
    if len(set(objects)) != len(objects):
        raise InputError("file manifest: an object is listed twice")
    names = [entry.name.casefold() for entry in entries[1:]]
    if len(set(names)) != len(names):
        raise InputError("file manifest: two attachments have the same name")
    return entries
