"""C2SP signed notes and checkpoints: Go sumdb/note known answers and strict parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.note import (
    Checkpoint,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    sign_note,
    verifier_key_string,
)

GO = json.loads((Path(__file__).parents[2] / "vectors/tlog/go_sumdb_note.json").read_text())


def _go_signer() -> Ed25519PrivateKey:
    raw = base64.b64decode(GO["signer_key"].split("+", 4)[4])
    assert raw[0] == 0x01
    return Ed25519PrivateKey(raw[1:])


def test_verifier_key_string_matches_go_note_package():
    assert verifier_key_string("PeterNeumann", _go_signer().public_key) == GO["verifier_key"]


def test_signed_note_matches_go_note_package_byte_for_byte():
    assert sign_note(GO["text"], "PeterNeumann", _go_signer()) == GO["signed_note"]


def test_go_signed_note_opens_and_unknown_signature_is_ignored():
    verifier = NoteVerifier.from_key_string(GO["verifier_key"])
    assert open_note(GO["signed_note"] + GO["enoch_signature_line"], verifier) == GO["text"]


def test_note_signed_only_by_other_key_is_refused():
    verifier = NoteVerifier.from_key_string(GO["verifier_key"])
    note = GO["text"] + "\n" + GO["enoch_signature_line"]
    with pytest.raises(IntegrityError, match="no signature by key"):
        open_note(note, verifier)


def test_tampered_text_is_refused():
    verifier = NoteVerifier.from_key_string(GO["verifier_key"])
    with pytest.raises(IntegrityError):
        open_note(GO["signed_note"].replace("cryptography", "cryptographY"), verifier)


BAD_NOTES = {
    "no-signature-block": GO["text"],
    "blank-only": GO["text"] + "\n",
    "no-final-newline": GO["signed_note"][:-1],
    "control-char": "\x01" + GO["signed_note"],
    "unexpected-line": GO["signed_note"] + "Unexpected line.\n",
    "too-many-signatures": GO["text"] + "\n" + GO["enoch_signature_line"] * 101,
    "too-large": "a" * 20000 + "\n" + GO["signed_note"],
}


@pytest.mark.parametrize("name", sorted(BAD_NOTES))
def test_malformed_notes_are_refused(name):
    verifier = NoteVerifier.from_key_string(GO["verifier_key"])
    with pytest.raises(IntegrityError):
        open_note(BAD_NOTES[name], verifier)


def test_mangled_verifier_keys_are_refused():
    key = GO["verifier_key"]
    for i in range(len(key)):
        mangled = key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :]
        with pytest.raises(IntegrityError):
            NoteVerifier.from_key_string(mangled)


def test_checkpoint_round_trip_and_body_format():
    signer = Ed25519PrivateKey(bytes(range(32)))
    cp = Checkpoint.sign("example.com/log", 42, bytes(32), signer)
    assert cp.note.startswith(
        "example.com/log\n42\n"
        + base64.b64encode(bytes(32)).decode()
        + "\n\n\u2014 example.com/log "
    )
    verifier = NoteVerifier("example.com/log", signer.public_key)
    assert parse_checkpoint(cp.note, verifier) == cp


@pytest.mark.parametrize(
    "body",
    [
        "example.com/log\n042\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "example.com/log\n42\nAAAA\n",
        "example.com/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nextension\n",
        "other.example/log\n42\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "example.com/log\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    ],
    ids=["leading-zero", "short-root", "extension-line", "wrong-origin", "negative"],
)
def test_checkpoint_bodies_other_than_the_one_format_are_refused(body):
    signer = Ed25519PrivateKey(bytes(range(32)))
    note = sign_note(body, "example.com/log", signer)
    with pytest.raises(IntegrityError):
        parse_checkpoint(note, NoteVerifier("example.com/log", signer.public_key))
