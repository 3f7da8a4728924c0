"""An identity file: what `--as` loads. Anything but the vault's own format is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import ConfigError
from pcii_vault.identity import Identity


def _written(path: Path, **changes: object) -> Path:
    Identity("v-0011223344556677", "diaz", Ed25519PrivateKey(b"\x07" * 32)).save_new(path)
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, **changes}))
    path.chmod(0o600)
    return path


def test_an_identity_file_loads_as_it_was_saved(tmp_path: Path) -> None:
    loaded = Identity.load(_written(tmp_path / "diaz.key"))
    assert (loaded.vault_id, loaded.principal) == ("v-0011223344556677", "diaz")


@pytest.mark.parametrize(
    "changes",
    [{"principal": 5}, {"principal": None}, {"vault_id": ["v"]}, {"principal": {"id": "x"}}],
)
def test_a_principal_or_vault_that_is_not_text_is_malformed(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    """`"principal": 5` was accepted and signed as the principal "5"."""
    with pytest.raises(ConfigError, match="is malformed"):
        Identity.load(_written(tmp_path / "odd.key", **changes))


def test_an_identity_naming_its_principal_twice_is_malformed(tmp_path: Path) -> None:
    """A tester's finding: a second `"principal"` key was used (the last one wins)."""
    path = _written(tmp_path / "twice.key")
    text = path.read_text()
    path.write_text(text.replace('"principal": "diaz"', '"principal": "diaz", "principal": "lee"'))
    with pytest.raises(ConfigError, match="is malformed"):
        Identity.load(path)


def test_an_identity_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _written(tmp_path / "diaz.key")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others: chmod 600"):
        Identity.load(path)


def test_another_kind_of_file_is_named_before_its_permissions(tmp_path: Path) -> None:
    """A tester's finding: `--as receipt.json` (0644) asked to chmod it, then, once it was,
    said it was no identity file. Its kind comes first."""
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps({"format": "pcii-vault/receipt", "tracking_number": "T"}))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="is not a pcii identity file"):
        Identity.load(path)
