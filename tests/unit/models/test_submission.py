"""The submission model and its local validation: every problem, each with its field path."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pcii_vault.errors import InputError
from pcii_vault.models.reference import load_reference_data, reference_data
from pcii_vault.models.submission import (
    EXPRESS_STATEMENT,
    MAX_SUBMISSION_BYTES,
    TRACKING_NUMBER_PATTERN,
    Submission,
    SubmissionInvalid,
    example_attachment_bytes,
    example_submission,
    format_tracking_number,
    is_express_statement,
    validate_submission_bytes,
)

VECTORS = Path(__file__).parents[2] / "vectors" / "submissions"
CASES = json.loads((VECTORS / "invalid" / "cases.json").read_text(encoding="utf-8"))
ATTACH = ["riverbend-scada-assessment.pdf"]


def _bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode("utf-8")


def _problems(doc: dict[str, Any] | bytes, attach: list[str] | None = None) -> tuple[str, ...]:
    data = doc if isinstance(doc, bytes) else _bytes(doc)
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission_bytes(data, attachment_names=ATTACH if attach is None else attach)
    return caught.value.problems


# ----- valid submissions ---------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((VECTORS / "valid").glob("*.json")), ids=lambda p: p.name)
def test_valid_vectors_are_accepted(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    names = [a["name"] for a in doc.get("attachments", [])]
    submission = validate_submission_bytes(path.read_bytes(), attachment_names=names)
    assert submission.sector in reference_data().sector_names


def test_example_round_trips_through_its_json_form() -> None:
    submission = validate_submission_bytes(_bytes(example_submission()), attachment_names=ATTACH)
    again = Submission.model_validate(submission.model_dump(mode="json"))
    assert again == submission
    assert Submission.model_validate_json(submission.model_dump_json()) == submission


def test_vectors_are_up_to_date_with_the_example() -> None:
    """valid/riverbend.json is what `pcii submission template` prints (regenerate if not)."""
    on_disk = json.loads((VECTORS / "valid" / "riverbend.json").read_text(encoding="utf-8"))
    assert on_disk == example_submission()


def test_a_stored_document_is_read_as_it_was_accepted() -> None:
    """Invisible characters are refused at intake only: a record received before that
    rule stays releasable (its document is checked again at each release)."""
    doc = example_submission()
    doc["primary_contact"]["name"] = "Dana\u202eOkafor"
    assert _problems(doc) == (
        "primary_contact.name: holds an invisible or bidirectional character (U+202E); "
        "type plain text",
    )
    stored = validate_submission_bytes(_bytes(doc), attachment_names=ATTACH, stored=True)
    assert stored.primary_contact.name == "Dana\u202eOkafor"


def test_a_representative_of_another_organisation_may_sign() -> None:
    """Only a signer not marked as the submitter's representative must be of its
    organisation (case and spacing aside)."""
    doc = example_submission()
    doc["certification"]["organisation"] = "Acme Consulting LLC"
    doc["certification"]["authorised_representative"] = True
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)
    doc = example_submission()
    doc["certification"]["organisation"] = "  riverbend   municipal WATER authority"
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)


def test_model_is_frozen() -> None:
    submission = Submission.model_validate(example_submission())
    with pytest.raises(ValidationError):
        submission.title = "changed"  # type: ignore[misc]


def test_strict_types_refuse_a_number_for_a_string() -> None:
    doc = example_submission()
    doc["title"] = 2026
    assert _problems(doc) == ("title: must be a string",)


# ----- one named dataset per way to be wrong --------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_invalid_vector_reports_its_one_problem_with_field_path(case: dict[str, Any]) -> None:
    data = (VECTORS / "invalid" / case["file"]).read_bytes()
    problems = _problems(data, case["attach"])
    assert len(problems) == 1, problems
    assert problems[0].startswith(case["problem"])


def test_every_invalid_file_is_in_the_manifest() -> None:
    listed = {c["file"] for c in CASES}
    on_disk = {p.name for p in (VECTORS / "invalid").glob("*.json")} - {"cases.json"}
    assert listed == on_disk


def test_submission_invalid_is_an_input_error_with_exit_code_2() -> None:
    with pytest.raises(InputError) as caught:
        validate_submission_bytes(b"{", attachment_names=[])
    assert caught.value.exit_code == 2


def test_invalid_json_names_line_and_column() -> None:
    problems = _problems(b'{\n  "title": "x",\n  oops\n}')
    assert re.fullmatch(r"submission: invalid JSON at line 3 column 3: .*", problems[0])


def test_every_problem_is_listed_at_once() -> None:
    doc = example_submission()
    doc["sector"] = "Water"
    doc["findings"][2]["severity"] = "urgent"
    doc["primary_contact"]["email"] = "nobody"
    doc["extra"] = True
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission_bytes(_bytes(doc), attachment_names=[])
    paths = [p.split(":", 1)[0] for p in caught.value.problems]
    assert paths == [
        "primary_contact.email",
        "sector",
        "findings[2].severity",
        "extra",
        "attachments[0].name",
    ]
    lines = caught.value.diagnostics().splitlines()
    assert lines[0] == "submission has 5 problems"
    assert len(lines) == 6


def test_one_problem_is_one_line() -> None:
    doc = example_submission()
    doc["sector"] = "Water"
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)
    assert "\n" not in caught.value.diagnostics()
    assert caught.value.diagnostics().startswith("sector: unknown sector")


def test_duplicates_are_reported_even_when_other_fields_are_wrong() -> None:
    doc = example_submission()
    doc["findings"][1]["id"] = "F-01"
    doc["findings"][3]["severity"] = "urgent"
    problems = _problems(doc)
    assert "findings[1].id: duplicate of findings[0].id" in problems
    assert any(p.startswith("findings[3].severity:") for p in problems)


def test_attachment_names_compare_case_insensitively() -> None:
    doc = example_submission()
    doc["attachments"].append({"name": "RIVERBEND-SCADA-ASSESSMENT.PDF", "description": "x"})
    assert _problems(doc) == ("attachments[1].name: duplicate of attachments[0].name",)


def test_attach_given_twice_is_refused() -> None:
    problems = _problems(example_submission(), [*ATTACH, *ATTACH])
    assert problems == (
        '--attach: "riverbend-scada-assessment.pdf" given 2 times (names must be unique, '
        "ignoring case)",
    )


def test_attach_given_twice_in_two_cases_is_refused_before_anything_is_sent() -> None:
    """The vault refuses the manifest so: refused locally, nothing uploaded."""
    problems = _problems(example_submission(), [*ATTACH, ATTACH[0].upper()])
    assert problems[0].startswith('--attach: "riverbend-scada-assessment.pdf" given 2 times')


@pytest.mark.parametrize(
    "name", ["../x.pdf", "a/b.pdf", "a\\b.pdf", ".hidden", "x..pdf", "trailing.", "", "a\nb"]
)
def test_unsafe_attachment_names_are_refused(name: str) -> None:
    doc = example_submission()
    doc["attachments"][0]["name"] = name
    problems = _problems(doc, [])
    assert len(problems) == 1
    assert problems[0].startswith("attachments[0].name: ")


def test_unsafe_attach_name_is_refused() -> None:
    doc = example_submission()
    doc["attachments"] = []
    problems = _problems(doc, ["../evil.pdf"])
    assert problems == (
        "--attach: \"../evil.pdf\": not a safe file name (ASCII letters, digits, '.', '_', '-', "
        "'+' and spaces, starting with a letter or digit and not ending in a space or '.'; "
        "no path separators, no '..')",
    )


@pytest.mark.parametrize("name", ["-x.txt", "+", "x ", "report."])
def test_a_name_refused_for_its_first_or_last_character_is_told_why(name: str) -> None:
    """A tester's finding: the message listed '-', '+' and spaces as allowed, and did not
    say that a name may not start with them or end in a space."""
    doc = example_submission()
    doc["attachments"] = []
    [problem] = _problems(doc, [name])
    assert "starting with a letter or digit and not ending in a space or '.'" in problem


def test_control_characters_in_echoed_names_are_escaped() -> None:
    doc = example_submission()
    doc["attachments"] = []
    problems = _problems(doc, ["evil\x1b[31m.pdf"])
    assert "\x1b" not in "".join(problems)
    assert "\\u001b" in problems[0]


def test_oversized_file_is_refused_before_parsing() -> None:
    problems = _problems(b" " * (MAX_SUBMISSION_BYTES + 1))
    assert problems == (
        f"submission: too large ({MAX_SUBMISSION_BYTES + 1} bytes; at most {MAX_SUBMISSION_BYTES})",
    )


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        (("title",), 300),
        (("facility", "description"), 2000),
        (("primary_contact", "mailing_address"), 500),
        (("findings", 0, "description"), 10_000),
        (("certification", "signed_by"), 200),
    ],
)
def test_every_string_has_a_maximum_length(path: tuple[Any, ...], limit: int) -> None:
    doc = example_submission()
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "x" * limit
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)
    node[path[-1]] = "x" * (limit + 1)
    [problem] = _problems(doc)
    assert problem.endswith(f"too long (at most {limit} characters)")


def test_too_many_findings_are_refused() -> None:
    doc = example_submission()
    doc["findings"] = [dict(doc["findings"][0], id=f"F-{i}") for i in range(501)]
    assert _problems(doc) == ("findings: too long (at most 500 items)",)


def test_every_string_field_in_the_schema_has_a_max_length() -> None:
    schema = Submission.model_json_schema()

    def walk(node: Any, where: str) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            unbounded = node.get("type") == "string" and "maxLength" not in node
            if unbounded and "enum" not in node and "format" not in node:
                found.append(where)
            for key, value in node.items():
                found += walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                found += walk(value, f"{where}[{i}]")
        return found

    assert walk(schema, "") == []


def test_date_must_be_plain_iso() -> None:
    doc = example_submission()
    doc["certification"]["date"] = "2026-11-20T10:00:00Z"
    assert _problems(doc) == ("certification.date: must be a date written YYYY-MM-DD",)
    doc["certification"]["date"] = 1_700_000_000
    assert _problems(doc)[0].startswith("certification.date:")


# ----- express statement ---------------------------------------------------------------


def test_a_certification_dated_in_the_future_is_refused() -> None:
    doc = example_submission()
    today = datetime.now(UTC).date()
    doc["certification"]["date"] = (today + timedelta(days=30)).isoformat()
    assert _problems(doc) == (
        "certification.date: is in the future; give the date the certification was signed",
    )
    doc["certification"]["date"] = (today + timedelta(days=1)).isoformat()  # east of UTC
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)


def test_a_stored_certification_is_not_dated_again_by_the_releasing_clock() -> None:
    """A tester's finding: a record received by a process whose clock ran days ahead
    (its certification dated that clock's today) could then be neither reviewed nor
    retrieved on a right clock: the release checked the date again, exit 2."""
    doc = example_submission()
    doc["certification"]["date"] = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
    with pytest.raises(SubmissionInvalid):
        validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)
    stored = validate_submission_bytes(_bytes(doc), attachment_names=ATTACH, stored=True)
    assert stored.certification.date.isoformat() == doc["certification"]["date"]


@pytest.mark.parametrize(
    "text",
    [
        EXPRESS_STATEMENT,
        EXPRESS_STATEMENT.upper(),
        EXPRESS_STATEMENT.rstrip("."),
        "  " + EXPRESS_STATEMENT.replace(" ", "\n  ") + "  ",
    ],
)
def test_express_statement_tolerates_whitespace_case_and_final_period(text: str) -> None:
    assert is_express_statement(text)


@pytest.mark.parametrize(
    "text",
    [
        EXPRESS_STATEMENT.replace("voluntarily ", ""),
        EXPRESS_STATEMENT.replace("2002", "2020"),
        EXPRESS_STATEMENT.replace("Federal Government", "State Government"),
        EXPRESS_STATEMENT + " Except for the summary.",
        EXPRESS_STATEMENT.replace(".", "!"),
        EXPRESS_STATEMENT[:-30],
        "",
    ],
)
def test_express_statement_refuses_altered_wording(text: str) -> None:
    assert not is_express_statement(text)


# ----- certification, contacts, optional parts -----------------------------------------


def test_certification_must_affirm_not_public() -> None:
    doc = example_submission()
    doc["certification"]["not_customarily_in_public_domain"] = "yes"
    assert _problems(doc) == (
        "certification.not_customarily_in_public_domain: must be true or false",
    )


@pytest.mark.parametrize(
    "email", ["a@b", "@example.org", "a b@example.org", "a@@example.org", "a@-x.example.org"]
)
def test_bad_emails_are_refused(email: str) -> None:
    doc = example_submission()
    doc["primary_contact"]["email"] = email
    assert _problems(doc) == ("primary_contact.email: not a valid email address",)


@pytest.mark.parametrize("phone", ["+1 503 555 0142", "(503) 555-0142", "503.555.0142 x12"])
def test_common_phone_forms_are_accepted(phone: str) -> None:
    doc = example_submission()
    doc["primary_contact"]["phone"] = phone
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)


def test_secondary_contact_is_optional_but_checked() -> None:
    doc = example_submission()
    del doc["secondary_contact"]
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)
    doc["secondary_contact"] = {"name": "X"}
    problems = _problems(doc)
    assert {p.split(":")[0] for p in problems} == {
        "secondary_contact.organisation",
        "secondary_contact.mailing_address",
        "secondary_contact.email",
        "secondary_contact.phone",
    }


def test_federal_requirement_needs_both_agency_and_authority() -> None:
    doc = example_submission()
    doc["federal_requirement"] = {"legal_authority": "42 U.S.C. 300i-2"}
    assert _problems(doc) == ("federal_requirement.agency: required",)
    doc["federal_requirement"] = {"agency": "EPA", "legal_authority": "42 U.S.C. 300i-2"}
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)


def test_related_tracking_number_uses_our_format() -> None:
    doc = example_submission()
    doc["related_tracking_number"] = format_tracking_number(2025, 42)
    validate_submission_bytes(_bytes(doc), attachment_names=ATTACH)


# ----- tracking numbers ----------------------------------------------------------------


def test_format_tracking_number() -> None:
    assert format_tracking_number(2026, 123) == "PCII-2026-00000123"
    assert format_tracking_number(2026, 0) == "PCII-2026-00000000"
    assert format_tracking_number(2026, 99_999_999) == "PCII-2026-99999999"
    assert re.fullmatch(TRACKING_NUMBER_PATTERN, format_tracking_number(2031, 7))


@pytest.mark.parametrize(
    ("year", "serial"), [(999, 1), (10_000, 1), (2026, -1), (2026, 10**8), (True, 1)]
)
def test_format_tracking_number_refuses_out_of_range(year: int, serial: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        format_tracking_number(year, serial)


@pytest.mark.parametrize(
    "text", ["PCII-2026-123", "pcii-2026-00000123", "PCII-2026-00000123\n", "PCII-26-00000123"]
)
def test_tracking_number_pattern_is_exact(text: str) -> None:
    assert not re.fullmatch(TRACKING_NUMBER_PATTERN, text)


# ----- reference data and examples -----------------------------------------------------


def test_reference_data_has_the_16_sectors_and_5_tlp_labels() -> None:
    data = reference_data()
    assert len(data.sector_names) == 16
    assert "Nuclear Reactors, Materials, and Waste" in data.sector_names
    assert data.tlp_names == ("TLP:RED", "TLP:AMBER+STRICT", "TLP:AMBER", "TLP:GREEN", "TLP:CLEAR")
    assert data.disclosure_exception("dhs-oig").notice_required is False
    assert data.disclosure_exception("gao").notice_required is True


def _data_files() -> dict[str, bytes]:
    root = Path(__file__).parents[3] / "pcii_vault" / "data"
    return {p.name: p.read_bytes() for p in root.glob("*.json")}


def test_reference_data_refuses_an_empty_list() -> None:
    files = _data_files()
    files["sectors.json"] = b'{"version": 1, "source": "x", "entries": []}'
    with pytest.raises(ValueError, match=r"sectors\.json is malformed"):
        load_reference_data(files)


def test_reference_data_refuses_repeated_ids_and_missing_files() -> None:
    files = _data_files()
    doc = json.loads(files["tlp.json"])
    doc["entries"].append(doc["entries"][0])
    with pytest.raises(ValueError, match="repeats an id"):
        load_reference_data({**files, "tlp.json": json.dumps(doc).encode()})
    del files["uses.json"]
    with pytest.raises(ValueError, match=r"uses\.json is missing"):
        load_reference_data(files)


def test_example_attachment_is_a_pdf_with_a_correct_xref() -> None:
    data = example_attachment_bytes()
    assert data.startswith(b"%PDF-1.4\n")
    assert data.endswith(b"%%EOF\n")
    xref_at = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert data[xref_at:].startswith(b"xref\n")
    for number, offset in enumerate(re.findall(rb"(\d{10}) 00000 n", data), start=1):
        assert data[int(offset) :].startswith(f"{number} 0 obj".encode())


def test_schema_is_json_and_forbids_extra_fields() -> None:
    schema = Submission.model_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["sector"]["enum"] == list(reference_data().sector_names)
    assert "tlp" in schema["required"]


@pytest.mark.parametrize("control", ["\x07", "\x1b", "\x9b", "\x7f"])
@pytest.mark.parametrize("text", ["{c}", "Pump {c}room", "{c}\n\tx"])
def test_a_multiline_field_with_one_control_character_is_refused(control: str, text: str) -> None:
    """A tester's finding: exactly one control character passed (it matched the pattern's
    "one visible character"), and a C1 one reached the released document.json raw."""
    doc = example_submission()
    doc["summary"] = text.format(c=control)
    problems = _problems(doc)
    assert any(p.startswith("summary:") and "control characters" in p for p in problems)


def test_a_submission_with_thousands_of_problems_shows_the_first_fifty() -> None:
    """A tester's finding: 20,000 bad attachments printed 20,002 lines."""
    from pcii_vault.models.submission import SubmissionInvalid

    refused = SubmissionInvalid([f"attachments[{n}].name: missing" for n in range(120)])
    lines = refused.diagnostics().splitlines()
    assert lines[0] == "submission has 120 problems"
    assert lines[1:3] == ["  attachments[0].name: missing", "  attachments[1].name: missing"]
    assert lines[-1] == "  ... and 70 more"
    assert len(lines) == 52
    assert len(refused.problems) == 120  # all of them for --json
