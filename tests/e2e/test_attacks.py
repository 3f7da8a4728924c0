"""Attacks on the store, the log and the index, each through the CLI as documented.

The attacker has write access to the store (the bucket, or the vault's `objects/`) and to
the vault's Unix account (`index.sqlite`), but not the unseal secret or the log key. Every
attack must end in exit 4 naming what was changed, never in a release, a signature over
a forgery, or exit 1; and `pcii index rebuild` (or nothing at all) repairs what can be
repaired. Where a test needs the log key (to plant what only a forger with that key
could), it says so: then `pcii audit verify` is what finds it.

Each scenario runs on the filesystem store and on SeaweedFS.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import SECRET, TRAINED, WATER, Cli
from seaweed import new_bucket_name

from pcii_vault.errors import VaultError
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.ledger.log import CHECKPOINT_KEY, HISTORY_PREFIX, Ledger
from pcii_vault.ledger.tiles import bundle_key, decode_bundle, encode_bundle, hash_tile_key
from pcii_vault.ledger.tree import leaf_hash
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore
from pcii_vault.store.filesystem import FilesystemStore

pytestmark = [pytest.mark.slow]


@dataclass
class Target:
    cli: Cli
    store: ObjectStore
    tracking: str

    def run(self, *args: str, who: str | None = None) -> Any:
        return self.cli.run(*args, who=who)

    def events(self) -> list[dict[str, Any]]:
        return self.cli.ok("audit", "log").lines()

    def log_size(self) -> int:
        return int(self.store.get(CHECKPOINT_KEY).decode().split("\n")[1])

    def ledger(self) -> Ledger:
        """The log with its signing key: only for planting what a key holder could."""
        keyring = LocalKeyring.open(self.cli.vault / "keyring.sealed", SECRET.encode())
        signer = keyring.log_signer()
        config = json.loads((self.cli.vault / "vault.json").read_text())
        return Ledger(self.store, config["log_origin"], signer=signer, verifier=signer.public_key)


def _overwrite(store: ObjectStore, key: str, data: bytes) -> None:
    _, etag = store.get_with_etag(key)
    store.put_if_match(key, data, etag)


def _init(cli: Cli, store: str | None) -> None:
    if store is None:
        cli.init()
        return
    cli.ok(
        "init", "--insecure-fast-kdf", "--store", store,
        "--admin-key-out", str(cli.key("admin")),
    )  # fmt: skip


def _populate(cli: Cli) -> str:
    """Users, a validated record, and the water analyst's retrieval of it (via the CLI)."""
    cli.add("owner", "owner", "--org", "Riverbend Municipal Water Authority", "--level", "private")
    cli.add("office", "office", "--org", "PCII Program Office", "--training-expires", TRAINED)
    cli.add(
        "water", "analyst", "--level", "federal", "--org", "EPA Water",
        "--sector", WATER, "--training-expires", TRAINED,
    )  # fmt: skip
    cli.add(
        "energy", "analyst", "--level", "federal", "--org", "DOE",
        "--sector", "Energy", "--training-expires", TRAINED,
    )  # fmt: skip
    submitted = cli.ok("submit", str(cli.write_submission(attachments=[])), who="owner").json()
    tracking: str = submitted["tracking_number"]
    cli.ok("validate", tracking, who="office")
    cli.ok("get", tracking, "--purpose", "drought planning", "--out", str(cli.root / "r1"),
           who="water")  # fmt: skip
    return tracking


@dataclass
class _Template:
    """A populated vault built once through the CLI; each test gets its own copy."""

    root: Path
    tracking: str
    bucket: str | None = None


@pytest.fixture(scope="module")
def fs_template(tmp_path_factory: pytest.TempPathFactory) -> _Template:
    root = tmp_path_factory.mktemp("attack-fs")
    cli = Cli(root)
    _init(cli, None)
    return _Template(root, _populate(cli))


@pytest.fixture(scope="module")
def s3_template(tmp_path_factory: pytest.TempPathFactory, seaweed: Any) -> Iterator[_Template]:
    root = tmp_path_factory.mktemp("attack-s3")
    bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=bucket)
    cli = Cli(root)
    cli.env.update(seaweed.aws_environment(root))
    _init(cli, f"s3://{bucket}/v")
    yield _Template(root, _populate(cli), bucket)


def _copy_vault(template: _Template, root: Path) -> Cli:
    for name in ("vault", "keys"):
        shutil.rmtree(root / name, ignore_errors=True)
        shutil.copytree(template.root / name, root / name)
    return Cli(root)


def _copy_bucket(seaweed: Any, source: str, target: str) -> None:
    client = seaweed.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=source)
    for page in pages:
        for item in page.get("Contents", []):
            client.copy_object(
                Bucket=target, Key=item["Key"], CopySource={"Bucket": source, "Key": item["Key"]}
            )


def _s3_init(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path) -> ObjectStore:
    """`pcii init` on a fresh SeaweedFS bucket with only the standard AWS environment."""
    seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("s3_bucket")
    cli.env.update(seaweed.aws_environment(tmp_path))
    _init(cli, f"s3://{bucket}/v")
    store: ObjectStore = seaweed.s3_store(bucket, "v")
    return store


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A vault with a validated record that the water analyst has retrieved (a copy)."""
    if request.param == "fs":
        template: _Template = request.getfixturevalue("fs_template")
        cli = _copy_vault(template, tmp_path)
        return Target(cli, FilesystemStore(cli.vault / "objects"), template.tracking)
    template = request.getfixturevalue("s3_template")
    seaweed = request.getfixturevalue("seaweed")
    bucket = request.getfixturevalue("s3_bucket")
    assert template.bucket is not None
    _copy_bucket(seaweed, template.bucket, bucket)
    cli = _copy_vault(template, tmp_path)
    cli.env.update(seaweed.aws_environment(tmp_path))
    config_path = cli.vault / "vault.json"
    config = json.loads(config_path.read_text())
    config["store"] = f"s3://{bucket}/v"
    config_path.write_text(json.dumps(config))
    return Target(cli, seaweed.s3_store(bucket, "v"), template.tracking)


def _exit4(result: Any, *needles: str) -> None:
    assert result.code == 4, f"exit {result.code}: {result.err}"
    assert result.err.count("\n") == 1, result.err
    for needle in needles:
        assert needle in result.err, result.err


# ----- the store attacker: forged history --------------------------------------------------


def _forge_in_partial_bundle(target: Target, change: Any) -> None:
    """Rewrite the newest committed entry with `change` and recompute its hash tile."""
    size = target.log_size()
    n, width = divmod(size, 256)
    key = bundle_key(n, width)
    entries = decode_bundle(target.store.get(key), width)
    entries[-1] = change(json.loads(entries[-1]))
    _overwrite(target.store, key, encode_bundle(entries))
    _overwrite(target.store, hash_tile_key(0, n, width), b"".join(leaf_hash(e) for e in entries))


def _event(event: dict[str, Any]) -> Event:
    return Event.model_validate_json(json.dumps(event))


def _as_entry(event: dict[str, Any]) -> bytes:
    return _event(event).entry_bytes()


def test_forged_permit_to_deny_with_fixed_tiles_is_never_signed(target: Target) -> None:
    """Forge the analyst's permit into a deny, fix the tiles, wait for an append, delete
    the history that shows the truth: the append refuses, verify and rebuild exit 4."""

    def to_deny(event: dict[str, Any]) -> bytes:
        assert event["type"] == "access.decided" and event["decision"] == "permit"
        return _as_entry({**event, "decision": "deny"})

    _forge_in_partial_bundle(target, to_deny)
    # A tester's finding: `audit verify` named the decision replay (what a key holder's
    # re-signed log gives), not the tree that no longer reproduces the signed root.
    verified = target.run("audit", "verify")
    _exit4(verified, "root does not match the entries")
    assert "replayed decision" not in verified.err
    # An ordinary act that appends: refused before anything is signed over the forgery.
    size = target.log_size()
    result = target.run(
        "get", target.tracking, "--purpose", "curious", "--out", str(target.cli.root / "x"),
        who="energy",
    )  # fmt: skip
    _exit4(result, "signed")
    assert target.log_size() == size
    for info in list(target.store.list(HISTORY_PREFIX)):
        target.store.delete(info.key)
    _exit4(target.run("audit", "verify"))
    _exit4(target.run("index", "rebuild", who="admin"))
    _exit4(target.run("audit", "recipients", target.tracking))


def test_planted_admin_by_actor_vault_in_the_partial_bundle_is_refused(target: Target) -> None:
    def plant(event: dict[str, Any]) -> bytes:
        planted = {
            "v": 1, "seq": event["seq"], "time": event["time"], "type": "principal.registered",
            "actor": "vault",
            "details": {"principal": {
                "id": "mallory", "role": "admin", "organisation": "Evil", "level": "federal",
                "public_key": "A" * 43 + "=",
            }},
        }  # fmt: skip
        return _as_entry(planted)

    _forge_in_partial_bundle(target, plant)
    _exit4(target.run("principal", "list", who="admin"), "signed")
    _exit4(target.run("audit", "verify"))


def test_planted_admin_signed_with_the_log_key_has_no_effect(target: Target) -> None:
    """Even a forger with the log key cannot make `vault` register an admin: the closed
    list of the vault's own acts refuses it; the vault keeps working, verify names it."""
    now = datetime.now(UTC)
    planted = Event(
        seq=0, time=now, type="principal.registered", actor="vault",
        details={"principal": {
            "id": "mallory", "role": "admin", "organisation": "Evil", "level": "federal",
            "public_key": "A" * 43 + "=",
        }},
    )  # fmt: skip
    [index] = target.ledger().append([planted]).indices
    names = [p["id"] for p in target.cli.ok("principal", "list", who="admin").lines()]
    assert "mallory" not in names
    _exit4(target.run("audit", "verify"), f"event {index}", "first admin")


# ----- the index attacker ----------------------------------------------------------------


def _edit_index(target: Target, sql: str, *args: Any) -> None:
    db = sqlite3.connect(target.cli.vault / "index.sqlite")
    try:
        with db:
            changed = db.execute(sql, args).rowcount
        assert changed, sql
    finally:
        db.close()


def _give_energy_water(target: Target) -> None:
    row = sqlite3.connect(target.cli.vault / "index.sqlite").execute(
        "SELECT document FROM principals WHERE id='energy'"
    )
    document = json.loads(row.fetchone()[0])
    document["sectors"] = ["Energy", WATER]
    _edit_index(target, "UPDATE principals SET document=? WHERE id='energy'", json.dumps(document))


@pytest.mark.parametrize(
    ("name", "edit", "table"),
    [
        ("sectors", _give_energy_water, "principals"),
        (
            "recipients row",
            lambda t: _edit_index(t, "DELETE FROM recipients WHERE tracking=?", t.tracking),
            "recipients",
        ),
        (
            "policy hash",
            lambda t: _edit_index(t, "UPDATE meta SET value=? WHERE key='policy_set'", "0" * 64),
            "meta",
        ),
        (
            "record state",
            lambda t: _edit_index(
                t, "UPDATE records SET state='received' WHERE tracking=?", t.tracking
            ),
            "records",
        ),
        ("nonce table", lambda t: _edit_index(t, "DELETE FROM nonces"), "nonces"),
    ],
)
def test_an_edited_index_is_named_and_rebuilt(
    target: Target, name: str, edit: Any, table: str
) -> None:
    edit(target)
    out = target.cli.root / "edited"
    result = target.run(
        "get", target.tracking, "--purpose", "drought planning", "--out", str(out), who="energy"
    )
    _exit4(result, "index.sqlite", table)
    assert not out.exists() or not any(out.iterdir())
    # Audit answers come from the verified log, whatever the index says.
    recipients = target.cli.ok("audit", "recipients", target.tracking).lines()
    assert [r["principal"] for r in recipients] == ["water"]
    assert target.cli.ok("audit", "verify").code == 0
    target.cli.ok("index", "rebuild", who="admin")
    denied = target.run(
        "get", target.tracking, "--purpose", "curious", "--out", str(out), who="energy"
    )
    assert denied.code == 3, denied.err


_UNDO_REVOCATION = """
CREATE TRIGGER keep_them AFTER UPDATE ON principals
BEGIN UPDATE principals SET document = OLD.document WHERE id = NEW.id; END;
"""


def test_a_trigger_planted_in_the_index_never_decides(target: Target) -> None:
    """Rows still the log's, the file not the vault's: replaced by the replay, not tagged.

    A tagged trigger would undo the revocation below in the index alone, and the revoked
    analyst would go on retrieving.
    """
    db = sqlite3.connect(target.cli.vault / "index.sqlite")
    try:
        db.executescript(_UNDO_REVOCATION)
    finally:
        db.close()
    target.cli.ok("principal", "revoke", "water", who="admin")
    out = target.cli.root / "after-revocation"
    denied = target.run(
        "get", target.tracking, "--purpose", "drought planning", "--out", str(out), who="water"
    )
    assert denied.code == 3, denied.err
    assert not out.exists() or not any(out.iterdir())
    db = sqlite3.connect(target.cli.vault / "index.sqlite")
    try:
        planted = db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall()
    finally:
        db.close()
    assert planted == []
    assert target.cli.ok("audit", "verify").code == 0


# ----- tampered bytes: always exit 4 ------------------------------------------------------


@functools.cache
def _pcii_command() -> Any:
    """The `pcii` click command, built once (building it costs more than a verify)."""
    from pcii_vault.cli.app import _register_commands, app

    _register_commands()
    return typer.main.get_command(app)


def _in_process(target: Target, *args: str) -> int:
    """`pcii ARGS` in this process, mapped to exit codes exactly as `main()` does."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(target.cli.env)
    try:
        _pcii_command().main(args=list(args), prog_name="pcii", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    except VaultError as exc:
        return exc.exit_code
    except Exception:  # noqa: BLE001 -- main() turns anything else into exit 1
        return 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 0


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def small(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """A vault whose log holds only what `init` wrote (every offset is tried on it)."""
    cli = Cli(tmp_path)
    if request.param == "s3":
        store = _s3_init(request, cli, tmp_path)
    else:
        cli.init()
        store = FilesystemStore(cli.vault / "objects")
    return Target(cli, store, "")


def test_a_flipped_byte_anywhere_in_the_bundles_and_checkpoint_is_exit_4(
    small: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every offset on the filesystem store (a stride on S3): `audit verify` exits 4, and
    so does an ordinary command that reads the log; never 1, never 0."""
    target = small
    size = target.log_size()
    keys = [bundle_key(0, size), hash_tile_key(0, 0, size), CHECKPOINT_KEY]
    stride = 1 if isinstance(target.store, FilesystemStore) else 61
    for key in keys:
        original = target.store.get(key)
        for offset in range(0, len(original), stride):
            flipped = bytearray(original)
            flipped[offset] ^= 0x01
            _overwrite(target.store, key, bytes(flipped))
            code = _in_process(target, "audit", "verify")
            assert code == 4, f"{key}@{offset}: exit {code}: {capsys.readouterr().err}"
            if offset % 97 == 0:
                admin = str(target.cli.key("admin"))
                code = _in_process(target, "--as", admin, "principal", "list")
                assert code == 4, f"{key}@{offset}: list exit {code}: {capsys.readouterr().err}"
            if offset % 331 == 0:
                # The real command line, in its own process, agrees.
                assert target.run("audit", "verify").code == 4
        _overwrite(target.store, key, original)
    assert _in_process(target, "audit", "verify") == 0


# ----- what only the log key could plant: the auditor's replay finds it ------------------


def test_an_edited_and_resigned_decision_is_found_by_the_replay(target: Target) -> None:
    """A key holder turns a deny into a permit with another policy id: the replay differs."""
    denied = target.run(
        "get", target.tracking, "--purpose", "curious", "--out", str(target.cli.root / "d"),
        who="energy",
    )  # fmt: skip
    assert denied.code == 3
    [denial] = [e for e in target.events() if e["decision"] == "deny"]
    forged = _event({**denial, "seq": 0, "policies": ["analyst-retrieve"], "decision": "permit"})
    # Re-sign the whole history with the log key: rebuild the log with the edit.
    _rewrite_log(target, {denial["seq"]: forged})
    _exit4(target.run("audit", "verify"), f"event {denial['seq']}", "replayed decision")


def test_a_logged_illegal_transition_does_not_brick_the_vault(target: Target) -> None:
    """A withdrawal of a validated record (written with the log key, as an older
    version could under concurrency): every command works, verify names it."""
    from pcii_vault.crypto.signing import Ed25519PrivateKey
    from pcii_vault.identity import Identity
    from pcii_vault.models.request import sign_request

    owner = Identity.load(target.cli.key("owner"))
    policy_set = target.events()[-1]["policy_set"]
    request = sign_request(
        owner.key, vault=owner.vault_id, principal="owner", action="withdraw",
        record=target.tracking, params={"reason": "x"}, now=datetime.now(UTC),
    )  # fmt: skip
    illegal = Event(
        seq=0, time=datetime.now(UTC), type="submission.withdrawn", actor="owner",
        request=request.to_log(), record=target.tracking, action="withdraw",
        decision="permit", policy_set=policy_set, details={"reason": "x"},
    )  # fmt: skip
    assert isinstance(owner.key, Ed25519PrivateKey)
    [index] = target.ledger().append([illegal]).indices
    status = target.cli.ok("status", target.tracking, who="owner").json()
    assert status["state"] == "validated"
    target.cli.ok("get", target.tracking, "--purpose", "drought planning",
                  "--out", str(target.cli.root / "again"), who="water")  # fmt: skip
    target.cli.ok("index", "rebuild", who="admin")
    _exit4(target.run("audit", "verify"), f"event {index}", "cannot be withdrawn")


def _rewrite_log(target: Target, replace: dict[int, Event]) -> None:
    """Replace entries and re-sign a whole new log over them (a key holder's forgery)."""
    entries = list(target.events())
    for info in list(target.store.list("log/")):
        target.store.delete(info.key)
    (target.cli.vault / "log-checkpoint").unlink()
    ledger = target.ledger()
    drafts = [replace.get(e["seq"], _event(e)).model_copy(update={"seq": 0}) for e in entries]
    ledger.append(drafts)
