"""How the CLI shows the core's results: one dict per result, the same for every command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcii_vault.index import RecordRow
    from pcii_vault.vault import Release


__all__ = ["record_line", "record_row", "release_row", "release_summary"]


def record_row(record: RecordRow) -> dict[str, Any]:
    """A record's public facts, as every command prints them."""
    return {
        "tracking_number": record.tracking,
        "state": record.state,
        "categorical": record.categorical,
        "sector": record.sector,
        "tlp": record.tlp,
        "submitter": record.submitter,
        "received_at": record.received_at.isoformat(),
        "state_at": record.state_at.isoformat(),
        "files": [f["name"] for f in record.files],
    }


def record_line(record: RecordRow) -> str:
    """A record's state for a person: `PCII-...: validated (categorical inclusion)`."""
    categorical = " (categorical inclusion)" if record.categorical else ""
    return f"{record.tracking}: {record.state}{categorical}"


def release_row(release: Release) -> dict[str, Any]:
    """What a release wrote, what it withheld or redacted, and the event that allowed it."""
    marking = _marking(release.directory)
    return {
        "tracking_number": release.tracking_number,
        "directory": str(release.directory),
        "files": list(release.files),
        "withheld": list(marking.get("attachments_withheld", [])),
        "redacted": list(marking.get("redacted", [])),
        "access_index": release.access_index,
        "obligations": list(release.obligations),
        "policies": list(release.policies),
    }


def release_summary(release: Release) -> str:
    """For people: where the files are, and what was withheld or redacted."""
    row = release_row(release)
    lines = [
        f"{release.tracking_number} released to {release.directory} "
        f"(access event {release.access_index})",
        *(f"  {release.directory / name}" for name in release.files),
    ]
    if row["redacted"]:
        lines.append(f"redacted: {', '.join(row['redacted'])}")
    lines.extend(f"withheld: {item}" for item in row["withheld"])
    return "\n".join(lines)


def _marking(directory: Path) -> dict[str, Any]:
    """The release's own marking record (document.json), written by the vault."""
    from pcii_vault.marking import DOCUMENT_JSON_NAME

    try:
        document = json.loads((directory / DOCUMENT_JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    marking = document.get("pcii_marking") if isinstance(document, dict) else None
    return marking if isinstance(marking, dict) else {}
