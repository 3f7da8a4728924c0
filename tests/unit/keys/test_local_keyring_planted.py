"""The sealed keyring's file against crafted contents: one exit-4 error, never a crash."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from vault_support import outcome_within

from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.errors import IntegrityError
from pcii_vault.keys.local import LocalKeyring

CHEAP = ScryptParams(n=2**4, r=8, p=1)
SECRET = b"correct horse battery"
MAX_KEYRING_BYTES = 16 << 20  # keys.local.MAX_KEYRING_BYTES


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000],
    ids=["arrays", "objects"],
)
def test_deeply_nested_json_is_a_damaged_keyring_not_a_crash(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keyring.sealed"
    path.write_text(text)
    with pytest.raises(IntegrityError, match="damaged"):
        LocalKeyring.open(path, SECRET)


def test_a_huge_keyring_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "keyring.sealed"
    with path.open("wb") as stream:
        stream.truncate(16 * MAX_KEYRING_BYTES)  # sparse: 256 MiB if read
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="larger than any keyring"):
            LocalKeyring.open(path, SECRET)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_KEYRING_BYTES


def test_a_real_keyring_is_far_below_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "keyring.sealed"
    keyring = LocalKeyring.create(path, SECRET, kdf_params=CHEAP)
    for _ in range(20):
        keyring.rotate()
    assert path.stat().st_size * 1000 < MAX_KEYRING_BYTES
    assert LocalKeyring.open(path, SECRET).current_version == 21


@pytest.mark.parametrize("planted", ["fifo", "dev-zero"])
def test_a_fifo_or_device_at_the_keyring_is_integrity_error_not_a_hang(
    tmp_path: Path, planted: str
) -> None:
    import os

    path = tmp_path / "keyring.sealed"
    if planted == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    outcome = outcome_within(lambda: LocalKeyring.open(path, SECRET))
    assert isinstance(outcome, IntegrityError)
    assert "not a regular file" in str(outcome)
