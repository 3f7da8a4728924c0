"""More tampering with what the vault reads: exit 4 (or the documented code), one line.

Each case is a tester's finding: a damaged index, a vault file replaced by a directory,
a record's ciphertext removed, a symlink planted in the store, the checkpoint history
deleted or a checkpoint copied to another size's slot, another vault's keyring or keys,
a keyring asking scrypt for gigabytes, the policy directory removed. Every test works on
its own copy of one vault built once for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.keys.local import MAX_SCRYPT_MEMORY, MAX_SCRYPT_P
from tests.e2e.conftest import (
    Cli,
    Result,
    copied_vault,
    free_port,
    one_line_error,
    validated_record,
)

pytestmark = pytest.mark.slow

_ORIGIN = "unit.test/history"
_KEY = Ed25519PrivateKey(b"\x06" * 32)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A vault with an owner, the office and a water analyst; one validated record."""
    cli = Cli(tmp_path_factory.mktemp("template"))
    return cli.root, validated_record(cli)


@pytest.fixture(scope="module")
def other_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another vault, sealed with the same unseal secret."""
    cli = Cli(tmp_path_factory.mktemp("other"))
    cli.init()
    return cli.vault


@pytest.fixture
def vault(template: tuple[Path, str], tmp_path: Path) -> tuple[Cli, str]:
    return copied_vault(template, tmp_path)


def _get(cli: Cli, tracking: str) -> Result:
    out = str(cli.root / "out")
    return cli.run("get", tracking, "--purpose", "drought planning", "--out", out, who="water")


def _status(cli: Cli, tracking: str) -> Result:
    return cli.run("status", tracking, who="owner")


def _objects(cli: Cli) -> Path:
    return cli.vault / "objects"


def _history(cli: Cli) -> list[Path]:
    return sorted((_objects(cli) / "log" / "checkpoints").iterdir())


# ----- 1. a damaged index ---------------------------------------------------------------


def test_a_truncated_index_is_tampering_and_rebuild_repairs_it(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    index = cli.vault / "index.sqlite"
    with index.open("r+b") as handle:
        handle.truncate(4096)
    for result in (
        _status(cli, tracking),
        _get(cli, tracking),
        cli.run("validate", tracking, who="office"),
        cli.run("maintenance"),
    ):
        assert "pcii index rebuild" in one_line_error(result, 4)
    cli.ok("index", "rebuild")
    assert _status(cli, tracking).code == 0


def test_a_directory_at_the_index_is_tampering_also_for_rebuild(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    index = cli.vault / "index.sqlite"
    index.unlink()
    index.mkdir()
    assert "index.sqlite" in one_line_error(_status(cli, tracking), 4)
    assert "remove it" in one_line_error(cli.run("index", "rebuild"), 4)
    index.rmdir()
    cli.ok("index", "rebuild")
    assert _status(cli, tracking).code == 0


def test_a_directory_planted_where_a_repair_builds_its_index_is_left_alone(
    vault: tuple[Cli, str],
) -> None:
    """An index without its tag whose rows are the log's is replaced by a replay, built
    under a fresh name: a directory at the old fixed name crashed it (exit 1)."""
    cli, tracking = vault
    (cli.vault / "index.sqlite.mac").unlink()
    planted = cli.vault / "index.sqlite.replayed"
    planted.mkdir()
    assert _status(cli, tracking).code == 0
    assert planted.is_dir()
    assert not list(cli.vault.glob(".index.sqlite.*"))


def test_a_vault_directory_over_a_store_without_its_log_is_refused(
    vault: tuple[Cli, str],
) -> None:
    """A tester's finding: a replica's vault directory (no index, no log-checkpoint: both
    optional to copy) over an empty store said ready, and every user got "'admin' is not
    a registered principal" (exit 3). `init` logs before it writes vault.json, so a vault
    directory always has a log: an empty store is a deleted log, or another store."""
    cli, tracking = vault
    for name in ("objects", "index.sqlite", "index.sqlite.mac", "log-checkpoint"):
        target = cli.vault / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    (cli.vault / "objects").mkdir()
    said = "the store holds no log, yet vault"
    assert said in one_line_error(_status(cli, tracking), 4)
    assert said in one_line_error(cli.run("principal", "list", who="admin"), 4)
    serve = cli.run("serve", "--listen", f"127.0.0.1:{free_port()}")
    assert said in one_line_error(serve, 4)
    # The audit commands, which read the log alone, say it as SECURITY.md does (a
    # tester's finding: `audit verify` said only "missing log object log/checkpoint").
    for audit in (["audit", "verify"], ["audit", "log"]):
        assert "the log holds nothing (no log/checkpoint)" in one_line_error(cli.run(*audit), 4)


@pytest.mark.parametrize("folder", ["log/claims", "wrapped", "records"])
def test_a_file_planted_at_a_store_folder_is_tampering_named(
    vault: tuple[Cli, str], folder: str
) -> None:
    """Was exit 2 ("object key conflicts with existing object"), as if the input were bad."""
    cli, _tracking = vault
    path = _objects(cli) / folder
    shutil.rmtree(path)
    path.write_bytes(b"planted")
    submission = str(cli.write_submission("planted.json", attachments=[]))
    line = one_line_error(cli.run("submit", submission, who="owner"), 4)
    assert f"file at {folder} where the vault keeps a folder" in line
    path.unlink()
    assert cli.run("submit", submission, who="owner").code == 0


# ----- 2. a vault file replaced by a directory -------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "index.sqlite.lock",
        "index.sqlite.mac",
        "keyring.sealed",
        "log-checkpoint",
        "log-checkpoint.lock",
    ],
)
def test_a_vault_file_replaced_by_a_directory_is_tampering(
    vault: tuple[Cli, str], name: str
) -> None:
    cli, tracking = vault
    path = cli.vault / name
    path.unlink()
    path.mkdir()
    for result in (_status(cli, tracking), _get(cli, tracking), cli.run("index", "rebuild")):
        assert name in one_line_error(result, 4)
    assert not (cli.root / "out").exists()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("log-checkpoint", "objects/log/checkpoint"),  # would always agree with the store
        ("index.sqlite", "elsewhere/index.sqlite"),  # written out of the vault directory
        ("keyring.sealed.lock", "elsewhere/planted"),  # dangling: created where it points
        ("keys.lock", "elsewhere/planted"),
    ],
)
def test_a_vault_file_replaced_by_a_symlink_is_tampering(
    vault: tuple[Cli, str], name: str, target: str
) -> None:
    cli, tracking = vault
    path = cli.vault / name
    aimed = cli.vault / target
    if target.startswith("elsewhere/"):
        aimed = cli.root / target
        aimed.parent.mkdir(exist_ok=True)
        if path.exists():
            shutil.copyfile(path, aimed)
    path.unlink(missing_ok=True)
    path.symlink_to(aimed)
    for result in (_status(cli, tracking), cli.run("keys", "status", who="admin")):
        assert f"{name} is a symlink" in one_line_error(result, 4)
    assert not (cli.root / "elsewhere" / "planted").exists()


@pytest.mark.parametrize("target", ["objects/log/checkpoint", "nowhere/log-checkpoint"])
def test_audit_verify_refuses_a_linked_anchor(vault: tuple[Cli, str], target: str) -> None:
    """A tester's finding: with the store rolled back and `log-checkpoint` a dangling
    symlink, every command refused, but `audit verify` (which reads the vault directory
    without checking it) took the link for no anchor and said the log was sound."""
    cli, _ = vault
    path = cli.vault / "log-checkpoint"
    path.unlink()
    path.symlink_to(cli.vault / target)
    assert "log-checkpoint is a symlink" in one_line_error(cli.run("audit", "verify"), 4)


def test_a_policy_file_replaced_by_a_directory_is_a_refused_policy_set(
    vault: tuple[Cli, str],
) -> None:
    cli, tracking = vault
    path = cli.vault / "policies" / "analyst-access.cedar"
    path.unlink()
    path.mkdir()
    line = one_line_error(_status(cli, tracking), 2)
    assert "analyst-access.cedar" in line
    assert "policy set refused" in line


# ----- 3. a record's ciphertext removed ---------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["document", "files/0", "record", "document-directory", "wrapped-key"]
)
def test_a_record_whose_ciphertext_is_gone_is_tampering(
    vault: tuple[Cli, str], damage: str
) -> None:
    """A tester's finding: a live record's deleted wrapped key was called "destroyed?"."""
    cli, tracking = vault
    record = _objects(cli) / "records" / tracking
    if damage == "wrapped-key":
        (_objects(cli) / "wrapped" / tracking).unlink()
    elif damage == "record":
        shutil.rmtree(record)
    elif damage == "document-directory":
        (record / "document").unlink()
        (record / "document").mkdir()
    else:
        (record / damage).unlink()
    line = one_line_error(_get(cli, tracking), 4)
    assert tracking in line
    assert "missing (removed outside the vault)" in line
    assert not any((cli.root / "out").rglob("*.*"))
    assert cli.ok("audit", "verify").code == 0


# ----- 4. symlinks and a directory planted in the store ------------------------------------


@pytest.mark.parametrize(
    ("key", "target"),
    [
        ("log/tile/entries/000.p/{size}", "/etc/passwd"),
        ("records/{tracking}/document", "/dev/zero"),
        ("wrapped/{tracking}", "/dev/zero"),
    ],
)
def test_a_symlink_out_of_the_store_is_tampering(
    vault: tuple[Cli, str], key: str, target: str
) -> None:
    cli, tracking = vault
    size = len(_history(cli)) + 2  # the checkpoints start at init's 3 events
    path = _objects(cli) / key.format(tracking=tracking, size=size)
    assert path.exists(), path
    path.unlink()
    path.symlink_to(target)
    line = one_line_error(_get(cli, tracking), 4)
    assert "outside the store root" in line
    assert not (cli.root / "out").exists()


def test_a_symlink_loop_at_the_checkpoint_is_tampering(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    checkpoint = _objects(cli) / "log" / "checkpoint"
    checkpoint.unlink()
    checkpoint.symlink_to("checkpoint")
    for result in (_status(cli, tracking), cli.run("audit", "verify")):
        assert "symlink loop" in one_line_error(result, 4)


@pytest.mark.parametrize("name", ["log-checkpoint", "objects"])
def test_a_symlink_loop_at_the_anchor_or_the_store_root_is_tampering(
    vault: tuple[Cli, str], name: str
) -> None:
    """Every command, the audit commands included: exit 4 naming the loop, never exit 1."""
    cli, tracking = vault
    path = cli.vault / name
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    path.symlink_to(name)
    for result in (_status(cli, tracking), cli.run("audit", "verify"), cli.run("audit", "log")):
        line = one_line_error(result, 4)
        assert any(
            words in line
            for words in ("symlink loop", "Too many levels of symbolic links", "is a symlink")
        )


@pytest.mark.parametrize("value", ["[]", '{"version": "abc"}', "not json"])
def test_a_key_fact_planted_in_the_index_is_refused_before_it_is_read(
    vault: tuple[Cli, str], value: str
) -> None:
    """The KEK version a submitter seals under comes from the index: checked first."""
    cli, tracking = vault
    with sqlite3.connect(cli.vault / "index.sqlite") as db:
        db.execute("INSERT OR REPLACE INTO meta VALUES('key.rotated', ?)", (value,))
    for result in (_status(cli, tracking), _get(cli, tracking)):
        assert "index.sqlite was changed outside the vault" in one_line_error(result, 4)


@pytest.mark.parametrize("key", ["log/tile/entries/000.p/{size}", "log/checkpoint"])
def test_a_fifo_planted_in_the_store_is_tampering_not_a_hang(
    vault: tuple[Cli, str], key: str
) -> None:
    # Anyone with write access to the store can make one; opening it for reading would
    # wait for a writer for ever.
    cli, tracking = vault
    size = len(_history(cli)) + 2
    path = _objects(cli) / key.format(size=size)
    path.unlink()
    os.mkfifo(path)
    for result in (_status(cli, tracking), cli.run("audit", "verify")):
        assert "not a regular file" in one_line_error(result, 4)


def test_a_directory_at_the_store_lock_is_tampering(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    lock = _objects(cli) / ".pcii-store.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    line = one_line_error(cli.run("withdraw", tracking, "--reason", "x", who="owner"), 4)
    assert ".pcii-store.lock" in line


# ----- 5. the checkpoint history ----------------------------------------------------------


def test_an_empty_history_fails_audit_verify_as_every_command(vault: tuple[Cli, str]) -> None:
    cli, tracking = vault
    for path in _history(cli):
        path.unlink()
    assert "vanished" in one_line_error(_status(cli, tracking), 4)
    for args in (("audit", "verify"), ("audit", "verify", "--structure-only")):
        # On the vault, its anchor's checkpoint is missed first; on a copy, the history.
        line = one_line_error(cli.run(*args), 4)
        assert "vanished" in line or "history was deleted" in line, line
        copied = one_line_error(cli.run(*args, "--log", str(_objects(cli))), 4)
        assert "history was deleted" in copied


def test_a_checkpoint_copied_to_another_size_does_not_wedge_appends(
    vault: tuple[Cli, str],
) -> None:
    cli, tracking = vault
    history = _history(cli)
    size = int(history[-1].name)
    slot = history[-1].with_name(f"{size + 1:020d}")
    shutil.copyfile(_objects(cli) / "log" / "checkpoint", slot)
    # Planted beyond the checkpoint: the audit names it, the next append replaces it.
    assert "holds a checkpoint of size" in one_line_error(cli.run("audit", "verify"), 4)
    result = _get(cli, tracking)
    assert result.code == 0, result.err
    assert "junk_history_checkpoint_replaced" in result.err
    assert cli.ok("audit", "verify").code == 0
    assert cli.run("status", tracking, who="office").code == 0


# ----- 6. another vault's keyring or keys -------------------------------------------------


def test_another_vaults_keyring_is_refused_before_anything_is_read(
    vault: tuple[Cli, str], other_vault: Path
) -> None:
    cli, tracking = vault
    shutil.copyfile(other_vault / "keyring.sealed", cli.vault / "keyring.sealed")
    tag_before = (cli.vault / "index.sqlite.mac").read_bytes()
    for result in (
        _status(cli, tracking),
        cli.run("index", "rebuild"),
        cli.run("maintenance"),
        _get(cli, tracking),
        cli.run("validate", tracking, who="office"),
    ):
        assert "not of the same vault" in one_line_error(result, 4)
    assert (cli.vault / "index.sqlite.mac").read_bytes() == tag_before
    assert not (cli.root / "out").exists()


def _edit_config(cli: Cli, field: str, edit: Callable[[Any], Any]) -> None:
    """Replace one field of the vault's `vault.json` by `edit(its value)`."""
    config_path = cli.vault / "vault.json"
    config = json.loads(config_path.read_text())
    config[field] = edit(config[field])
    config_path.write_text(json.dumps(config))


@pytest.mark.parametrize("field", ["log_key", "intake_public_key"])
def test_a_vault_json_naming_another_vaults_key_is_refused(
    vault: tuple[Cli, str], other_vault: Path, field: str
) -> None:
    cli, tracking = vault
    _edit_config(cli, field, lambda _: json.loads((other_vault / "vault.json").read_text())[field])
    for result in (
        _get(cli, tracking),
        cli.run("validate", tracking, who="office"),
        _status(cli, tracking),
        cli.run("index", "rebuild"),
    ):
        assert "not of the same vault" in one_line_error(result, 4)
    assert not (cli.root / "out").exists()


_PLANTED_LIBRARY = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    FILE *out = fopen(getenv("PLANTED_OUT"), "w");
    if (out) { fputs("loaded", out); fclose(out); }
}
"""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kek", "pkcs11:token=t;object=o?module-path={library}"),
        ("log_signer", "pkcs11:token=t;object=o?module-path={library}"),
        ("kek", "openbao:https://127.0.0.1:9/transit/keys/kek"),
        ("request_window_seconds", 3600),
        ("unseal_threshold", 2),  # was taken for missing shares: exit 2
        ("seal", None),
    ],
)
def test_a_vault_json_edited_outside_the_vault_opens_nothing(
    vault: tuple[Cli, str], tmp_path: Path, field: str, value: object
) -> None:
    """A planted key holder is refused before it is opened: no library loaded, no token sent.

    The PKCS#11 module path would load an attacker's library into a process holding the
    unseal secret; an OpenBao address would receive the token and wrap new data keys.
    """
    cli, tracking = vault
    library = tmp_path / "planted.so"
    marker = tmp_path / "loaded"
    source = tmp_path / "planted.c"
    source.write_text(_PLANTED_LIBRARY)
    if shutil.which("cc") is not None:
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    config_path = cli.vault / "vault.json"
    config = json.loads(config_path.read_text())
    config[field] = value.format(library=library) if isinstance(value, str) else value
    config_path.write_text(json.dumps(config))
    cli.env["PLANTED_OUT"] = str(marker)
    expected = "carries no seal" if field == "seal" else "does not carry this keyring's seal"
    for result in (_get(cli, tracking), cli.run("keys", "status", who="admin")):
        assert expected in one_line_error(result, 4)
    assert not marker.exists()
    assert not (cli.root / "out").exists()


@pytest.mark.parametrize("command", [("status",), ("index", "rebuild")])
def test_an_index_emptied_to_0_bytes_is_rebuilt_from_the_log(
    vault: tuple[Cli, str], command: tuple[str, ...]
) -> None:
    """A tester's finding: an empty index.sqlite was exit 1 ("MemoryError") for every
    command, `index rebuild` included; SECURITY.md: rebuilt from the verified log."""
    cli, tracking = vault
    (cli.vault / "index.sqlite").write_bytes(b"")
    args = (*command, tracking) if command == ("status",) else command
    result = cli.run(*args, who="owner" if command == ("status",) else None)
    assert result.code == 0, result.err
    assert cli.run("status", tracking, who="owner").code == 0
    assert cli.ok("audit", "verify").json()["sound"] is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("intake_public_key", "*{key}"),  # no base64: read before anything unseals
        ("intake_public_key", "AAAA"),  # base64, but no X25519 key
        ("log_key", "{key}*"),
    ],
)
def test_a_key_in_vault_json_that_is_no_key_is_tampering(
    vault: tuple[Cli, str], field: str, value: str
) -> None:
    """A tester's finding: a non-base64 intake key was exit 1 ("Incorrect padding")."""
    cli, tracking = vault
    _edit_config(cli, field, lambda key: value.format(key=key[1:]))
    for result in (
        cli.run("principal", "list", who="admin"),
        _status(cli, tracking),
        cli.run("audit", "verify"),
    ):
        assert "vault.json" in one_line_error(result, 4)


@pytest.mark.parametrize(
    "name",
    [
        "vault.json",
        "policies/pcii.cedarschema",
        "policies/submitter.cedar",
        "index.sqlite.mac",
        "index.sqlite-journal",
    ],
)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_fifo_or_device_in_place_of_a_vault_file_is_refused_not_waited_on(
    vault: tuple[Cli, str], name: str, kind: str
) -> None:
    """A FIFO would hang every command; /dev/zero would be read until memory runs out.

    A journal beside the index is never opened (the vault reads the index's bytes
    itself): the command answers, and the next write removes what was planted.
    """
    cli, tracking = vault
    path = cli.vault / name
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    if name == "index.sqlite-journal":
        assert _status(cli, tracking).code == 0
        cli.ok(
            "principal",
            "add",
            "later",
            "--role",
            "auditor",
            "--key-out",
            str(cli.key("later")),
            who="admin",
        )
        assert not os.path.lexists(path)
        return
    # `audit verify` reads the log and vault.json, not the policies or the index.
    audit = [cli.run("audit", "verify")] if name == "vault.json" else []
    for result in (_status(cli, tracking), *audit):
        assert result.code in {2, 4}, result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
    assert not (cli.root / "out").exists()


# ----- 7. scrypt costs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "r", "p"),
    [(2**20, 16, 16), (2**20, 8, 1), (2**17, 8, MAX_SCRYPT_P + 1)],
)
def test_a_keyring_asking_for_huge_scrypt_costs_is_refused_at_once(
    vault: tuple[Cli, str], n: int, r: int, p: int
) -> None:
    cli, tracking = vault
    keyring = cli.vault / "keyring.sealed"
    document = json.loads(keyring.read_text())
    document["kdf"].update(n=n, r=r, p=p)
    keyring.write_text(json.dumps(document))
    began = time.monotonic()
    line = one_line_error(_status(cli, tracking), 4)
    assert time.monotonic() - began < 30
    assert "scrypt" in line


def test_the_scrypt_limit_admits_what_init_writes() -> None:
    assert MAX_SCRYPT_MEMORY >= 128 * 8 * 2**17  # init's default, N=2^17, r=8
    assert MAX_SCRYPT_P >= 1


# ----- 8. the policy directory ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "dangling-symlink"])
def test_a_missing_policy_directory_is_refused_not_replaced_by_defaults(
    vault: tuple[Cli, str], how: str
) -> None:
    cli, tracking = vault
    policies = cli.vault / "policies"
    shutil.rmtree(policies)
    if how == "dangling-symlink":
        policies.symlink_to(cli.root / "nowhere")
    for result in (_status(cli, tracking), _get(cli, tracking)):
        assert str(policies) in one_line_error(result, 2)


def test_a_policy_edit_that_permits_a_suspended_user_still_releases_nothing(
    vault: tuple[Cli, str],
) -> None:
    """The lifecycle refuses what an edited policy permits: one line, no stray warning."""
    cli, tracking = vault
    cli.ok("principal", "update", "water", "--status", "suspended", who="admin")
    (cli.vault / "policies" / "principal-status.cedar").write_text(
        '@id("principal-not-active")\n'
        'forbid (principal, action, resource) when { principal.status == "nobody" };\n'
    )
    result = _get(cli, tracking)
    line = one_line_error(result, 3)
    assert "suspended" in line and "another act came first" not in line
    assert "illegal_event_ignored" not in result.err
    assert not (cli.root / "out").exists()
    # Nor does anything else (a tester's finding: `status` answered, and nothing was
    # logged): the vault's own rule denies, and each denial is logged.
    status = cli.run("status", tracking, who="water")
    assert "you are suspended" in one_line_error(status, 3)
    denials = [
        (e["actor"], e["decision"], e["policies"])
        for e in cli.ok("audit", "log", "--type", "access.decided").lines()
        if e["actor"] == "water"
    ]
    assert denials[-2] == ("water", "deny", ["principal-not-active"])  # the get
    assert denials[-1][:2] == ("water", "deny")  # the status
    cli.ok("audit", "verify")
