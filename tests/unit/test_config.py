"""`vault.json` as `VaultConfig.load` reads it: the user's own field, and damage of ours."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pcii_vault.config import Settings, VaultConfig
from pcii_vault.errors import ConfigError, IntegrityError

_DELETED = object()


def _written(tmp_path: Path) -> dict[str, Any]:
    config = VaultConfig(
        vault_id="v-0123456789abcdef",
        created=datetime(2026, 12, 1, tzinfo=UTC),
        store="file",
        log_origin="pcii-vault/v-0123456789abcdef",
        log_key="pcii-vault+12345678+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
        intake_public_key=base64.b64encode(bytes(32)).decode(),
        unseal_threshold=2,
        seal="0" * 64,
    )
    config.save_new(tmp_path / "vault.json")
    loaded: dict[str, Any] = json.loads((tmp_path / "vault.json").read_text())
    return loaded


def _load_edited(tmp_path: Path, **edits: object) -> VaultConfig:
    config = _written(tmp_path)
    for field, value in edits.items():
        if value is _DELETED:
            del config[field]
        else:
            config[field] = value
    path = tmp_path / "vault.json"
    path.write_text(json.dumps(config))
    return VaultConfig.load(path)


def test_the_config_init_writes_loads(tmp_path: Path) -> None:
    assert _load_edited(tmp_path).unseal_threshold == 2


@pytest.mark.parametrize(
    "edits",
    [
        {"unseal_threshold": 1},
        {"unseal_threshold": "two"},
        {"request_window_seconds": 0},
        {"vault_id": "NOT A VAULT ID"},
        {"seal": "not hex"},
        {"log_key": _DELETED},
        {"extra": "field"},
    ],
    ids=["threshold-1", "threshold-text", "window-0", "vault-id", "seal", "no-log-key", "extra"],
)
def test_a_sealed_field_damaged_is_tampering_not_a_config_error(
    tmp_path: Path, edits: dict[str, object]
) -> None:
    with pytest.raises(IntegrityError, match="edited outside the vault"):
        _load_edited(tmp_path, **edits)


def test_a_file_that_is_no_json_is_damage(tmp_path: Path) -> None:
    (tmp_path / "vault.json").write_text('{"format": "pcii-vault/1",')
    with pytest.raises(IntegrityError, match="edited outside the vault"):
        VaultConfig.load(tmp_path / "vault.json")


def test_a_bad_store_is_the_users_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid vault config: store"):
        _load_edited(tmp_path, store=7)


def test_another_format_is_a_config_error_naming_the_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format pcii-vault/1"):
        _load_edited(tmp_path, format="pcii-vault/2")


def test_a_missing_config_names_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pcii --vault DIR init"):
        VaultConfig.load(tmp_path / "vault.json")


@pytest.mark.parametrize("where", ["127.0.0.1:8443", "vault.example:443", "[::1]:8443"])
def test_a_server_address_without_its_scheme_is_pointed_to_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"write --vault https://{re.escape(where)}$"):
        VaultConfig.load(Path(where) / "vault.json")
    with pytest.raises(ConfigError, match=r"run `pcii --vault DIR init`$"):
        VaultConfig.load(Path("my-vault") / "vault.json")


def test_a_directory_at_the_config_is_tampering(tmp_path: Path) -> None:
    (tmp_path / "vault.json").mkdir()
    with pytest.raises(IntegrityError, match="is a directory, not the vault's config"):
        VaultConfig.load(tmp_path / "vault.json")


@pytest.mark.parametrize("value", ["1e-9", "0.0000004", "0.5", "0", "-1"])
def test_a_request_window_under_a_second_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """`created` counts whole seconds: a shorter window refused every request, and one
    under a microsecond made `pcii serve` crash after its banner (exit 1)."""
    monkeypatch.setenv("PCII_SERVER_SKEW_S", value)
    with pytest.raises(ConfigError, match=r"^PCII_SERVER_SKEW_S: .*greater than or equal to 1"):
        Settings.from_environment()
