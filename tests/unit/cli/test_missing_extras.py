"""A key provider whose optional extra is not installed: exit 2 with the install line.

Found by a tester: without `.[pkcs11]`, `init --kek pkcs11:...` and `keys migrate --to
pkcs11:...` died with "unexpected error: ModuleNotFoundError" (exit 1). The client
library is made missing here the way Python sees an absent module (`None` in sys.modules).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pcii_vault.errors import ConfigError
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.keys.providers import (
    log_signer_uri_for,
    open_kek_provider,
    open_log_signer,
    public_uri,
)

# provider URI, the client module it imports, pcii's module for it, the extra to install
PROVIDERS = [
    ("pkcs11:token=x;object=k", "pkcs11", "pcii_vault.keys.pkcs11", "pkcs11"),
    ("openbao:https://bao.example/transit/keys/k", "httpx", "pcii_vault.keys.transit", "openbao"),
    ("awskms:alias/k", "boto3", "pcii_vault.keys.awskms", "kms"),
]


def _without(monkeypatch: pytest.MonkeyPatch, library: str, module: str) -> None:
    """As if `library` were not installed (and pcii's provider module not yet imported)."""
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.delitem(sys.modules, module, raising=False)


def _pcii(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """`pcii ARGS` in this process, in `tmp_path`; its exit code."""
    from pcii_vault.cli.app import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PCII_UNSEAL_SECRET", "missing-extras-secret")
    monkeypatch.delenv("PCII_VAULT", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(args)
    return int(exited.value.code or 0)


@pytest.mark.parametrize(("uri", "library", "module", "extra"), PROVIDERS)
def test_every_entry_point_names_the_extra_to_install(
    uri: str, library: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without(monkeypatch, library, module)
    local = LocalKeyring.__new__(LocalKeyring)  # never reached: the import fails first
    calls = [lambda: open_kek_provider(uri, local, create=True)]
    if extra != "kms":  # AWS KMS holds no log key
        calls += [lambda: log_signer_uri_for(uri), lambda: open_log_signer(uri, local)]
    if extra == "pkcs11":  # only a PKCS#11 URI can carry a secret (its PIN) to strip
        calls.append(lambda: public_uri(uri))
    for call in calls:
        with pytest.raises(ConfigError, match=rf"pip install 'pcii-vault\[{extra}\]'"):
            call()


def test_init_with_a_pkcs11_kek_without_the_extra_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without(monkeypatch, "pkcs11", "pcii_vault.keys.pkcs11")
    args = ["--vault", "v", "init", "--kek", "pkcs11:token=x", "--admin-key-out", "k"]
    code = _pcii(args, tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("pcii: error: pkcs11: "), err
    assert "pip install -e '.[pkcs11]'" in err and "unexpected" not in err
    assert not (tmp_path / "v").exists()


def test_keys_migrate_to_pkcs11_without_the_extra_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    init = ["--vault", "v", "init", "--insecure-fast-kdf", "--admin-key-out", "admin.key"]
    assert _pcii(init, tmp_path, monkeypatch) == 0
    capsys.readouterr()
    _without(monkeypatch, "pkcs11", "pcii_vault.keys.pkcs11")
    migrate = ["--vault", "v", "--as", "admin.key", "keys", "migrate", "--to", "pkcs11:nonsense"]
    code = _pcii(migrate, tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "pip install 'pcii-vault[pkcs11]'" in err, err
