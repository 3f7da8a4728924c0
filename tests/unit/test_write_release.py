"""`write_release` when another release to the same `--out` wins the final rename."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pcii_vault.client import write_release
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import InputError, VaultError
from pcii_vault.models.request import sign_request
from pcii_vault.vault import StagedRelease

TRACKING = "PCII-2026-12345678"


def test_a_release_that_lost_the_rename_names_its_target_not_the_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    request = sign_request(
        Ed25519PrivateKey.generate(),
        vault="v-0123456789abcdef",
        principal="water",
        action="retrieve",
        now=datetime.now(UTC),
        record=TRACKING,
        purpose="drought planning",
    )
    failures: list[tuple[str, int, OSError]] = []

    @contextlib.contextmanager
    def stage(where: Path) -> Iterator[StagedRelease]:
        staging = where / f".{TRACKING}.x.partial"
        staging.mkdir()
        (staging / "document.md").write_text("ours")
        # Meanwhile another release to the same --out finished first.
        (where / TRACKING).mkdir()
        (where / TRACKING / "document.md").write_text("theirs")
        yield StagedRelease(TRACKING, staging, ("document.md",), 7, (), ())

    def failed(tracking: str, access: int, exc: OSError) -> VaultError:
        failures.append((tracking, access, exc))
        return InputError(f"could not be written: {exc.strerror} ({exc.filename})")

    with pytest.raises(InputError) as raised:
        write_release(out, request, stage, failed)
    [(tracking, access, exc)] = failures
    assert (tracking, access) == (TRACKING, 7)
    assert exc.filename == str(out / TRACKING) and "appeared meanwhile" in str(raised.value)
    assert ".partial" not in str(raised.value)
    assert (out / TRACKING / "document.md").read_text() == "theirs"
