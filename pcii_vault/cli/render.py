"""How the CLI shows the core's results: one dict per result, the same for every command."""

from __future__ import annotations

from typing import Any

from pcii_vault.index import RecordRow
from pcii_vault.vault import Release

__all__ = ["record_row", "release_row"]


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


def release_row(release: Release) -> dict[str, Any]:
    """What a release wrote, and the access event and policies that allowed it."""
    return {
        "tracking_number": release.tracking_number,
        "directory": str(release.directory),
        "files": list(release.files),
        "access_index": release.access_index,
        "obligations": list(release.obligations),
        "policies": list(release.policies),
    }
