"""Regenerate the submission vectors: `.venv/bin/python tests/vectors/submissions/make_vectors.py`.

Each invalid dataset is the valid example with exactly one thing wrong; `invalid/cases.json`
names the file, the files given with --attach, and the one problem (field path and words)
validation must report. Output is deterministic; rerun after changing the example.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pcii_vault.models.submission import EXPRESS_STATEMENT, example_submission

HERE = Path(__file__).parent
ATTACH = ["riverbend-scada-assessment.pdf"]

Doc = dict[str, Any]


def _dump(doc: Doc) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if leaf.isdigit():
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return edit


def _delete(path: str) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[part]
        del node[leaf]

    return edit


def _duplicate_attachment(doc: Doc) -> None:
    doc["attachments"].append(dict(doc["attachments"][0], description="The same file again."))


# name -> (edit, files given with --attach, expected problem prefix, why)
CASES: list[tuple[str, Callable[[Doc], None] | None, list[str], str, str]] = [
    (
        "missing-express-statement",
        _delete("express_statement"),
        ATTACH,
        "express_statement: required",
        "no express statement: the submission is deficient",
    ),
    (
        "altered-express-statement",
        _set("express_statement", EXPRESS_STATEMENT.replace("voluntarily", "")),
        ATTACH,
        "express_statement: must be the statutory express statement",
        "a word removed from the statutory text (wording may not change, only whitespace/case)",
    ),
    (
        "missing-certification",
        _delete("certification"),
        ATTACH,
        "certification: required",
        "no signed certification",
    ),
    (
        "certification-public-domain-false",
        _set("certification.not_customarily_in_public_domain", False),
        ATTACH,
        "certification.not_customarily_in_public_domain: must be true",
        "the submitter does not certify the information is not customarily public",
    ),
    (
        "certification-bad-date",
        _set("certification.date", "2026-02-30"),
        ATTACH,
        "certification.date: not a valid calendar date",
        "a date that does not exist",
    ),
    (
        "unknown-sector",
        _set("sector", "Water"),
        ATTACH,
        "sector: unknown sector",
        "not one of the 16 PPD-21 sector names",
    ),
    (
        "unknown-state",
        _set("facility.state", "XX"),
        ATTACH,
        "facility.state: unknown state or territory",
        "not a USPS state or territory code",
    ),
    (
        "unknown-tlp",
        _set("tlp", "TLP:WHITE"),
        ATTACH,
        "tlp: unknown TLP label",
        "TLP 1.0 label, retired in TLP 2.0",
    ),
    ("missing-tlp", _delete("tlp"), ATTACH, "tlp: required", "the TLP label has no default"),
    (
        "bad-email",
        _set("primary_contact.email", "dana.okafor@"),
        ATTACH,
        "primary_contact.email: not a valid email address",
        "email without a domain",
    ),
    (
        "bad-phone",
        _set("secondary_contact.phone", "call me"),
        ATTACH,
        "secondary_contact.phone: not a valid phone number",
        "phone without digits",
    ),
    (
        "oversized-field",
        _set("summary", "A" * 20_001),
        ATTACH,
        "summary: too long (at most 20000 characters)",
        "a field over its maximum length",
    ),
    (
        "control-character-in-line",
        _set("title", "Assessment\nPROTECTED"),
        ATTACH,
        "title: must be non-blank text without control characters",
        "a newline in a one-line field (could forge lines in a marked header)",
    ),
    (
        "blank-name",
        _set("submitter.name", "   "),
        ATTACH,
        "submitter.name: must be non-blank text",
        "a name of spaces only",
    ),
    (
        "zero-width-name",
        _set("primary_contact.name", "\u200b"),
        ATTACH,
        "primary_contact.name: holds an invisible or bidirectional character (U+200B)",
        "a name of one zero-width space: given, yet nobody sees it",
    ),
    (
        "filler-summary",
        _set("summary", "\u3164"),
        ATTACH,
        "summary: must be non-blank text",
        "a Hangul filler, a letter that shows as blank space",
    ),
    (
        "bidi-override-in-name",
        _set("primary_contact.name", "Dana\u202eOkafor"),
        ATTACH,
        "primary_contact.name: holds an invisible or bidirectional character (U+202E)",
        "a right-to-left override would reverse the rest of the line in a marked copy",
    ),
    (
        "line-separator-in-line",
        _set("primary_contact.name", "Dana\u2028Okafor"),
        ATTACH,
        "primary_contact.name: holds an invisible or bidirectional character (U+2028)",
        "a Unicode line separator in a one-line field",
    ),
    (
        "signer-of-another-organisation",
        _set("certification.organisation", "Acme Consulting LLC"),
        ATTACH,
        "certification.organisation: differs from submitter.organisation, yet "
        "authorised_representative is false",
        "a signer of another organisation, not marked as the submitter's representative",
    ),
    (
        "wrong-type",
        _set("findings", "F-01"),
        ATTACH,
        "findings: must be a list",
        "a string where a list is expected",
    ),
    (
        "empty-findings",
        _set("findings", []),
        ATTACH,
        "findings: needs at least 1 item(s)",
        "an assessment without findings",
    ),
    (
        "duplicate-finding-ids",
        _set("findings.2.id", "F-01"),
        ATTACH,
        "findings[2].id: duplicate of findings[0].id",
        "two findings share an id",
    ),
    (
        "bad-severity",
        _set("findings.1.severity", "urgent"),
        ATTACH,
        "findings[1].severity: must be one of: 'critical', 'high', 'medium', 'low', 'info'",
        "a severity outside the scale",
    ),
    (
        "agency-without-authority",
        _set("federal_requirement", {"agency": "EPA"}),
        ATTACH,
        "federal_requirement.legal_authority: required",
        "a requiring agency without its legal authority (both or neither)",
    ),
    (
        "bad-related-tracking-number",
        _set("related_tracking_number", "PCII-26-123"),
        ATTACH,
        "related_tracking_number: must be a tracking number",
        "not of the form PCII-YYYY-NNNNNNNN",
    ),
    (
        "unknown-extra-field",
        _set("notes", "please hurry"),
        ATTACH,
        "notes: unknown field",
        "a field the format does not have (typos must fail loudly)",
    ),
    (
        "unknown-nested-field",
        _set("facility.owner", "someone"),
        ATTACH,
        "facility.owner: unknown field",
        "an unknown field inside an object",
    ),
    (
        "unknown-version",
        _set("v", 2),
        ATTACH,
        "v: must be one of: 1",
        "a format version this software does not know",
    ),
    (
        "version-true",
        _set("v", True),
        ATTACH,
        "v: must be one of: 1",
        "true for the version (equal to 1 in Python, yet no number)",
    ),
    (
        "attachment-described-not-given",
        None,
        [],
        'attachments[0].name: "riverbend-scada-assessment.pdf" is described but was not given',
        "the JSON describes a file that --attach did not give",
    ),
    (
        "attachment-given-in-another-case",
        None,
        ["Riverbend-SCADA-assessment.pdf"],
        'attachments[0].name: "riverbend-scada-assessment.pdf" is described but was given '
        'with --attach as "Riverbend-SCADA-assessment.pdf": the names must match exactly',
        "the file given differs from the name described in case only (it is released "
        "under the described name)",
    ),
    (
        "attachment-given-not-described",
        None,
        [*ATTACH, "extra.pdf"],
        'attachments: "extra.pdf" was given with --attach but is not described',
        "--attach gave a file the JSON does not describe",
    ),
    (
        "duplicate-attachment-names",
        _duplicate_attachment,
        ATTACH,
        "attachments[1].name: duplicate of attachments[0].name",
        "the same file described twice",
    ),
    (
        "unsafe-attachment-name",
        _set("attachments.0.name", "../../etc/passwd"),
        [],
        "attachments[0].name: not a safe file name",
        "path separators and '..' in an attachment name",
    ),
    (
        "reserved-attachment-name",
        _set("attachments.0.name", "notes.PCII.txt"),
        [],
        "attachments[0].name: file names ending in .PCII.txt are reserved",
        "the suffix of the marking sidecars",
    ),
]

# Raw files that are not a JSON object at all.
RAW_CASES = [
    (
        "invalid-json",
        b'{\n  "v": 1,\n  "sector": "Water and Wastewater Systems",\n  "tlp": \n}\n',
        "submission: invalid JSON at line 5 column 1",
        "a value missing after a colon",
    ),
    (
        "not-an-object",
        b'["this", "is", "a", "list"]\n',
        "submission: expected a JSON object, got list",
        "a JSON array instead of an object",
    ),
    (
        "not-utf8",
        b'{"title": "\xff\xfe"}\n',
        "submission: not UTF-8 text (byte 11)",
        "bytes that are not UTF-8",
    ),
]


def main() -> None:
    """Write valid/ and invalid/ and invalid/cases.json."""
    (HERE / "valid").mkdir(exist_ok=True)
    (HERE / "invalid").mkdir(exist_ok=True)
    example = example_submission()
    (HERE / "valid" / "riverbend.json").write_text(_dump(example), encoding="utf-8")
    minimal = copy.deepcopy(example)
    for key in ("secondary_contact", "attachments", "v"):
        del minimal[key]
    minimal["findings"] = minimal["findings"][:1]
    (HERE / "valid" / "minimal.json").write_text(_dump(minimal), encoding="utf-8")
    full = copy.deepcopy(example)
    full["related_tracking_number"] = "PCII-2025-00004711"
    full["federal_requirement"] = {
        "agency": "Environmental Protection Agency",
        "legal_authority": "Fictional Water Security Grant Program, condition 7",
    }
    full["express_statement"] = "  " + EXPRESS_STATEMENT.upper().rstrip(".") + "\n"
    (HERE / "valid" / "supplement-with-requirement.json").write_text(_dump(full), encoding="utf-8")
    manifest = []
    for name, edit, attach, problem, why in CASES:
        doc = copy.deepcopy(example)
        if edit is not None:
            edit(doc)
        (HERE / "invalid" / f"{name}.json").write_text(_dump(doc), encoding="utf-8")
        manifest.append({"file": f"{name}.json", "attach": attach, "problem": problem, "why": why})
    for name, data, problem, why in RAW_CASES:
        (HERE / "invalid" / f"{name}.json").write_bytes(data)
        manifest.append({"file": f"{name}.json", "attach": [], "problem": problem, "why": why})
    (HERE / "invalid" / "cases.json").write_text(
        json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
    )
    (HERE / "README.md").write_text(_readme(manifest), encoding="utf-8")


def _readme(manifest: list[dict[str, Any]]) -> str:
    lines = [
        "# Submission vectors",
        "",
        "Generated by `make_vectors.py` in this directory (deterministic; rerun it after",
        "changing `example_submission()`); all data is fictional.",
        "",
        "- `valid/riverbend.json`: the example of `pcii submission template`; submit it with",
        "  `--attach riverbend-scada-assessment.pdf` (`pcii submission template",
        "  --attachment-out riverbend-scada-assessment.pdf` writes that file).",
        "- `valid/minimal.json`: required fields only, one finding, no attachment.",
        "- `valid/supplement-with-requirement.json`: every optional field, and the express",
        "  statement in upper case with extra whitespace and no final period (accepted).",
        "",
        "`invalid/`: one dataset per way to be wrong, each the valid example with exactly one",
        "mistake. `invalid/cases.json` gives, per file, the names given with `--attach` and",
        "the one problem validation must report (it starts with the field path).",
        "",
        "| file | --attach | expected problem | what is wrong |",
        "|---|---|---|---|",
    ]
    for case in manifest:
        attach = ", ".join(case["attach"]) or "(none)"
        problem = case["problem"].replace("|", "\\|")
        lines.append(f"| `{case['file']}` | {attach} | `{problem}` | {case['why']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
