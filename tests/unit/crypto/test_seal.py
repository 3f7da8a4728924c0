"""scrypt-derived sealing keys and AES-GCM sealing for secrets at rest."""

from __future__ import annotations

import pytest

from pcii_vault.crypto.seal import ScryptParams, derive_sealing_key, open_sealed, seal
from pcii_vault.errors import IntegrityError

CHEAP = ScryptParams(n=2**4, r=8, p=1)
SALT = bytes(16)


def test_derivation_depends_on_secret_salt_and_every_parameter() -> None:
    base = derive_sealing_key(b"secret", SALT, CHEAP)
    assert len(base) == 32
    assert derive_sealing_key(b"secret", SALT, CHEAP) == base
    variants = [
        derive_sealing_key(b"secreT", SALT, CHEAP),
        derive_sealing_key(b"secret", b"\x01" + SALT[1:], CHEAP),
        derive_sealing_key(b"secret", SALT, ScryptParams(n=2**5, r=8, p=1)),
        derive_sealing_key(b"secret", SALT, ScryptParams(n=2**4, r=4, p=1)),
        derive_sealing_key(b"secret", SALT, ScryptParams(n=2**4, r=8, p=2)),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


@pytest.mark.parametrize(("n", "r", "p"), [(0, 8, 1), (3, 8, 1), (2**4, 0, 1), (2**4, 8, 0)])
def test_invalid_parameters_are_refused(n: int, r: int, p: int) -> None:
    with pytest.raises(ValueError, match="scrypt"):
        ScryptParams(n=n, r=r, p=p)


def test_parameters_too_costly_for_a_file_are_refused() -> None:
    ScryptParams(n=2**20, r=8, p=1).check_untrusted()
    for params in (ScryptParams(2**21, 8, 1), ScryptParams(2**4, 17, 1), ScryptParams(2**4, 8, 17)):
        with pytest.raises(ValueError, match="limits"):
            params.check_untrusted()


def test_short_salt_is_refused() -> None:
    with pytest.raises(ValueError, match="salt"):
        derive_sealing_key(b"secret", bytes(8), CHEAP)


def test_sealed_data_needs_the_same_key_and_associated_data() -> None:
    key = derive_sealing_key(b"secret", SALT, CHEAP)
    nonce, ciphertext = seal(key, b"contents", b"header")
    assert open_sealed(key, nonce, ciphertext, b"header") == b"contents"
    for bad in (
        lambda: open_sealed(bytes(32), nonce, ciphertext, b"header"),
        lambda: open_sealed(key, nonce, ciphertext, b"headeR"),
        lambda: open_sealed(key, bytes(12), ciphertext, b"header"),
        lambda: open_sealed(key, nonce[:11], ciphertext, b"header"),
        lambda: open_sealed(key, nonce, ciphertext[:-1], b"header"),
    ):
        with pytest.raises(IntegrityError):
            bad()
