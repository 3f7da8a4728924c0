"""Objects planted under a key the next append writes never wedge the log.

In a store with directories (the filesystem, SeaweedFS), an object at `KEY/x` makes `KEY`
a directory: it exists, yet holds no object, so writing `KEY` fails and reading it finds
nothing. A store attacker who plants one under the next claim, tile or history slot
used to stop every append (exit 5 after a minute of retries, or exit 2 for an act that
was in fact logged). The next writer removes what was planted, warns, and appends.
"""

from __future__ import annotations

from typing import Any

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.log import Ledger, claim_key, history_key
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.tiles import bundle_key, hash_tile_key
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event

ORIGIN = "integration.test/shadow"
KEY = Ed25519PrivateKey(b"\x09" * 32)


def _event(i: int) -> Event:
    from datetime import UTC, datetime

    return Event(
        seq=0, time=datetime(2026, 1, 1, tzinfo=UTC), type="notice.sent", actor="vault",
        record=f"R{i}",
    )  # fmt: skip


def _next_keys(size: int) -> dict[str, str]:
    """The keys an append of one event to a log of `size` writes."""
    return {
        "claim": claim_key(size),
        "hash tile": hash_tile_key(0, 0, size + 1),
        "entries tile": bundle_key(0, size + 1),
        "history": history_key(size + 1),
    }


@pytest.mark.parametrize("planted", ["planted", "a/c"], ids=["under", "deeper"])
@pytest.mark.parametrize("which", ["claim", "hash tile", "entries tile", "history", "all"])
def test_objects_planted_under_the_next_keys_are_removed_and_the_append_goes_on(
    any_store: Any, which: str, planted: str
) -> None:
    """`KEY/a/c` leaves `KEY/a/` once `c` is removed: every append hung on the claim's."""
    log = Ledger(any_store, ORIGIN, signer=KEY, verifier=KEY.public_key)
    log.append([_event(i) for i in range(3)])
    for name, key in _next_keys(3).items():
        if which in (name, "all"):
            any_store.put_if_absent(f"{key}/{planted}", b"junk")
    result = log.append([_event(3)])
    assert result.indices == (3,)
    assert log.append([_event(4)]).indices == (4,)
    assert verify_log(any_store, NoteVerifier(ORIGIN, KEY.public_key)).size == 5
    leaf = planted.rsplit("/", 1)[-1]
    assert not [info.key for info in any_store.list("log/") if info.key.endswith(f"/{leaf}")]


@pytest.mark.parametrize("which", ["claim", "hash tile", "entries tile", "history"])
def test_an_empty_directory_at_the_next_key_is_no_obstacle(fs_store: Any, which: str) -> None:
    log = Ledger(fs_store, ORIGIN, signer=KEY, verifier=KEY.public_key)
    log.append([_event(i) for i in range(3)])
    (fs_store.root / _next_keys(3)[which]).mkdir(parents=True)
    assert log.append([_event(3)]).indices == (3,)
    assert verify_log(fs_store, NoteVerifier(ORIGIN, KEY.public_key)).size == 4


@pytest.mark.s3
@pytest.mark.parametrize("which", ["claim", "hash tile", "entries tile", "history"])
def test_a_folder_marker_at_the_next_key_is_removed_and_the_append_goes_on(
    seaweed: Any, s3_bucket: str, which: str
) -> None:
    """A tester's finding: `KEY/` put into the bucket (a folder with nothing under it)
    made every act retry its claim for ever on SeaweedFS, and listings skip it."""
    store = seaweed.s3_store(s3_bucket)
    log = Ledger(store, ORIGIN, signer=KEY, verifier=KEY.public_key)
    log.append([_event(i) for i in range(3)])
    seaweed.client().put_object(Bucket=s3_bucket, Key=f"{_next_keys(3)[which]}/", Body=b"junk")
    assert log.append([_event(3)]).indices == (3,)
    assert verify_log(store, NoteVerifier(ORIGIN, KEY.public_key)).size == 4
    assert not store.remove_folder_marker(_next_keys(3)[which])


@pytest.mark.parametrize("target", ["../../wrapped", "../tile", ".."])
@pytest.mark.parametrize("which", ["claim", "entries tile", "history"])
def test_a_symlink_at_the_next_key_is_removed_never_followed(
    fs_store: Any, which: str, target: str
) -> None:
    """A tester's finding: `log/claims/<N>` made a symlink to `../../wrapped` had the next
    append remove "what was planted under it": every data key, every record shredded."""
    log = Ledger(fs_store, ORIGIN, signer=KEY, verifier=KEY.public_key)
    log.append([_event(i) for i in range(3)])
    fs_store.put_if_absent("wrapped/PCII-2026-00000001", b"a data key")
    link = fs_store.root / _next_keys(3)[which]
    link.parent.mkdir(parents=True, exist_ok=True)
    depth = _next_keys(3)[which].count("/") - 2  # deeper keys need more `..`
    link.symlink_to("../" * depth + target)
    assert log.append([_event(3)]).indices == (3,)
    assert not link.is_symlink()
    assert fs_store.get("wrapped/PCII-2026-00000001") == b"a data key"
    assert verify_log(fs_store, NoteVerifier(ORIGIN, KEY.public_key)).size == 4


def test_no_object_is_read_listed_or_deleted_through_a_linked_folder(fs_store: Any) -> None:
    """The vault makes no symlink in its store: a folder reached through one aliases
    another folder's objects, so reading, listing or deleting through it is refused."""
    fs_store.put_if_absent("wrapped/PCII-2026-00000001", b"a data key")
    (fs_store.root / "records").symlink_to("wrapped")
    for act in (
        lambda: fs_store.get("records/PCII-2026-00000001"),
        lambda: fs_store.delete("records/PCII-2026-00000001"),
        lambda: list(fs_store.list("records/")),
    ):
        with pytest.raises(IntegrityError, match="symlink planted in the store"):
            act()
    assert fs_store.get("wrapped/PCII-2026-00000001") == b"a data key"


@pytest.mark.parametrize("which", ["claim", "hash tile", "entries tile", "history"])
def test_a_symlink_out_of_the_store_at_the_next_key_is_removed(
    fs_store: Any, which: str, tmp_path: Any
) -> None:
    """A tester's finding: a link out of the store at the next tile failed the act after
    its claim was written, and every append after it, until removed by hand."""
    log = Ledger(fs_store, ORIGIN, signer=KEY, verifier=KEY.public_key)
    log.append([_event(i) for i in range(3)])
    outside = tmp_path / "outside"
    outside.write_bytes(b"not the vault's")
    link = fs_store.root / _next_keys(3)[which]
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    assert log.append([_event(3)]).indices == (3,)
    assert outside.read_bytes() == b"not the vault's"
    assert verify_log(fs_store, NoteVerifier(ORIGIN, KEY.public_key)).size == 4
