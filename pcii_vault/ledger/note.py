r"""C2SP signed notes and tlog checkpoints (https://c2sp.org/signed-note, /tlog-checkpoint).

A signed note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <name> <base64(key id || signature)>\\n`` (U+2014 em dash). For Ed25519 (type 0x01)
the key id is the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key) and the
verifier key string is ``<name>+<8 hex key id>+<base64(0x01 || public key)>``: the form
golang.org/x/mod/sumdb/note reads.

A checkpoint is the note body ``<origin>\\n<size>\\n<base64 root>\\n``.

Invariants:
- notes from outside are parsed as untrusted: size-limited, UTF-8, no control characters
  but newline, at most 100 signature lines, exactly the three checkpoint body lines;
- signatures by unknown keys are ignored; a signature line that names our key but does
  not verify is an error; at least one valid signature by our key is required;
- every failure is an `IntegrityError` (a note is data we verify, not input we fix).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from pcii_vault.crypto.signing import Ed25519PublicKey, Signer
from pcii_vault.errors import IntegrityError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "Checkpoint",
    "NoteVerifier",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "sign_note",
    "verifier_key_string",
]

ALG_ED25519 = 0x01
MAX_NOTE_BYTES = 16 * 1024
MAX_SIGNATURES = 100
_EM_DASH = "\u2014 "
_NAME = re.compile(r"[^\s+]+")
_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """Return the 4-byte signed-note key id of an Ed25519 key named `name`."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key.raw
    ).digest()
    return digest[:4]


def verifier_key_string(name: str, public_key: Ed25519PublicKey) -> str:
    """Return ``<name>+<hex key id>+<base64(0x01 || key)>``, the C2SP verifier key."""
    _check_name(name)
    material = base64.b64encode(bytes([ALG_ED25519]) + public_key.raw).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{material}"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"signed-note key name {name!r} must be non-empty, no spaces or '+'")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A named Ed25519 verifying key with its signed-note key id."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id."""
        return key_id(self.name, self.public_key)

    def key_string(self) -> str:
        """The verifier key string ``<name>+<hex id>+<base64>``."""
        return verifier_key_string(self.name, self.public_key)

    @classmethod
    def from_key_string(cls, text: str) -> NoteVerifier:
        """Parse a verifier key string, checking its key id.

        Raises:
            IntegrityError: malformed, unknown algorithm, or key id mismatch.
        """
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _NAME.fullmatch(parts[0]):
            raise IntegrityError("malformed verifier key")
        name, hex_id, material = parts
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise IntegrityError("malformed verifier key id")
        try:
            raw = base64.b64decode(material, validate=True)
        except binascii.Error as exc:
            raise IntegrityError("malformed verifier key material") from exc
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise IntegrityError("verifier key is not an Ed25519 (type 0x01) key")
        verifier = cls(name, Ed25519PublicKey(raw[1:]))
        if verifier.key_id.hex() != hex_id:
            raise IntegrityError("verifier key id does not match its key")
        return verifier


def sign_note(text: str, name: str, signer: Signer) -> str:
    """Sign `text` (which must end in a newline) and return the signed note.

    Raises:
        ValueError: the text is not a valid note body or the name is invalid.
    """
    _check_name(name)
    _check_text(text, ValueError)
    signature = signer.sign(text.encode("utf-8"))
    blob = key_id(name, signer.public_key) + signature
    return f"{text}\n{_EM_DASH}{name} {base64.b64encode(blob).decode('ascii')}\n"


def _check_text(text: str, error: type[Exception]) -> None:
    if not text.endswith("\n") or text.startswith("\n"):
        raise error("note text must be non-empty and end with a newline")
    if "\n\n" in text:
        raise error("note text must not contain a blank line")
    for ch in text:
        if (ch < " " and ch != "\n") or ch == "\x7f":
            raise error("note text contains a control character")


def open_note(note: str | bytes, verifier: NoteVerifier) -> str:  # noqa: PLR0912 -- one check per rule of the format
    """Verify a signed note and return its text (untrusted input).

    Raises:
        IntegrityError: malformed note, a bad signature by our key, or none by our key.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise IntegrityError("signed note is too large")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IntegrityError("signed note is not UTF-8") from exc
    if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
        raise IntegrityError("signed note is too large")
    split = note.rfind("\n\n")
    if split < 0:
        raise IntegrityError("malformed signed note: no signature block")
    text, sig_block = note[: split + 1], note[split + 2 :]
    _check_text(text, IntegrityError)
    if not sig_block.endswith("\n"):
        raise IntegrityError("malformed signed note: signature block must end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise IntegrityError("malformed signed note: too many signatures")
    our_id = verifier.key_id
    message = text.encode("utf-8")
    verified = False
    for line in lines:
        if not line.startswith(_EM_DASH):
            raise IntegrityError("malformed signed note: bad signature line")
        fields = line[len(_EM_DASH) :].split(" ")
        if len(fields) != 2 or not _NAME.fullmatch(fields[0]):
            raise IntegrityError("malformed signed note: bad signature line")
        name, b64 = fields
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error as exc:
            raise IntegrityError("malformed signed note: signature is not base64") from exc
        if base64.b64encode(blob).decode("ascii") != b64:
            # Padding bits are free in base64: only the canonical spelling is accepted,
            # so no byte of a note can change without the note being refused.
            raise IntegrityError("malformed signed note: signature is not canonical base64")
        if len(blob) < 5:
            raise IntegrityError("malformed signed note: signature too short")
        if name != verifier.name or blob[:4] != our_id:
            continue  # A signature by a key we do not know (a witness, say): ignored.
        if len(blob) != 4 + 64:
            raise IntegrityError(f"signature by {name} has the wrong length")
        verifier.public_key.verify(message, blob[4:])
        verified = True
    if not verified:
        raise IntegrityError(f"signed note carries no signature by key {verifier.name}")
    return text


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A verified (or freshly signed) tlog checkpoint."""

    origin: str
    size: int
    root: bytes
    note: str

    def body(self) -> str:
        """The checkpoint text that is signed."""
        return checkpoint_body(self.origin, self.size, self.root)

    @classmethod
    def sign(cls, origin: str, size: int, root: bytes, signer: Signer) -> Checkpoint:
        """Build and sign the checkpoint of a tree, the key named by `origin`."""
        text = checkpoint_body(origin, size, root)
        return cls(origin, size, root, sign_note(text, origin, signer))


def checkpoint_body(origin: str, size: int, root: bytes) -> str:
    r"""Return ``<origin>\n<size>\n<base64 root>\n``."""
    if size < 0 or len(root) != 32 or not origin or "\n" in origin:
        raise ValueError("invalid checkpoint fields")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def parse_checkpoint(
    note: str | bytes, verifier: NoteVerifier, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and return it.

    Args:
        note: the signed note, untrusted.
        verifier: the log's key; its name must be the checkpoint origin.
        origin: the expected origin line (defaults to the verifier's name).

    Raises:
        IntegrityError: bad signature, wrong origin, or a malformed body.
    """
    text = open_note(note, verifier)
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise IntegrityError("checkpoint body must have exactly three lines")
    got_origin, size_text, root_text = lines
    if got_origin != (origin or verifier.name):
        raise IntegrityError(f"checkpoint origin {got_origin!r} is not this log's")
    if not _SIZE.fullmatch(size_text):
        raise IntegrityError("checkpoint size is not a canonical decimal")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as exc:
        raise IntegrityError("checkpoint root is not base64") from exc
    if len(root) != 32 or base64.b64encode(root).decode("ascii") != root_text:
        raise IntegrityError("checkpoint root is not a canonical 32-byte hash")
    text_note = note.decode("utf-8") if isinstance(note, bytes) else note
    return Checkpoint(got_origin, int(size_text), root, text_note)
