"""M-of-N unseal: the local keyring's unseal secret split into SLIP-39 mnemonic shares.

`pcii init --unseal-shares N --unseal-threshold M --shares-out DIR` draws a random 256-bit
unseal secret, seals the keyring under it, and splits it with the SLIP-39 reference
implementation (`shamir-mnemonic`; no hand-written secret sharing) into N mnemonics, one
file per custodian. Nobody ever sees the secret itself. To unseal, M custodians give
their shares: files named in `PCII_UNSEAL_SHARES` (separated by `:`, the platform's path
separator) or typed at a prompt, one after another.

Invariants:
- fewer than M distinct shares refuse, saying how many are missing;
- a share that fails its SLIP-39 checksum (RS1024) is named, and so is the word when a
  single wrong word explains the failure; a share of another split is named;
- messages never contain share words.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import shamir_mnemonic
from shamir_mnemonic import MnemonicError, Share
from shamir_mnemonic.wordlist import WORDLIST

from pcii_vault.durable import read_named_file, write_new_file
from pcii_vault.errors import InputError

__all__ = [
    "SHARES_ENV",
    "ShareText",
    "combine_shares",
    "read_share_file",
    "share_parameters",
    "shares_from_env_or_prompt",
    "split_secret",
    "write_shares",
]

SHARES_ENV: Final = "PCII_UNSEAL_SHARES"
SECRET_BYTES: Final = 32
MAX_SHARES: Final = 16  # SLIP-39's limit per group
# A share of a 256-bit secret: 7 words of metadata and checksum, 26 of value.
SHARE_WORDS: Final = 33

_MAX_SHARE_FILE = 64 << 10  # a share file: a line of words, a few hundred bytes


@dataclass(frozen=True, slots=True)
class ShareText:
    """One custodian's share as given, and what to call it in a message."""

    name: str
    mnemonic: str

    def __repr__(self) -> str:
        return f"ShareText({self.name!r}, <redacted>)"


def split_secret(threshold: int, count: int) -> tuple[bytes, list[str]]:
    """Draw a random unseal secret and split it into `count` shares, `threshold` to unseal.

    Raises:
        InputError: not 2 <= threshold <= count <= 16.
    """
    if not 2 <= threshold <= count <= MAX_SHARES:
        raise InputError(
            f"unseal shares: need 2 <= threshold <= shares <= {MAX_SHARES} "
            f"(got {threshold} of {count})"
        )
    secret = secrets.token_bytes(SECRET_BYTES)
    [group] = shamir_mnemonic.generate_mnemonics(1, [(threshold, count)], secret)
    return secret, list(group)


def write_shares(directory: Path, mnemonics: Sequence[str]) -> list[Path]:
    """Write one file per share (mode 0600) into `directory` (created 0700).

    Nothing is left behind on failure: the shares written and the directories made.

    Raises:
        InputError: a share file already exists there, or the directory cannot be made
            or written (one line naming it).
    """
    made = [p for p in (directory, *directory.parents) if not p.exists()]
    written: list[Path] = []
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for number, mnemonic in enumerate(mnemonics, start=1):
            path = directory / f"unseal-share-{number}-of-{len(mnemonics)}.txt"
            try:
                write_new_file(path, mnemonic.encode("utf-8") + b"\n", mode=0o600)
            except FileExistsError:
                raise InputError(f"{path} already exists; refusing to overwrite a share") from None
            written.append(path)
    except BaseException as exc:
        for done in written:
            done.unlink(missing_ok=True)
        for folder in made:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise InputError(
                f"cannot write the unseal shares into {directory}: {exc.strerror or exc}"
            ) from None
        raise
    return written


def combine_shares(shares: Iterable[ShareText]) -> bytes:
    """Recover the unseal secret from at least the threshold of distinct shares.

    More shares than the threshold are fine: the secret is recovered from the first
    threshold of them, and every further share must recover the same secret (a share
    that does not is named).

    Raises:
        InputError: a share is corrupted (named, with the word when one word explains
            it) or from another split (named), or too few shares (how many are missing).
    """
    parsed: list[tuple[ShareText, Share]] = [(text, _parse(text)) for text in shares]
    if not parsed:
        raise InputError(f"no unseal shares given (set {SHARES_ENV} or type them)")
    first_text, first = parsed[0]
    for text, share in parsed[1:]:
        if share.common_parameters() != first.common_parameters():
            raise InputError(
                f"unseal share {text.name} belongs to another split than {first_text.name}"
            )
    distinct: dict[int, tuple[ShareText, Share]] = {}
    for text, share in parsed:
        seen = distinct.setdefault(share.index, (text, share))
        if seen[1] != share:
            # Same split, same member index, other words: not a copy, an altered share.
            raise InputError(
                f"unseal shares {seen[0].name} and {text.name} claim the same place in the "
                "split with different words (an altered share)"
            )
    threshold = first.member_threshold
    if len(distinct) < threshold:
        missing = threshold - len(distinct)
        again = _repeated(parsed)
        raise InputError(
            f"{len(distinct)} of {threshold} unseal shares given: {missing} missing{again}"
        )
    # shamir-mnemonic takes exactly the threshold of one group's shares, no more.
    chosen = list(distinct.values())
    secret = _combine([share for _, share in chosen[:threshold]])
    for text, share in chosen[threshold:]:
        try:
            agrees = _combine([*(s for _, s in chosen[: threshold - 1]), share]) == secret
        except InputError:
            agrees = False
        if not agrees:
            raise InputError(f"unseal share {text.name} does not agree with the others")
    return secret


def _combine(shares: Sequence[Share]) -> bytes:
    try:
        return bytes(shamir_mnemonic.combine_mnemonics([s.mnemonic() for s in shares]))
    except MnemonicError:
        # Checksums passed and parameters agree, yet the digest does not: altered shares.
        raise InputError("the unseal shares do not combine (altered or mixed shares)") from None


def _repeated(parsed: Iterable[tuple[ShareText, Share]]) -> str:
    """The shares given more than once, for the message; empty when there are none."""
    seen: set[int] = set()
    repeated: list[str] = []
    for text, share in parsed:
        if share.index in seen:
            repeated.append(text.name)
        seen.add(share.index)
    return f" ({', '.join(repeated)}: a share given again)" if repeated else ""


def share_parameters(text: ShareText) -> tuple[tuple[object, ...], int, int]:
    """One share's split (what all its sibling shares share), member index and threshold.

    Raises:
        InputError: the share is corrupted (named, with the word when one word explains it).
    """
    share = _parse(text)
    return tuple(share.common_parameters()), share.index, share.member_threshold


def _parse(text: ShareText) -> Share:
    words = text.mnemonic.lower().split()
    for position, word in enumerate(words, start=1):
        if word not in _WORD_SET:
            raise InputError(f"unseal share {text.name}: word {position} is not a SLIP-39 word")
    if len(words) != SHARE_WORDS:
        # Checked before the checksum: the one-wrong-word search below costs words^2 * 1024
        # checksums, which a long text (a server's custodian sends up to 2000 characters)
        # would turn into minutes under the seal's lock.
        raise InputError(
            f"unseal share {text.name} has {len(words)} words; a share has {SHARE_WORDS}"
        )
    try:
        return Share.from_mnemonic(" ".join(words))
    except MnemonicError:
        culprit = _single_wrong_word(words)
        where = f": word {culprit} is wrong" if culprit else ""
        raise InputError(f"unseal share {text.name} fails its checksum{where}") from None


def _single_wrong_word(words: list[str]) -> int | None:
    """The position of the one word whose replacement makes the checksum pass, if unique.

    RS1024 detects any error in up to 3 words; trying every word at every position finds
    which one was changed when a single word was (the usual slip of a custodian's pen).
    """
    candidates = set()
    for index in range(len(words)):
        original = words[index]
        for replacement in WORDLIST:
            if replacement == original:
                continue
            words[index] = replacement
            try:
                Share.from_mnemonic(" ".join(words))
            except MnemonicError:
                continue
            finally:
                words[index] = original
            candidates.add(index + 1)
            break
    return candidates.pop() if len(candidates) == 1 else None


_WORD_SET: Final = frozenset(WORDLIST)


def shares_from_env_or_prompt(
    *,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] = getpass.getpass,
    interactive: bool = True,
) -> bytes:
    """Recover the unseal secret from share files in `PCII_UNSEAL_SHARES`, or prompts.

    At a prompt custodians type one share each until the threshold (learned from the
    first share) is reached; an empty answer stops early (and is refused as too few).

    Raises:
        InputError: unreadable files, corrupted or foreign shares, too few shares.
    """
    env = os.environ if environ is None else environ
    listed = env.get(SHARES_ENV)
    if listed:
        return combine_shares(_read_share_files(listed.split(os.pathsep)))
    if not interactive:
        raise InputError(f"the vault is sealed by shares: set {SHARES_ENV} or run on a terminal")
    given: list[ShareText] = []
    needed = None
    while needed is None or len({_parse(t).index for t in given}) < needed:
        answer = prompt(f"Unseal share {len(given) + 1}{f' of {needed}' if needed else ''}: ")
        if not answer.strip():
            break
        text = ShareText(f"#{len(given) + 1} (typed)", answer)
        needed = needed or _parse(text).member_threshold
        given.append(text)
    return combine_shares(given)


def _read_share_files(paths: Iterable[str]) -> list[ShareText]:
    return [ShareText(raw, read_share_file(Path(raw))) for raw in paths if raw]


def read_share_file(path: Path) -> str:
    """A custodian's share file: bounded, UTF-8, readable by its owner only.

    `init` writes shares 0600; one readable by others is refused, as an identity file
    is (a share is part of the vault's master secret).

    Raises:
        InputError: missing, unreadable, too large, not text, or readable by others.
    """
    data = read_named_file(path, _MAX_SHARE_FILE, "unseal share")
    with contextlib.suppress(OSError):  # a pipe or /dev/stdin has no mode to check
        mode = path.stat().st_mode
        if stat.S_ISREG(mode) and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InputError(
                f"unseal share {path} is readable by others: chmod 600 it and try again"
            )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"unseal share {path} is not UTF-8 text (not a share)") from None
