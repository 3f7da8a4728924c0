"""Creating a vault: directory, store, sealed keyring, log and first admin, or nothing.

Invariant: a failed `init` leaves what was there before (no half-created vault directory,
key file or log).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Self

from pcii_vault.config import CONFIG_NAME, INIT_MARKER, VaultConfig, VaultPaths
from pcii_vault.core.acting import Acting, _draft
from pcii_vault.core.base import Clock, _utcnow
from pcii_vault.crypto.seal import DEFAULT_SCRYPT, ScryptParams
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import BackendError, ConfigError, InputError, VaultError
from pcii_vault.identity import Identity
from pcii_vault.keys.custody import KeyCustody, open_custody
from pcii_vault.keys.local import MIN_SECRET_BYTES, LocalKeyring
from pcii_vault.keys.providers import LOCAL, log_signer_uri_for, public_uri
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import verifier_key_string
from pcii_vault.models.principal import Principal
from pcii_vault.policy.archive import store_policy_set
from pcii_vault.policy.engine import PolicyEngine, default_policy_directory
from pcii_vault.store import open_store
from pcii_vault.store.base import ObjectStore


class Creation(Acting):
    """Creating a new vault."""

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        store_url: str,
        secret: bytes,
        admin_name: str,
        admin_key_out: Path,
        admin_organisation: str = "PCII Program Office",
        clock: Clock = _utcnow,
        kdf_params: ScryptParams = DEFAULT_SCRYPT,
        kek_uri: str = LOCAL,
        unseal_threshold: int | None = None,
    ) -> tuple[Self, Identity]:
        """Create a vault: config, sealed keyring, store layout, log, and the first admin.

        `kek_uri` names where the KEKs live (`local`, `pkcs11:`, `openbao:`, `awskms:`):
        the key is created there when missing (generated inside, never exported) and used
        when present; the log key goes into the provider where it can hold one.
        `unseal_threshold` records that the secret was split into shares (see
        `pcii_vault.keys.shares`), so that opening asks for shares, not a passphrase.

        Raises:
            ConfigError: the directory already holds a vault, or the store is unusable.
            InputError: the admin key file cannot be created, or `kek_uri` is malformed.
            BackendError: the key provider cannot be reached.
        """
        stored_kek_uri = public_uri(kek_uri)
        paths = VaultPaths(root)
        _check_new_vault_directory(root)
        if len(secret) < MIN_SECRET_BYTES:
            raise InputError(f"unseal secret must be at least {MIN_SECRET_BYTES} bytes")
        created_root = not root.exists()
        _claim_new_vault_directory(root)  # before the clean-up below may remove anything
        claimed = False
        store: ObjectStore | None = None
        custody: KeyCustody | None = None
        try:
            _claim_new_file(admin_key_out)
            claimed = True
            store = open_store(store_url, root_for_file=paths.objects, create=True)
            _check_store_holds_no_log(store)
            vault_id = f"v-{secrets.token_hex(8)}"
            keyring = LocalKeyring.create(paths.keyring, secret, kdf_params=kdf_params, clock=clock)
            custody = open_custody(keyring, kek_uri, log_signer_uri_for(kek_uri), create=True)
            origin = f"pcii-vault.local/{vault_id}"
            signer = custody.log_signer
            config = VaultConfig(
                vault_id=vault_id,
                created=clock(),
                store=store_url,
                log_origin=origin,
                log_key=verifier_key_string(origin, signer.public_key),
                intake_public_key=base64.b64encode(keyring.intake_public_key).decode(),
                kek=stored_kek_uri,
                log_signer=public_uri(log_signer_uri_for(kek_uri)),
                unseal_threshold=unseal_threshold,
            )
            config = config.model_copy(
                update={"seal": keyring.config_authenticator().tag(config.sealed_fields()).hex()}
            )
            admin_key = Ed25519PrivateKey.generate()
            admin = Principal(
                id=admin_name,
                role="admin",
                organisation=admin_organisation,
                level="federal",
                public_key=base64.b64encode(admin_key.public_key.raw).decode(),
            )
            policy = PolicyEngine.load(_copy_default_policies(root))
            ledger = Ledger(
                store,
                origin,
                signer=signer,
                verifier=signer.public_key,
                clock=clock,
                anchor=CheckpointAnchor(paths.anchor),
            )
            # The policy set's text is in the store before the log names it.
            store_policy_set(store, policy)
            now = clock()
            ledger.append(
                [
                    _draft("vault.initialized", now, details={"vault_id": vault_id}),
                    _draft("policy.loaded", now, policy_set=policy.policy_set_hash),
                    _draft(
                        "principal.registered",
                        now,
                        details={"principal": admin.model_dump(mode="json")},
                    ),
                ]
            )
            identity = Identity(vault_id=vault_id, principal=admin_name, key=admin_key)
            _write_claimed(admin_key_out, identity)
            # The config file is written last: a directory without it is not a vault.
            config.save_new(paths.config)
            (root / INIT_MARKER).unlink()
        except BaseException as exc:
            # Nothing half-created survives: a failed init leaves what was there before.
            if claimed:
                admin_key_out.unlink(missing_ok=True)
            if custody is not None:
                custody.close()
            _remove_partial_vault(paths, store, created_root=created_root)
            if isinstance(exc, OSError):  # writing the vault directory (a full disk)
                raise _not_created(root, exc) from exc
            raise
        vault = cls(root, unseal=lambda: secret, clock=clock)
        vault._keyring = custody
        vault._local_keys = custody.local
        # The index is new here (the `index` property warns of one found missing).
        vault._index = vault._open_index(custody.local.index_authenticator())
        vault.sync()
        return vault, identity


def _check_new_vault_directory(root: Path) -> None:
    if (root / CONFIG_NAME).exists():
        raise ConfigError(f"{root} already holds a vault")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory")
    if (root / INIT_MARKER).exists():
        raise ConfigError(_init_under_way(root))
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty: a new vault needs an empty or new directory")


def _init_under_way(root: Path) -> str:
    return (
        f"an `init` of {root} is under way, or was cut short (it holds {INIT_MARKER} and "
        "no vault.json): if no `init` is running, remove the directory (and the admin key "
        "file that init was writing) and run `pcii init` again"
    )


def _claim_new_vault_directory(root: Path) -> None:
    """Make `root` (0700: it holds the sealed keyring) and claim it for this `init`.

    Two `init` of one directory at once: the second is refused here, before its clean-up
    on failure could remove what the first is writing.

    Raises:
        ConfigError: another `init` claimed it, or it cannot be made.
    """
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(root / INIT_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(_init_under_way(root)) from None
    except OSError as exc:
        raise ConfigError(f"cannot create the vault directory {root}: {exc.strerror}") from None
    os.close(fd)


def _check_store_holds_no_log(store: ObjectStore) -> None:
    # Probing the store first also makes an unreachable or misconfigured one fail here,
    # before anything is written.
    if any(True for _ in store.list("log/")):
        raise ConfigError(f"{store.url} already holds a log: give each vault its own store")


def _remove_partial_vault(
    paths: VaultPaths, store: ObjectStore | None, *, created_root: bool
) -> None:
    """Undo a failed `create`: the directory was new or empty, so all of it goes."""
    with contextlib.suppress(VaultError, OSError):
        if store is not None:
            for prefix in ("log/", "policysets/"):
                for info in list(store.list(prefix)):
                    store.delete(info.key)
    if paths.root.is_dir():
        for child in paths.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if created_root:
            with contextlib.suppress(OSError):
                paths.root.rmdir()


def _claim_new_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InputError(f"{path} already exists: refusing to overwrite a key file") from exc
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)


def _not_created(root: Path, exc: OSError) -> VaultError:
    """Why `init` could not write the vault directory: the disk's (exit 5) or the user's."""
    reason = f"cannot create the vault in {root}: {exc.strerror or exc}"
    if exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}:
        return BackendError(f"{reason} (nothing of it was kept)")
    return InputError(reason)


def _write_claimed(path: Path, identity: Identity) -> None:
    path.unlink()
    identity.save_new(path)


def _copy_default_policies(root: Path) -> Path:
    """Copy the shipped policies into the new vault; an OS error as it is (not a list).

    Folders 0700 and files 0600 whatever the umask, as every other file of the vault:
    the policies decide every act.
    """
    source, target = default_policy_directory(), root / "policies"
    for directory, _subdirectories, files in os.walk(source):
        into = target / Path(directory).relative_to(source)
        into.mkdir(mode=0o700)
        into.chmod(0o700)  # mkdir's mode is masked by the umask
        for name in files:
            copied = into / name
            shutil.copyfile(Path(directory) / name, copied)
            copied.chmod(0o600)
    return target
