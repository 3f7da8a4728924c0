"""Release obligations: marking, redaction, watermark and cover sheet, applied on release.

`render_release` turns a decrypted submission and the obligations of a permit into the
files a recipient gets. It is a pure function (no I/O, no clock): same inputs, same
bytes; the caller writes the files atomically. Invariants:
- marking is the baseline, not an option: every released text file starts with the
  header and ends with the footer "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION" and
  carries the 6 CFR 29.6(c) statement verbatim (6 CFR 29: "every copy carries the
  marking"); a policy that omits `mark:pcii` gets the marking anyway, and a cover sheet
  is always written, since every release is a dissemination record. Obligations can add
  protection, never remove it;
- redaction replaces each field of a named group with `[REDACTED: <group>]` and then
  scrubs the redacted values (emails, phone digits, names, addresses) wherever they
  recur in the free text that remains, so a summary that names the submitter does not
  leak it; free text is otherwise released as written;
- whether attachments go to the recipient is the policy's decision, stated by its own
  obligation `withhold:attachments` (never a side effect of a redaction). A released PDF
  is stamped page by page by the caller (`ReleasePackage.stamps`, see marking_pdf.py);
  any other attachment is written as-is under `attachments/<name>` with a marking sidecar
  `<name>.PCII.txt` here. A PDF the caller could not parse is withheld, and the cover
  sheet says so (`unmarkable`);
- user text in document.md is HTML-escaped, so `<!--` or a tag in a summary cannot hide
  the footer or the watermark when the Markdown is rendered;
- an unknown obligation is a programmer error (`ValueError`): policies are validated at
  load, so an obligation this module does not know must never be silently skipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

from pcii_vault.marking_pdf import PdfStamp, is_pdf_name
from pcii_vault.models.reference import reference_data
from pcii_vault.models.submission import STORED, TRACKING_NUMBER_PATTERN, Submission
from pcii_vault.text import printable

__all__ = [
    "COVER_SHEET_NAME",
    "DOCUMENT_JSON_NAME",
    "DOCUMENT_MD_NAME",
    "MARKING_FORMAT_VERSION",
    "OBLIGATIONS",
    "PCII_HEADER",
    "PCII_STATEMENT",
    "REDACTION_GROUPS",
    "ReleasePackage",
    "render_release",
    "sidecar_name",
]

MARKING_FORMAT_VERSION = 1

# The header and footer of every copy, and the 6 CFR 29.6(c) statement, verbatim.
PCII_HEADER = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION"
PCII_STATEMENT = (
    "This document contains PCII. In accordance with the provisions of 6 CFR part 29, this "
    "document is exempt from release under the Freedom of Information Act (5 U.S.C. "
    "552(b)(3)) and similar laws requiring public disclosure. Unauthorized release may "
    "result in criminal and administrative penalties. This document is to be safeguarded "
    "and disseminated in accordance with the CII Act and the PCII Program requirements."
)

OBLIGATIONS = frozenset(
    {
        "mark:pcii",
        "redact:contacts",
        "redact:submitter",
        "watermark:recipient",
        "cover-sheet",
        "notify:program-office",
        "withhold:attachments",
    }
)

# Field paths (in the submission's JSON form) each redaction group removes.
REDACTION_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "contacts": (
            "primary_contact",
            "secondary_contact",
            "certification.signed_by",
            "certification.title",
        ),
        "submitter": (
            "submitter",
            "certification.organisation",
            "facility.name",
            "facility.city",
            "facility.description",
            # An earlier tracking number links this item to the submitter's other ones.
            "related_tracking_number",
        ),
    }
)

DOCUMENT_MD_NAME = "document.md"
DOCUMENT_JSON_NAME = "document.json"
COVER_SHEET_NAME = "COVER-SHEET.txt"
_ATTACHMENTS_DIR = "attachments"

# Person names: their words are scrubbed one by one too ("Ms. Okafor" leaks as well).
_PERSON_NAME_PATHS = frozenset(
    {
        "primary_contact.name",
        "secondary_contact.name",
        "submitter.name",
        "certification.signed_by",
    }
)
_SCRUBBED = "[REDACTED]"
# Every removed value recurs as a whole word or not at all: names of two letters ("Wu")
# are scrubbed like longer ones (a single letter is an initial, not a name).
_MIN_SCRUB_LENGTH = 2


@dataclass(frozen=True)
class ReleasePackage:
    """The files of one release, ready for the caller to write.

    Attributes:
        files: relative file name to bytes (document.md, document.json, COVER-SHEET.txt,
            one `<attachment>.PCII.txt` sidecar per released attachment).
        attachments: names of the stored attachments to release.
        file_names: for each, its file name under `attachments/`: its own, or
            `attachment-<n>.<ext>` when redaction scrubbed something from its name.
        withheld: names of the attachments not released (by policy, or unparseable).
        stamps: for each released PDF attachment, the marking to stamp on its pages.
        redacted: the redaction groups applied, e.g. `("contacts",)`.
        notices: notices the caller must record, e.g. `("program-office",)`.
        obligations: the obligations applied, sorted.
    """

    files: Mapping[str, bytes]
    attachments: tuple[str, ...] = ()
    file_names: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    withheld: tuple[str, ...] = ()
    stamps: Mapping[str, PdfStamp] = field(default_factory=lambda: MappingProxyType({}))
    redacted: tuple[str, ...] = ()
    notices: tuple[str, ...] = ()
    obligations: tuple[str, ...] = field(default=())


def sidecar_name(attachment_name: str) -> str:
    """The marking sidecar's file name for an attachment, e.g. `report.pdf.PCII.txt`."""
    return f"{attachment_name}.PCII.txt"


def _one_line(text: str) -> str:
    """Collapse whitespace and drop control characters: one printable line."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _redact(document: dict[str, Any], group: str) -> tuple[list[str], list[str]]:
    """Replace a group's fields in place.

    Returns:
        The original string values removed (with the words of person names and the lines
        of addresses), and the phone numbers among them.
    """
    replacement = f"[REDACTED: {group}]"
    removed: list[str] = []
    phones: list[str] = []

    def blank(value: Any, path: str) -> Any:  # noqa: ANN401 -- any JSON value
        if isinstance(value, dict):
            return {k: blank(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, str):
            # A contact's organisation is usually the submitter itself: blanked in the
            # contact block, but only `redact:submitter` scrubs it from the rest.
            if not (group == "contacts" and path.endswith(".organisation")):
                removed.append(value)
            if path in _PERSON_NAME_PATHS:
                removed.extend(re.findall(r"[^\W\d_][\w'-]+", value))
            if path.endswith(".mailing_address"):
                removed.extend(line.strip(" ,") for line in value.splitlines())
            if path.endswith(".phone"):
                phones.append(value)
            return replacement
        return value

    for path in REDACTION_GROUPS[group]:
        *parents, leaf = path.split(".")
        node: Any = document
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(leaf) is not None:
            node[leaf] = blank(node[leaf], path)
    return removed, phones


def _scrub_pattern(values: Iterable[str], *, digits: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching every removed value wherever it recurs, longest first."""
    words = {v.strip() for v in values if len(v.strip()) >= _MIN_SCRUB_LENGTH}
    alternatives = [
        rf"(?<!\w){re.escape(word)}(?!\w)" for word in sorted(words, key=lambda w: (-len(w), w))
    ]
    # Phone numbers recur in other spellings: match their last ten digits, any separators.
    for number in digits:
        tail = re.sub(r"\D", "", number)[-10:]
        if len(tail) >= 7:
            alternatives.append(r"(?:\+?1[\s.-]*)?\(?" + r"[\s().+-]*".join(tail))
    if not alternatives:
        return None
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _scrub(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:  # noqa: ANN401
    if isinstance(value, dict):
        return {k: _scrub(v, pattern, replacement) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pattern, replacement) for v in value]
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    return value


def _check_arguments(
    obligations: Iterable[str],
    tracking_number: str,
    recipient: str,
    access_index: int,
    released_at: datetime,
) -> tuple[str, ...]:
    applied = tuple(sorted(set(obligations)))
    unknown = [o for o in applied if o not in OBLIGATIONS]
    if unknown:
        raise ValueError(f"unknown obligation(s): {', '.join(unknown)}")
    if not re.fullmatch(TRACKING_NUMBER_PATTERN, tracking_number):
        raise ValueError(f"not a tracking number: {tracking_number!r}")
    if not recipient or _one_line(recipient) != recipient:
        raise ValueError("recipient must be one non-empty printable line")
    if isinstance(access_index, bool) or access_index < 0:
        raise ValueError(f"access index must be a non-negative int: {access_index!r}")
    if released_at.tzinfo is None:
        raise ValueError("released_at must be timezone-aware")
    return applied


def render_release(
    submission: Submission | Mapping[str, Any],
    attachments: Sequence[Mapping[str, Any]],
    obligations: Iterable[str],
    *,
    tracking_number: str,
    recipient: str,
    access_index: int,
    released_at: datetime,
    purpose: str,
    authority: str | None,
    unmarkable: Mapping[str, str] | None = None,
    pdfs: Collection[str] = (),
) -> ReleasePackage:
    """Apply a permit's obligations to a decrypted submission.

    Args:
        submission: the decrypted submission, as a model or its JSON dict.
        attachments: one mapping per stored attachment with at least `name`, and
            optionally `sha256` (hex) and `size` (bytes); the names must be exactly the
            attachments the submission describes.
        obligations: the decision's obligations (vocabulary: `OBLIGATIONS`).
        tracking_number: the record's tracking number.
        recipient: the principal who receives the copy.
        access_index: log index of the access event that permitted the release.
        released_at: time of release (timezone-aware).
        purpose: the recipient's stated purpose, recorded on the cover sheet.
        authority: a 29.8(f) disclosure-exception id when one is invoked, else None.
        unmarkable: PDF attachments the caller could not stamp, with the reason; they
            are withheld and the cover sheet says why.
        pdfs: attachments whose bytes the caller found to be PDF, whatever their names:
            stamped like those named `.pdf`.

    Returns:
        The files to write and what to do with the attachments.

    Raises:
        ValueError: an unknown obligation, an attachment list that does not match the
            submission, or a malformed argument (all programmer errors).
    """
    applied = _check_arguments(obligations, tracking_number, recipient, access_index, released_at)
    model = (
        submission
        if isinstance(submission, Submission)
        else Submission.model_validate(dict(submission), context={STORED: True})
    )
    described = [a.name for a in model.attachments]

    def is_pdf(name: str) -> bool:
        return is_pdf_name(name) or name in pdfs

    stored = {str(meta["name"]): meta for meta in attachments}
    if sorted(stored) != sorted(described) or len(stored) != len(attachments):
        raise ValueError("attachment list does not match the attachments the submission describes")

    document: dict[str, Any] = model.model_dump(mode="json")
    redacted = tuple(o.removeprefix("redact:") for o in applied if o.startswith("redact:"))
    removed: list[str] = []
    phones: list[str] = []
    for group in redacted:
        group_removed, group_phones = _redact(document, group)
        removed += group_removed
        phones += group_phones
    # One pass over what remains, so a placeholder is never itself rescanned.
    pattern = _scrub_pattern(removed, digits=phones)
    if pattern is not None:
        document = _scrub(document, pattern, _SCRUBBED)
    shown = [a["name"] for a in document["attachments"]]  # scrubbed under redaction
    shown_name = dict(zip(described, shown, strict=True))
    failed = dict(unmarkable or {})
    by_policy = "withhold:attachments" in applied
    released = () if by_policy else tuple(n for n in described if n not in failed)
    withheld = tuple(n for n in described if n not in released)
    file_name = _release_file_names(described, shown_name)
    notes = {
        shown_name[n]: "withheld by policy (withhold:attachments)"
        if by_policy
        else f"withheld: {_one_line(failed[n])}; the program office holds it"
        for n in withheld
    }
    for n in released:
        where = f"released as {_ATTACHMENTS_DIR}/{file_name[n]}"
        notes[shown_name[n]] = (
            f"{where}, stamped on every page"
            if is_pdf(n)
            else f"{where} with marking sidecar {sidecar_name(file_name[n])}"
        )
    notices = ("program-office",) if "notify:program-office" in applied else ()
    recipient_line = (
        f"Released to {recipient} - {tracking_number} - access event {access_index} - "
        f"{_timestamp(released_at)}"
    )
    watermark = recipient_line if "watermark:recipient" in applied else None
    context = _Context(
        tracking_number=tracking_number,
        recipient=recipient,
        access_index=access_index,
        released_at=_timestamp(released_at),
        purpose=_one_line(purpose) or "(none given)",
        authority=_authority_text(authority),
        obligations=applied,
        redacted=redacted,
        watermark=watermark,
        recipient_line=recipient_line,
        released=tuple(file_name[n] for n in released),
        withheld=tuple(f"{shown_name[n]} ({notes[shown_name[n]]})" for n in withheld),
        stamped=tuple(file_name[n] for n in released if is_pdf(n)),
        attachment_notes=notes,
        notices=notices,
    )
    files: dict[str, bytes] = {
        DOCUMENT_MD_NAME: _render_markdown(document, context),
        DOCUMENT_JSON_NAME: _render_json(document, context),
        COVER_SHEET_NAME: _render_cover_sheet(context),
    }
    for attachment, shown_attachment in zip(
        model.attachments, document["attachments"], strict=True
    ):
        name = attachment.name
        if name in released and not is_pdf(name):
            files[sidecar_name(file_name[name])] = _render_sidecar(
                file_name[name], shown_attachment["description"], stored[name], context
            )
    return ReleasePackage(
        files=MappingProxyType(files),
        attachments=released,
        file_names=MappingProxyType({n: file_name[n] for n in released}),
        withheld=withheld,
        stamps=MappingProxyType(
            {n: _pdf_stamp(file_name[n], context) for n in released if is_pdf(n)}
        ),
        redacted=redacted,
        notices=notices,
        obligations=applied,
    )


@dataclass(frozen=True)
class _Context:
    tracking_number: str
    recipient: str
    access_index: int
    released_at: str
    purpose: str
    authority: str
    obligations: tuple[str, ...]
    redacted: tuple[str, ...]
    watermark: str | None
    recipient_line: str
    released: tuple[str, ...]
    withheld: tuple[str, ...]
    stamped: tuple[str, ...]
    attachment_notes: Mapping[str, str]
    notices: tuple[str, ...]

    def header(self) -> list[str]:
        return [PCII_HEADER] + ([self.watermark] if self.watermark else [])

    def footer(self) -> list[str]:
        return ([self.watermark] if self.watermark else []) + [PCII_HEADER]


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _authority_text(authority: str | None) -> str:
    if authority is None:
        return "none (access under the PCII access rules)"
    try:
        exception = reference_data().disclosure_exception(authority)
    except KeyError:
        return _one_line(authority)
    return f"{exception.id}: {exception.name} ({exception.citation})"


def _render_json(document: dict[str, Any], ctx: _Context) -> bytes:
    marking: dict[str, Any] = {
        "v": MARKING_FORMAT_VERSION,
        "tracking_number": ctx.tracking_number,
        "access_index": ctx.access_index,
        "released_at": ctx.released_at,
        "obligations": list(ctx.obligations),
        "redacted": list(ctx.redacted),
        "attachments_released": list(ctx.released),
        "attachments_stamped": list(ctx.stamped),
        "attachments_withheld": list(ctx.withheld),
    }
    if ctx.watermark:
        marking["released_to"] = ctx.recipient
    body: dict[str, Any] = {"pcii_header": PCII_HEADER}
    if ctx.watermark:
        body["pcii_watermark"] = ctx.watermark
    body |= {"pcii_statement": PCII_STATEMENT, "pcii_marking": marking, "submission": document}
    if ctx.watermark:
        body["pcii_footer_watermark"] = ctx.watermark
    body["pcii_footer"] = PCII_HEADER
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _md_text(text: str) -> list[str]:
    return [*text.splitlines(), ""]


def _escape_html(value: Any) -> Any:  # noqa: ANN401 -- any JSON value
    r"""User text as the text it is: never HTML, never reordered or hidden on screen.

    `& < >` become entities; control, zero-width and bidi characters become escapes
    (`\u202e`).
    """
    if isinstance(value, dict):
        return {k: _escape_html(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_html(v) for v in value]
    if isinstance(value, str):
        lines = value.replace("\r\n", "\n").replace("\r", "\n")
        text = lines.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return printable(text, keep_newlines=True)
    return value


def _render_markdown(document: dict[str, Any], ctx: _Context) -> bytes:
    # User text is escaped: `<!--` in a summary must not comment out the footer.
    doc: dict[str, Any] = _escape_html(document)
    notes = {_escape_html(k): _escape_html(v) for k, v in ctx.attachment_notes.items()}
    ctx = replace(ctx, attachment_notes=notes)
    lines = [*ctx.header(), "", f"> {PCII_STATEMENT}", ""]
    lines += [f"# {_one_line(doc['title'])}", ""]
    lines += [
        f"- Tracking number: {ctx.tracking_number}",
        f"- TLP: {doc['tlp']} (beside the PCII marking, never instead of it)",
        f"- Sector: {doc['sector']}",
        f"- Assessment type: {doc['assessment_type']}",
    ]
    if doc.get("related_tracking_number"):
        lines.append(f"- Supplements: {doc['related_tracking_number']}")
    if ctx.redacted:
        lines.append(f"- Redacted: {', '.join(ctx.redacted)}")
    lines += ["", "## Express statement", "", *_md_text(doc["express_statement"])]
    cert = doc["certification"]
    lines += [
        "## Certification",
        "",
        f"- Signed by: {cert['signed_by']}, {cert['title']}, {cert['organisation']}",
        f"- Date: {cert['date']}",
        "- Not customarily in the public domain: certified",
        f"- Authorised representative: {'yes' if cert['authorised_representative'] else 'no'}",
        "",
        "## Submitter",
        "",
        f"- Organisation: {doc['submitter']['organisation']}",
        f"- Name: {doc['submitter']['name']}",
        "",
        "## Contacts",
        "",
    ]
    for label, key in (("Primary contact", "primary_contact"), ("Secondary", "secondary_contact")):
        contact = doc.get(key)
        if contact:
            address = "; ".join(contact["mailing_address"].splitlines())
            lines += [
                f"- {label}: {contact['name']}, {contact['organisation']}",
                f"  - Address: {address}",
                f"  - Email: {contact['email']}",
                f"  - Phone: {contact['phone']}",
            ]
    facility = doc["facility"]
    lines += [
        "",
        "## Facility",
        "",
        f"- Name: {facility['name']}",
        f"- Location: {facility['city']}, {facility['state']}",
        "",
        *_md_text(facility["description"]),
    ]
    requirement = doc.get("federal_requirement")
    if requirement:
        lines += [
            "## Federal requirement",
            "",
            f"- Agency: {requirement['agency']}",
            f"- Legal authority: {requirement['legal_authority']}",
            "",
        ]
    lines += ["## Summary", "", *_md_text(doc["summary"]), "## Findings", ""]
    for finding in doc["findings"]:
        lines += [
            f"### {finding['id']} ({finding['severity']}): {finding['affected_asset']}",
            "",
            *_md_text(finding["description"]),
            "Recommendation:",
            "",
            *_md_text(finding["recommendation"]),
        ]
    if doc["attachments"]:
        lines += ["## Attachments", ""]
        for attachment in doc["attachments"]:
            state = ctx.attachment_notes.get(attachment["name"], "")
            lines.append(
                f"- {attachment['name']}: {_one_line(attachment['description'])} ({state})"
            )
        lines.append("")
    lines += [f"> {PCII_STATEMENT}", "", *ctx.footer()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _render_cover_sheet(ctx: _Context) -> bytes:
    files = [DOCUMENT_MD_NAME, DOCUMENT_JSON_NAME]
    for name in ctx.released:
        files.append(f"{_ATTACHMENTS_DIR}/{name}")
        if name not in ctx.stamped:
            files.append(sidecar_name(name))
    notice = (
        "required: a contemporaneous written notice to the PCII Program Office"
        if ctx.notices
        else "not required"
    )
    lines = [
        *ctx.header(),
        "",
        "PCII RELEASE COVER SHEET (dissemination record)",
        "",
        f"Tracking number:      {ctx.tracking_number}",
        f"Recipient:            {ctx.recipient}",
        f"Released at:          {ctx.released_at}",
        f"Purpose:              {ctx.purpose}",
        f"Authority:            {ctx.authority}",
        f"Access event index:   {ctx.access_index}",
        f"Obligations applied:  {', '.join(ctx.obligations) or 'none beyond marking'}",
        f"Redacted:             {', '.join(ctx.redacted) or 'nothing'}",
        f"Files released:       {', '.join(files)}",
        f"Attachments withheld: {', '.join(ctx.withheld) or 'none'}",
        f"Program office notice: {notice}",
        "",
        "Handling: every copy and every reproduction of these files is PCII and must carry",
        "this marking. Do not remove markings; share only with authorized PCII users who",
        "have a need to know, and report any loss or unauthorized disclosure to the PCII",
        "Program Office immediately.",
        "",
        PCII_STATEMENT,
        "",
        *ctx.footer(),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _release_file_names(described: Sequence[str], shown: Mapping[str, str]) -> dict[str, str]:
    """Each attachment's released file name: its own unless redaction scrubbed part of it.

    A scrubbed name becomes `attachment-<n>[.ext]`, numbered after its place and made
    unique (case folded) against every other released name: an attachment may itself be
    called `attachment-2.txt`.
    """
    taken = {name.casefold() for name in described if shown[name] == name}
    names: dict[str, str] = {}
    for number, name in enumerate(described, 1):
        if shown[name] == name:
            names[name] = name
            continue
        suffix = PurePosixPath(name).suffix.lower()
        if not (re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) and shown[name].lower().endswith(suffix)):
            suffix = ""
        candidate, again = f"attachment-{number}{suffix}", 1
        while candidate.casefold() in taken:
            again += 1
            candidate = f"attachment-{number}-{again}{suffix}"
        taken.add(candidate.casefold())
        names[name] = candidate
    return names


def _pdf_stamp(name: str, ctx: _Context) -> PdfStamp:
    """The marking stamped on a released PDF: every page, and an added first page."""
    return PdfStamp(
        header=PCII_HEADER,
        watermark=ctx.recipient_line,
        first_page=(
            PCII_HEADER,
            "",
            f"PCII record {ctx.tracking_number}, attachment {_ATTACHMENTS_DIR}/{name}",
            f"Released to {ctx.recipient} at {ctx.released_at}, access event {ctx.access_index}",
            f"Purpose: {ctx.purpose}",
            f"Authority: {ctx.authority}",
            "",
            "Every page of this file carries the PCII marking and the recipient's watermark;",
            "this page was added by the vault. Do not remove it or the markings.",
            "",
            PCII_STATEMENT,
            "",
            PCII_HEADER,
        ),
    )


def _render_sidecar(name: str, description: str, meta: Mapping[str, Any], ctx: _Context) -> bytes:
    lines = [
        *ctx.header(),
        "",
        f"This marking applies to {_ATTACHMENTS_DIR}/{name}, an attachment of PCII record "
        f"{ctx.tracking_number}. The file is released as-is because its format cannot be "
        "marked in place; it and every copy of it are PCII and must be kept with this "
        "marking.",
        "",
        f"Description: {_one_line(description)}",
    ]
    if meta.get("sha256"):
        lines.append(f"SHA-256:     {meta['sha256']}")
    if meta.get("size") is not None:
        lines.append(f"Size:        {meta['size']} bytes")
    lines += ["", PCII_STATEMENT, "", *ctx.footer()]
    return ("\n".join(lines) + "\n").encode("utf-8")
