"""The sealed local keyring: creation, unsealing, rotation, retirement, and damaged files."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pcii_vault.crypto.envelope import RecordContext
from pcii_vault.crypto.intake import seal_to_intake
from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.crypto.signing import Signer
from pcii_vault.errors import ConfigError, InputError, IntegrityError, NotFoundError
from pcii_vault.keys.base import KekProvider
from pcii_vault.keys.local import (
    KekVersion,
    LocalKeyring,
    UnsealError,
    _Contents,
    _Envelope,
    _serialise,
    unseal_secret_from_env_or_prompt,
)

CHEAP = ScryptParams(n=2**4, r=8, p=1)
SECRET = b"correct horse battery"
DEK = bytes(range(32))
CTX = RecordContext("v-test", "PCII-1").to_bytes()
T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(hours=1)
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keyring.json"


@pytest.fixture
def keyring(path: Path) -> LocalKeyring:
    return LocalKeyring.create(path, SECRET, kdf_params=CHEAP, clock=Clock())


def rewrite(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


# -- create and open ----------------------------------------------------------------


def test_created_keyring_is_a_key_provider_and_reopens(keyring: LocalKeyring, path: Path) -> None:
    assert isinstance(keyring, KekProvider)
    assert keyring.current_version == keyring.min_decryption_version == 1
    assert keyring.versions[0].created == T0 + timedelta(hours=1)
    wrapped = keyring.wrap(DEK, CTX)
    again = LocalKeyring.open(path, SECRET)
    assert again.unwrap(wrapped, CTX) == DEK
    assert again.log_signer().public_key == keyring.log_signer().public_key
    assert again.intake_public_key == keyring.intake_public_key


def test_file_is_private_and_records_kdf_parameters(keyring: LocalKeyring, path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "pcii-vault/keyring"
    assert doc["version"] == 1
    assert doc["cipher"] == "AES-256-GCM"
    assert {k: doc["kdf"][k] for k in ("name", "n", "r", "p")} == {
        "name": "scrypt",
        "n": 16,
        "r": 8,
        "p": 1,
    }
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 16
    text = path.read_text()
    for secret in (keyring._contents.keks[0].key, keyring._contents.log_signing_seed):
        assert base64.b64encode(secret).decode() not in text  # every secret is sealed


def test_default_kdf_is_strong() -> None:
    from pcii_vault.crypto.seal import DEFAULT_SCRYPT

    assert DEFAULT_SCRYPT.n >= 2**17
    assert DEFAULT_SCRYPT.r >= 8


def test_create_refuses_to_overwrite_an_existing_file(keyring: LocalKeyring, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        LocalKeyring.create(path, SECRET, kdf_params=CHEAP)
    assert path.read_bytes() == before
    assert LocalKeyring.open(path, SECRET).intake_public_key == keyring.intake_public_key


def test_create_refuses_a_short_secret(path: Path) -> None:
    with pytest.raises(InputError, match="at least 8 bytes"):
        LocalKeyring.create(path, b"short", kdf_params=CHEAP)
    assert not path.exists()


def test_create_leaves_no_temporary_files(keyring: LocalKeyring, path: Path) -> None:
    assert sorted(p.name for p in path.parent.iterdir()) == ["keyring.json"]


def test_open_missing_file_is_not_found(path: Path) -> None:
    with pytest.raises(NotFoundError):
        LocalKeyring.open(path, SECRET)


def test_wrong_secret_is_a_clear_input_error_and_changes_nothing(
    keyring: LocalKeyring, path: Path
) -> None:
    before = path.read_bytes()
    with pytest.raises(UnsealError, match="wrong unseal secret") as info:
        LocalKeyring.open(path, b"wrong horse battery")
    assert isinstance(info.value, InputError)
    assert info.value.exit_code == 2
    assert path.read_bytes() == before


# -- damaged files: one case per way to be wrong ----------------------------------------


def flip_ciphertext(path: Path) -> None:
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["ciphertext"]))
    raw[len(raw) // 2] ^= 1
    rewrite(path, ciphertext=base64.b64encode(bytes(raw)).decode())


def flip_nonce(path: Path) -> None:
    doc = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(doc["nonce"]))
    raw[0] ^= 1
    rewrite(path, nonce=base64.b64encode(bytes(raw)).decode())


def change_salt(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["kdf"]["salt"] = base64.b64encode(bytes(16)).decode()
    path.write_text(json.dumps(doc))


def lower_kdf_cost(path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["kdf"]["n"] = 2**3
    path.write_text(json.dumps(doc))


def flip_byte_in_file(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    index = raw.index(b'"ciphertext": "') + 20
    raw[index] = ord("A") if raw[index] != ord("A") else ord("B")
    path.write_bytes(bytes(raw))


UNSEAL_FAILURES = {
    "flipped ciphertext": flip_ciphertext,
    "flipped nonce": flip_nonce,
    "changed salt": change_salt,
    "lowered kdf cost": lower_kdf_cost,
    "flipped byte in the file": flip_byte_in_file,
}

DAMAGED = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-40]),
    "empty file": lambda p: p.write_bytes(b""),
    "bad json": lambda p: p.write_bytes(b"{not json"),
    "not utf-8": lambda p: p.write_bytes(b"\xff\xfe"),
    "json array": lambda p: p.write_text("[]"),
    "not a keyring": lambda p: rewrite(p, format="something-else"),
    "missing ciphertext": lambda p: p.write_text(
        json.dumps({k: v for k, v in json.loads(p.read_text()).items() if k != "ciphertext"})
    ),
    "bad base64": lambda p: rewrite(p, ciphertext="***"),
    "empty nonce": lambda p: rewrite(p, nonce=""),  # a length checked without the secret
    "short nonce": lambda p: rewrite(p, nonce="AAAA"),
    "ciphertext shorter than its tag": lambda p: rewrite(p, ciphertext="AAAA"),
    "number as string": lambda p: rewrite(p, kdf={**json.loads(p.read_text())["kdf"], "n": "16"}),
    "boolean as number": lambda p: rewrite(p, kdf={**json.loads(p.read_text())["kdf"], "r": True}),
    "unknown kdf": lambda p: rewrite(p, kdf={**json.loads(p.read_text())["kdf"], "name": "md5"}),
    "unknown cipher": lambda p: rewrite(p, cipher="ROT13"),
    "huge kdf cost": lambda p: rewrite(p, kdf={**json.loads(p.read_text())["kdf"], "n": 2**30}),
    "short salt": lambda p: rewrite(
        p, kdf={**json.loads(p.read_text())["kdf"], "salt": base64.b64encode(b"s").decode()}
    ),
    # Fields the vault never writes, outside what the seal covers (a tester's finding).
    "planted field": lambda p: rewrite(p, planted={"n": 1 << 30}),
    "planted kdf field": lambda p: rewrite(
        p, kdf={**json.loads(p.read_text())["kdf"], "comment": "x"}
    ),
}


@pytest.mark.parametrize("damage", UNSEAL_FAILURES, ids=list(UNSEAL_FAILURES))
def test_damage_to_the_sealed_part_fails_to_unseal(
    keyring: LocalKeyring, path: Path, damage: str
) -> None:
    """Indistinguishable from a wrong secret (by design), and reported as such."""
    UNSEAL_FAILURES[damage](path)
    with pytest.raises(UnsealError, match="damaged keyring file"):
        LocalKeyring.open(path, SECRET)


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_structurally_damaged_file_is_an_integrity_error(
    keyring: LocalKeyring, path: Path, damage: str
) -> None:
    DAMAGED[damage](path)
    with pytest.raises(IntegrityError):
        LocalKeyring.open(path, SECRET)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_format_version_is_a_config_error(
    keyring: LocalKeyring, path: Path, version: object
) -> None:
    rewrite(path, version=version)
    with pytest.raises(ConfigError, match="unknown format version"):
        LocalKeyring.open(path, SECRET)


def sealed_with(path: Path, keyring: LocalKeyring, contents: _Contents) -> None:
    """Write a correctly sealed file with arbitrary contents (bypassing the checks)."""
    envelope: _Envelope = keyring._envelope
    path.write_bytes(_serialise(envelope, keyring._sealing_key, contents))


def contents(keks: tuple[KekVersion, ...]) -> _Contents:
    return _Contents(keks=keks, log_signing_seed=bytes(32), intake_private_key=bytes(32))


@pytest.mark.parametrize(
    "keks",
    [
        (),
        (KekVersion(1, T0, True, bytes(32)),),
        (KekVersion(2, T0, False, bytes(32)), KekVersion(1, T0, False, bytes(32))),
        (KekVersion(0, T0, False, bytes(32)),),
        (KekVersion(1, T0, False, bytes(16)),),
    ],
    ids=["no kek", "current retired", "versions out of order", "version zero", "short kek"],
)
def test_keyring_without_a_usable_current_kek_is_refused(
    keyring: LocalKeyring, path: Path, keks: tuple[KekVersion, ...]
) -> None:
    """Empty means deny: a keyring that cannot wrap refuses to open at all."""
    sealed_with(path, keyring, contents(keks))
    with pytest.raises(IntegrityError, match="keyring"):
        LocalKeyring.open(path, SECRET)


# -- rotation and retirement ----------------------------------------------------------


def test_rotation_adds_a_version_and_old_versions_still_unwrap(
    keyring: LocalKeyring, path: Path
) -> None:
    old = keyring.wrap(DEK, CTX)
    assert keyring.rotate() == 2
    assert keyring.current_version == 2
    new = keyring.wrap(DEK, CTX)
    assert new[1:5] == (2).to_bytes(4, "big")
    reopened = LocalKeyring.open(path, SECRET)
    assert reopened.current_version == 2
    assert reopened.min_decryption_version == 1
    assert reopened.unwrap(old, CTX) == reopened.unwrap(new, CTX) == DEK
    assert [k.created for k in reopened.versions] == [
        T0 + timedelta(hours=1),
        T0 + timedelta(hours=2),
    ]


def test_retired_version_refuses_to_unwrap_and_stays_retired(
    keyring: LocalKeyring, path: Path
) -> None:
    old = keyring.wrap(DEK, CTX)
    keyring.rotate()
    keyring.retire(1)
    assert keyring.min_decryption_version == 2
    with pytest.raises(IntegrityError, match="retired"):
        keyring.unwrap(old, CTX)
    with pytest.raises(IntegrityError, match="retired"):
        LocalKeyring.open(path, SECRET).unwrap(old, CTX)
    keyring.retire(1)  # idempotent


def test_current_version_cannot_be_retired(keyring: LocalKeyring, path: Path) -> None:
    before = path.read_bytes()
    with pytest.raises(InputError, match="current"):
        keyring.retire(1)
    with pytest.raises(InputError, match="no KEK version 7"):
        keyring.retire(7)
    assert path.read_bytes() == before


def test_unknown_kek_version_refuses_to_unwrap(keyring: LocalKeyring, tmp_path: Path) -> None:
    other = LocalKeyring.create(tmp_path / "other.json", SECRET, kdf_params=CHEAP)
    other.rotate()
    with pytest.raises(IntegrityError, match="not in this keyring"):
        keyring.unwrap(other.wrap(DEK, CTX), CTX)


def test_wrapped_key_from_another_keyring_with_same_version_fails(
    keyring: LocalKeyring, tmp_path: Path
) -> None:
    other = LocalKeyring.create(tmp_path / "other.json", SECRET, kdf_params=CHEAP)
    with pytest.raises(IntegrityError, match="failed authentication"):
        keyring.unwrap(other.wrap(DEK, CTX), CTX)


def test_unwrap_with_another_records_context_fails(keyring: LocalKeyring) -> None:
    wrapped = keyring.wrap(DEK, CTX)
    with pytest.raises(IntegrityError):
        keyring.unwrap(wrapped, RecordContext("v-test", "PCII-2").to_bytes())


def test_two_handles_rotating_lose_no_version(keyring: LocalKeyring, path: Path) -> None:
    """A second process's rotation is re-read under the lock, never overwritten."""
    second = LocalKeyring.open(path, SECRET)
    assert keyring.rotate() == 2
    assert second.rotate() == 3
    second.retire(1)
    assert keyring.rotate() == 4
    final = LocalKeyring.open(path, SECRET)
    assert [(k.version, k.retired) for k in final.versions] == [
        (1, True),
        (2, False),
        (3, False),
        (4, False),
    ]


def test_rotation_refuses_a_keyring_file_replaced_by_another(
    keyring: LocalKeyring, path: Path
) -> None:
    path.unlink()
    LocalKeyring.create(path, SECRET, kdf_params=CHEAP)
    from pcii_vault.errors import ConflictError

    with pytest.raises(ConflictError, match="replaced"):
        keyring.rotate()


# -- the other keys -------------------------------------------------------------------


def test_intake_boxes_open_with_the_keyring(keyring: LocalKeyring) -> None:
    sealed = seal_to_intake(keyring.intake_public_key, DEK)
    assert keyring.open_intake(sealed) == DEK
    with pytest.raises(IntegrityError):
        keyring.open_intake(sealed[:-1])


def test_log_signer_signs_verifiably_and_never_exposes_its_key(keyring: LocalKeyring) -> None:
    signer = keyring.log_signer()
    assert isinstance(signer, Signer)
    signer.public_key.verify(b"checkpoint", signer.sign(b"checkpoint"))
    # The seam hands out a signer, not a key: no seed, no key attribute, nothing in repr.
    assert not hasattr(signer, "seed")
    assert not hasattr(signer, "__dict__")
    assert keyring._contents.log_signing_seed.hex() not in repr(signer)


def test_repr_never_shows_key_material(keyring: LocalKeyring) -> None:
    text = repr(keyring) + repr(keyring.versions) + repr(keyring._contents)
    text += repr(keyring._contents.keks)
    assert not hasattr(keyring.versions[0], "key")
    for kek in keyring._contents.keks:
        assert kek.key.hex() not in text
        assert base64.b64encode(kek.key).decode() not in text


# -- the unseal secret ----------------------------------------------------------------


def test_secret_comes_from_the_environment_first() -> None:
    def no_prompt(_: str) -> str:
        raise AssertionError("must not prompt")

    got = unseal_secret_from_env_or_prompt(
        environ={"PCII_UNSEAL_SECRET": "from-env"}, prompt=no_prompt
    )
    assert got == b"from-env"


def test_secret_is_prompted_for_and_confirmed() -> None:
    answers = iter(["typed secret", "typed secret"])
    got = unseal_secret_from_env_or_prompt(environ={}, prompt=lambda _: next(answers), confirm=True)
    assert got == b"typed secret"


def test_mismatched_confirmation_and_empty_secret_are_refused() -> None:
    answers = iter(["one", "two"])
    with pytest.raises(InputError, match="differ"):
        unseal_secret_from_env_or_prompt(environ={}, prompt=lambda _: next(answers), confirm=True)
    with pytest.raises(InputError, match="empty"):
        unseal_secret_from_env_or_prompt(environ={"PCII_UNSEAL_SECRET": ""}, prompt=lambda _: "")
