"""M-of-N unseal with SLIP-39 shares: every 3-of-5 combination unseals, no 2 do, a
corrupted word and a foreign share are named, and the files and prompts work."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

import pytest
from shamir_mnemonic.wordlist import WORDLIST

from pcii_vault.errors import InputError
from pcii_vault.keys.shares import (
    SHARES_ENV,
    ShareText,
    combine_shares,
    shares_from_env_or_prompt,
    split_secret,
    write_shares,
)


@pytest.fixture(scope="module")
def split() -> tuple[bytes, list[str]]:
    return split_secret(3, 5)


def _texts(mnemonics: list[str], picks: tuple[int, ...]) -> list[ShareText]:
    return [ShareText(f"share-{i + 1}", mnemonics[i]) for i in picks]


def test_every_3_of_5_combination_unseals(split: tuple[bytes, list[str]]) -> None:
    secret, mnemonics = split
    assert len(secret) == 32
    combos = list(itertools.combinations(range(5), 3))
    assert len(combos) == 10
    for picks in combos:
        assert combine_shares(_texts(mnemonics, picks)) == secret
    # Order and a repeated share do not matter.
    assert combine_shares(_texts(mnemonics, (4, 0, 4, 2))) == secret


def test_every_2_subset_refuses_naming_how_many_are_missing(
    split: tuple[bytes, list[str]],
) -> None:
    _, mnemonics = split
    for picks in itertools.combinations(range(5), 2):
        with pytest.raises(InputError, match="2 of 3 unseal shares given: 1 missing"):
            combine_shares(_texts(mnemonics, picks))
    with pytest.raises(InputError, match="1 of 3 unseal shares given: 2 missing") as twice:
        combine_shares(_texts(mnemonics, (1, 1)))
    # The same share twice is named as such (a custodian handed over a copy).
    assert str(twice.value).endswith(": a share given again)")


@pytest.mark.parametrize("position", [1, 7, 20])
def test_a_flipped_word_is_named_with_its_share(
    split: tuple[bytes, list[str]], position: int
) -> None:
    _, mnemonics = split
    words = mnemonics[1].split()
    original = words[position - 1]
    words[position - 1] = next(w for w in WORDLIST if w != original)
    shares = [
        ShareText("alice.txt", mnemonics[0]),
        ShareText("bob.txt", " ".join(words)),
        ShareText("carol.txt", mnemonics[2]),
    ]
    with pytest.raises(InputError) as caught:
        combine_shares(shares)
    message = str(caught.value)
    assert f"unseal share bob.txt fails its checksum: word {position} is wrong" == message
    assert original not in message.split()  # no share words in messages


def test_a_word_outside_the_list_is_named(split: tuple[bytes, list[str]]) -> None:
    _, mnemonics = split
    words = mnemonics[3].split()
    words[4] = "pcii"
    with pytest.raises(InputError, match=r"share d: word 5 is not a SLIP-39 word"):
        combine_shares([ShareText("d", " ".join(words)), *_texts(mnemonics, (0, 1))])


def test_a_share_of_another_split_is_named(split: tuple[bytes, list[str]]) -> None:
    _, mnemonics = split
    _, foreign = split_secret(3, 5)
    shares = [*_texts(mnemonics, (0, 1)), ShareText("stranger", foreign[2])]
    with pytest.raises(InputError, match="share stranger belongs to another split"):
        combine_shares(shares)


@pytest.mark.parametrize(("threshold", "count"), [(1, 3), (4, 3), (2, 17)])
def test_impossible_splits_are_refused(threshold: int, count: int) -> None:
    with pytest.raises(InputError):
        split_secret(threshold, count)


def test_share_files_are_private_and_never_overwritten(
    split: tuple[bytes, list[str]], tmp_path: Path
) -> None:
    secret, mnemonics = split
    paths = write_shares(tmp_path / "shares", mnemonics)
    assert [p.name for p in paths] == [f"unseal-share-{i}-of-5.txt" for i in range(1, 6)]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    with pytest.raises(InputError, match="already exists"):
        write_shares(tmp_path / "shares", mnemonics)
    env = {SHARES_ENV: os.pathsep.join(str(p) for p in paths[2:])}
    assert shares_from_env_or_prompt(environ=env) == secret
    env = {SHARES_ENV: os.pathsep.join(str(p) for p in paths[:2])}
    with pytest.raises(InputError, match="1 missing"):
        shares_from_env_or_prompt(environ=env)
    with pytest.raises(InputError, match=r"unseal share .* not found"):
        shares_from_env_or_prompt(environ={SHARES_ENV: str(tmp_path / "nope")})


def test_a_share_file_readable_by_others_is_refused(
    split: tuple[bytes, list[str]], tmp_path: Path
) -> None:
    """A tester's finding: a world-readable share was taken, where a world-readable
    identity file is refused; a share is part of the vault's master secret."""
    _, mnemonics = split
    paths = write_shares(tmp_path / "shares", mnemonics)
    paths[3].chmod(0o644)
    env = {SHARES_ENV: os.pathsep.join(str(p) for p in paths[2:])}
    with pytest.raises(InputError, match=r"unseal-share-4-of-5\.txt is readable by others"):
        shares_from_env_or_prompt(environ=env)


def test_custodians_type_shares_at_a_prompt_until_the_threshold(
    split: tuple[bytes, list[str]],
) -> None:
    secret, mnemonics = split
    answers = iter([mnemonics[4], mnemonics[1], mnemonics[3]])
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return next(answers)

    assert shares_from_env_or_prompt(environ={}, prompt=prompt) == secret
    assert asked == ["Unseal share 1: ", "Unseal share 2 of 3: ", "Unseal share 3 of 3: "]
    stop_early = iter([mnemonics[0], ""])
    with pytest.raises(InputError, match="1 of 3 unseal shares given: 2 missing"):
        shares_from_env_or_prompt(environ={}, prompt=lambda _: next(stop_early))


def test_an_endless_share_file_is_refused_at_its_bound() -> None:
    """A tester's finding: PCII_UNSEAL_SHARES=/dev/zero read the file whole (MemoryError)."""
    from pcii_vault.errors import InputError
    from pcii_vault.keys.shares import _read_share_files

    with pytest.raises(InputError, match="larger than"):
        _read_share_files(["/dev/zero"])
