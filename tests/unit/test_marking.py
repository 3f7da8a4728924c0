"""Release obligations: marking on every copy, redaction, watermark, cover sheet, sidecars."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pcii_vault.marking import (
    COVER_SHEET_NAME,
    DOCUMENT_JSON_NAME,
    DOCUMENT_MD_NAME,
    OBLIGATIONS,
    PCII_HEADER,
    PCII_STATEMENT,
    ReleasePackage,
    render_release,
    sidecar_name,
)
from pcii_vault.models.submission import Submission, example_submission

ATTACHMENT = "riverbend-scada-assessment.pdf"
META = [{"name": ATTACHMENT, "sha256": "ab" * 32, "size": 1234}]
WHEN = datetime(2026, 11, 28, 12, 30, 5, tzinfo=UTC)
TRACKING = "PCII-2026-00000123"

# Verbatim from 6 CFR 29.6(c), typed here independently of the module.
STATEMENT_FROM_PCII_MD = (
    "This document contains PCII. In accordance with the provisions of 6 CFR part 29, this "
    "document is exempt from release under the Freedom of Information Act (5 U.S.C. "
    "552(b)(3)) and similar laws requiring public disclosure. Unauthorized release may result "
    "in criminal and administrative penalties. This document is to be safeguarded and "
    "disseminated in accordance with the CII Act and the PCII Program requirements."
)


def _release(
    obligations: list[str],
    submission: dict[str, Any] | None = None,
    *,
    attachments: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> ReleasePackage:
    args: dict[str, Any] = {
        "tracking_number": TRACKING,
        "recipient": "analyst-ana",
        "access_index": 42,
        "released_at": WHEN,
        "purpose": "Regional drinking-water risk review",
        "authority": None,
    }
    args.update(kwargs)
    return render_release(
        submission if submission is not None else example_submission(),
        META if attachments is None else attachments,
        obligations,
        **args,
    )


def _texts(package: ReleasePackage) -> dict[str, str]:
    return {name: data.decode("utf-8") for name, data in package.files.items()}


def _all_text(package: ReleasePackage) -> str:
    # JSON escapes (e.g. \n) are decoded so a search sees the released characters.
    parts = []
    for name, text in _texts(package).items():
        parts.append(text)
        if name.endswith(".json"):
            parts.append(json.dumps(json.loads(text), ensure_ascii=False))
    return "\n".join(parts)


# ----- marking -------------------------------------------------------------------------


def test_statement_is_verbatim_from_pcii_md() -> None:
    assert PCII_STATEMENT == STATEMENT_FROM_PCII_MD
    assert PCII_HEADER == "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION"


@pytest.mark.parametrize("obligations", [[], ["mark:pcii"], sorted(OBLIGATIONS)])
def test_every_text_file_has_header_footer_and_statement(obligations: list[str]) -> None:
    """Marking is the baseline: even a permit without `mark:pcii` gets marked copies."""
    package = _release(obligations)
    assert {DOCUMENT_MD_NAME, DOCUMENT_JSON_NAME, COVER_SHEET_NAME} <= set(package.files)
    for name, text in _texts(package).items():
        lines = text.splitlines()
        assert lines[0] == PCII_HEADER or json.loads(text)["pcii_header"] == PCII_HEADER, name
        assert PCII_STATEMENT in text, name
        if name.endswith(".json"):
            body = json.loads(text)
            assert next(iter(body)) == "pcii_header"
            assert list(body)[-1] == "pcii_footer"
            assert body["pcii_footer"] == PCII_HEADER
            assert body["pcii_statement"] == PCII_STATEMENT
        else:
            assert lines[-1] == PCII_HEADER, name


def test_unredacted_release_carries_the_whole_submission() -> None:
    package = _release(["mark:pcii"])
    body = json.loads(package.files[DOCUMENT_JSON_NAME])
    assert Submission.model_validate(body["submission"]) == Submission.model_validate(
        example_submission()
    )
    assert body["pcii_marking"]["tracking_number"] == TRACKING
    assert body["pcii_marking"]["access_index"] == 42
    md = package.files[DOCUMENT_MD_NAME].decode()
    for finding in example_submission()["findings"]:
        assert finding["description"] in md
        assert finding["recommendation"] in md


def _with_attachment(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = example_submission()
    doc["attachments"][0]["name"] = name
    return doc, [{"name": name, "sha256": "ab" * 32, "size": 1234}]


def test_other_attachments_are_released_with_a_marking_sidecar() -> None:
    doc, meta = _with_attachment("site-plan.dwg")
    package = render_release(
        doc,
        meta,
        ["mark:pcii"],
        tracking_number=TRACKING,
        recipient="analyst-ana",
        access_index=42,
        released_at=WHEN,
        purpose="review",
        authority=None,
    )
    assert package.attachments == ("site-plan.dwg",)
    assert package.withheld == ()
    assert package.stamps == {}
    sidecar = package.files[sidecar_name("site-plan.dwg")].decode()
    assert sidecar.splitlines()[0] == PCII_HEADER
    assert sidecar.splitlines()[-1] == PCII_HEADER
    assert PCII_STATEMENT in sidecar
    assert "attachments/site-plan.dwg" in sidecar
    assert "ab" * 32 in sidecar
    assert "1234 bytes" in sidecar
    assert TRACKING in sidecar


def test_pdf_attachments_are_stamped_instead_of_sidecarred() -> None:
    package = _release(["mark:pcii"], recipient="analyst-ana")
    assert package.attachments == (ATTACHMENT,)
    assert sidecar_name(ATTACHMENT) not in package.files
    stamp = package.stamps[ATTACHMENT]
    assert stamp.header == PCII_HEADER
    # The recipient line is on every PDF page whatever the obligations: protection is
    # added, never removed.
    assert "analyst-ana" in stamp.watermark and TRACKING in stamp.watermark
    assert "access event 42" in stamp.watermark
    assert PCII_STATEMENT in stamp.first_page
    cover = package.files[COVER_SHEET_NAME].decode()
    assert f"attachments/{ATTACHMENT}" in cover
    md = package.files[DOCUMENT_MD_NAME].decode()
    assert "stamped on every page" in md


def test_an_unmarkable_pdf_is_withheld_with_a_note_on_the_cover_sheet() -> None:
    package = _release(["mark:pcii"], unmarkable={ATTACHMENT: "the PDF cannot be parsed"})
    assert package.attachments == ()
    assert package.withheld == (ATTACHMENT,)
    cover = package.files[COVER_SHEET_NAME].decode()
    assert "the PDF cannot be parsed" in cover and ATTACHMENT in cover


def test_release_is_deterministic() -> None:
    assert _release(sorted(OBLIGATIONS)).files == _release(sorted(OBLIGATIONS)).files


def test_files_are_names_not_paths() -> None:
    for name in _release(sorted(OBLIGATIONS)).files:
        assert "/" not in name
        assert not name.startswith(".")


# ----- redaction -----------------------------------------------------------------------

CONTACT_STRINGS = [
    "dana.okafor@riverbend-water.example.org",
    "l.ferreira@cascade-isp.example.org",
    "+1 503 555 0142",
    "503 555 0142",
    "5035550142",
    "+1 503 555 0187",
    "1200 Quarry Road",
    "88 Alder Street",
    "Dana Okafor",
    "Okafor",
    "Luis Ferreira",
    "Ferreira",
    "Director of Operations Security",
]
SUBMITTER_STRINGS = [
    "Riverbend Municipal Water Authority",
    "Riverbend",
    "North Ridge Treatment Plant",
    "40 million gallons",
    "Dana Okafor",
]


def _digits_only(text: str) -> str:
    return re.sub(r"\D", "", text)


def test_redact_contacts_removes_every_contact_string() -> None:
    package = _release(["mark:pcii", "redact:contacts"])
    text = _all_text(package)
    for value in CONTACT_STRINGS:
        assert value.lower() not in text.lower(), value
    assert "5035550142" not in _digits_only(text)
    assert "5035550187" not in _digits_only(text)
    assert "[REDACTED: contacts]" in text
    assert package.redacted == ("contacts",)


def test_redact_contacts_finds_contact_details_repeated_in_free_text() -> None:
    doc = example_submission()
    doc["summary"] += (
        " Questions to Ms. OKAFOR at (503) 555-0142 or DANA.OKAFOR@riverbend-water.example.org."
    )
    doc["findings"][0]["recommendation"] += " Luis Ferreira will retest."
    text = _all_text(_release(["redact:contacts"], doc))
    for value in ("okafor", "555-0142", "ferreira", "riverbend-water.example.org"):
        assert value not in text.lower(), value
    assert "Questions to Ms. [REDACTED] at [REDACTED] or [REDACTED]." in text


def test_redact_contacts_keeps_the_submitter_organisation() -> None:
    """A contact's organisation is the submitter's: only `redact:submitter` removes it."""
    body = json.loads(_release(["redact:contacts"]).files[DOCUMENT_JSON_NAME])["submission"]
    assert body["submitter"]["organisation"] == "Riverbend Municipal Water Authority"
    assert body["primary_contact"]["organisation"] == "[REDACTED: contacts]"
    assert body["facility"]["name"] == "North Ridge Treatment Plant"


def test_redact_submitter_removes_identity_and_facility() -> None:
    doc = example_submission()
    doc["related_tracking_number"] = "PCII-2025-00004711"
    doc["summary"] += " The Riverbend Municipal Water Authority board was briefed."
    package = _release(["redact:submitter"], doc)
    text = _all_text(package)
    for value in [*SUBMITTER_STRINGS, "PCII-2025-00004711"]:
        assert value.lower() not in text.lower(), value
    body = json.loads(package.files[DOCUMENT_JSON_NAME])["submission"]
    assert body["facility"]["state"] == "OR"
    assert body["sector"] == "Water and Wastewater Systems"
    assert body["findings"][0]["description"] == doc["findings"][0]["description"]


def test_redaction_alone_withholds_no_attachment() -> None:
    """Attachments go or stay by the policy's own obligation, not as a side effect."""
    package = _release(["redact:contacts"])
    assert package.attachments == (ATTACHMENT,)
    assert package.withheld == ()


def test_withhold_attachments_obligation_withholds_them() -> None:
    package = _release(["mark:pcii", "withhold:attachments"])
    assert package.attachments == ()
    assert package.withheld == (ATTACHMENT,)
    assert package.stamps == {}
    assert sidecar_name(ATTACHMENT) not in package.files
    cover = package.files[COVER_SHEET_NAME].decode()
    assert f"Attachments withheld: {ATTACHMENT} (withheld by policy" in cover


def test_a_released_attachment_whose_name_was_scrubbed_gets_a_neutral_name() -> None:
    package = _release(["redact:submitter"])
    assert package.file_names[ATTACHMENT] == "attachment-1.pdf"
    assert "attachments/attachment-1.pdf" in package.files[COVER_SHEET_NAME].decode()


@pytest.mark.parametrize("kept", ["attachment-2.pdf", "ATTACHMENT-2.PDF"])
def test_a_scrubbed_name_never_takes_another_attachments_name(kept: str) -> None:
    """A tester's finding: the second attachment, its name scrubbed, was released as
    `attachment-2.pdf`, the name the first one already had: one file overwrote the other."""
    doc = example_submission()
    doc["attachments"] = [
        {"name": kept, "description": "pump station log"},
        {"name": ATTACHMENT, "description": "the assessment"},
    ]
    meta = [{"name": n, "sha256": "ab" * 32, "size": 1234} for n in (kept, ATTACHMENT)]
    package = _release(["redact:submitter"], doc, attachments=meta)
    assert package.file_names == {kept: kept, ATTACHMENT: "attachment-2-2.pdf"}
    cover = package.files[COVER_SHEET_NAME].decode()
    assert f"attachments/{kept}" in cover and "attachments/attachment-2-2.pdf" in cover


def test_contact_names_of_any_length_are_scrubbed() -> None:
    doc = example_submission()
    doc["primary_contact"]["name"] = "Li Wu"
    doc["summary"] += " Ms. Wu and Li reviewed the findings; Wu signed off."
    package = _release(["redact:contacts"], doc)
    body = json.loads(package.files[DOCUMENT_JSON_NAME])["submission"]
    assert not re.search(r"\bWu\b|\bLi\b", body["summary"]), body["summary"]
    assert not re.search(r"\bWu\b", package.files[DOCUMENT_MD_NAME].decode())


def test_user_text_cannot_comment_out_the_marking_in_markdown() -> None:
    doc = example_submission()
    doc["summary"] = "Findings follow. <!-- hidden"
    doc["findings"][0]["description"] = "<div style='display:none'> &amp;"
    md = _release(["mark:pcii", "watermark:recipient"], doc).files[DOCUMENT_MD_NAME].decode()
    assert "<!--" not in md and "<div" not in md
    assert "&lt;!-- hidden" in md and "&amp;amp;" in md
    assert md.rstrip().splitlines()[-1] == PCII_HEADER


def test_a_stored_bidi_override_is_shown_not_obeyed_in_markdown() -> None:
    """A tester's finding: a right-to-left override in a contact's name reached
    document.md raw, reversing the rest of its line on screen. Intake refuses it now;
    a record received before that still renders it as an escape."""
    doc = example_submission()
    doc["primary_contact"]["name"] = "Dana\u202eOkafor"
    doc["summary"] = "First line.\r\nSecond\u2028line."
    md = _release(["mark:pcii"], doc).files[DOCUMENT_MD_NAME].decode()
    assert "\u202e" not in md and "\u2028" not in md and "\r" not in md
    assert "- Primary contact: Dana\\u202eOkafor," in md
    assert "First line.\nSecond\\u2028line." in md


def test_both_redactions_leave_no_placeholder_mangled() -> None:
    text = _all_text(_release(["redact:contacts", "redact:submitter"]))
    assert "[[" not in text
    assert re.findall(r"\[REDACTED[^\]]*\]", text)
    for value in CONTACT_STRINGS + SUBMITTER_STRINGS:
        assert value.lower() not in text.lower(), value


# ----- watermark and cover sheet -------------------------------------------------------


def test_watermark_names_recipient_in_header_and_footer() -> None:
    package = _release(["watermark:recipient"], recipient="analyst-ana")
    for name, text in _texts(package).items():
        if name.endswith(".json"):
            body = json.loads(text)
            assert "analyst-ana" in body["pcii_watermark"]
            assert "analyst-ana" in body["pcii_footer_watermark"]
            assert body["pcii_marking"]["released_to"] == "analyst-ana"
        else:
            lines = text.splitlines()
            assert "analyst-ana" in lines[1], name
            assert "analyst-ana" in lines[-2], name


def test_without_watermark_the_document_does_not_name_the_recipient() -> None:
    package = _release(["mark:pcii"], recipient="analyst-ana")
    assert "analyst-ana" not in package.files[DOCUMENT_MD_NAME].decode()
    assert "analyst-ana" not in package.files[DOCUMENT_JSON_NAME].decode()


def test_cover_sheet_records_the_dissemination() -> None:
    package = _release(
        ["cover-sheet", "notify:program-office"],
        purpose="Congressional\nbriefing",
        authority="congress",
        released_at=datetime(2026, 11, 28, 7, 30, 5, tzinfo=timezone(timedelta(hours=-5))),
    )
    cover = package.files[COVER_SHEET_NAME].decode()
    assert f"Tracking number:      {TRACKING}" in cover
    assert "Recipient:            analyst-ana" in cover
    assert "Released at:          2026-11-28T12:30:05Z" in cover
    assert "Purpose:              Congressional briefing" in cover
    assert "Authority:            congress: Either House of Congress" in cover
    assert "Access event index:   42" in cover
    assert "notify:program-office" in cover
    assert "required: a contemporaneous written notice" in cover
    assert PCII_STATEMENT in cover
    assert package.notices == ("program-office",)


def test_cover_sheet_without_authority_or_notice() -> None:
    cover = _release(["cover-sheet"]).files[COVER_SHEET_NAME].decode()
    assert "Authority:            none" in cover
    assert "Program office notice: not required" in cover
    assert f"attachments/{ATTACHMENT}" in cover


def test_purpose_cannot_forge_lines_in_the_cover_sheet() -> None:
    cover = (
        _release([], purpose=f"x\n{PCII_HEADER}\nRecipient: mallory\x1b[2J")
        .files[COVER_SHEET_NAME]
        .decode()
    )
    assert "\nRecipient: mallory" not in cover
    assert "\x1b" not in cover


# ----- programmer errors ---------------------------------------------------------------


def test_unknown_obligation_is_a_programmer_error() -> None:
    with pytest.raises(ValueError, match="unknown obligation"):
        _release(["mark:pcii", "redact:everything"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tracking_number": "PCII-1"}, "tracking number"),
        ({"recipient": "a\nb"}, "recipient"),
        ({"recipient": ""}, "recipient"),
        ({"access_index": -1}, "access index"),
        ({"released_at": datetime(2026, 1, 1)}, "timezone"),  # naive on purpose
    ],
)
def test_malformed_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _release([], **kwargs)


def test_attachment_list_must_match_the_submission() -> None:
    with pytest.raises(ValueError, match="attachment list"):
        render_release(
            example_submission(), [], [], tracking_number=TRACKING, recipient="a",
            access_index=0, released_at=WHEN, purpose="p", authority=None,
        )  # fmt: skip
    with pytest.raises(ValueError, match="attachment list"):
        render_release(
            example_submission(), [*META, {"name": "other.pdf"}], [], tracking_number=TRACKING,
            recipient="a", access_index=0, released_at=WHEN, purpose="p", authority=None,
        )  # fmt: skip


def test_accepts_a_model_as_well_as_a_dict() -> None:
    model = Submission.model_validate(example_submission())
    assert _release(["mark:pcii"], model.model_dump(mode="json")).files == render_release(
        model, META, ["mark:pcii"], tracking_number=TRACKING, recipient="analyst-ana",
        access_index=42, released_at=WHEN, purpose="Regional drinking-water risk review",
        authority=None,
    ).files  # fmt: skip
