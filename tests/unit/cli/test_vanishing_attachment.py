"""An attachment removed between its check and its upload: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.cli.owner import _attachment_bytes
from pcii_vault.errors import InputError


def test_an_attachment_gone_after_its_check_is_named_not_a_crash(tmp_path: Path) -> None:
    """A tester's finding: a file deleted about a second into `submit` (after the local
    checks, while the vault was being opened) was exit 1, FileNotFoundError."""
    kept = tmp_path / "kept.pdf"
    kept.write_bytes(b"%PDF-1.7\n")
    assert _attachment_bytes([kept]) == 9
    gone = tmp_path / "gone.pdf"
    with pytest.raises(InputError, match=r"^attachment .*gone\.pdf not found$") as caught:
        _attachment_bytes([kept, gone])
    assert caught.value.exit_code == 2
