"""A vault for in-process tests, driven the way the CLI drives it (not a test module).

`VaultBench` creates a vault with cheap scrypt parameters, registers principals the way
`pcii principal add` does, submits the way `pcii submit` does (owner-side upload, then a
signed `receive`), and audits the log the way `pcii audit verify` does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pcii_vault.crypto.seal import ScryptParams
from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.identity import Identity
from pcii_vault.index import Index
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.verify import VerifyReport, verify_log
from pcii_vault.models.principal import PrincipalAttributes
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import example_submission
from pcii_vault.receipt import Receipt
from pcii_vault.store.base import ObjectStore
from pcii_vault.submitter import SealedUpload, upload
from pcii_vault.vault import Vault, principal_params

FAST_KDF = ScryptParams(n=2**10, r=8, p=1)
# Not a PDF, so a review returns it byte for byte (released PDFs are stamped page by page:
# tests/unit/test_marking_pdf.py); the key and failure suites compare the bytes.
ATTACHMENT = "riverbend-scada-capture.bin"


class VaultBench:
    """A vault with an admin, an owner and an office user; `add` registers more."""

    def __init__(
        self,
        root: Path,
        *,
        secret: bytes,
        attachment_bytes: bytes,
        wrap_store: Callable[[ObjectStore], ObjectStore] | None = None,
        kek_uri: str = "local",
    ) -> None:
        self.root = root
        self.vault, admin = Vault.create(
            root / "vault",
            store_url="file",
            secret=secret,
            admin_name="admin",
            admin_key_out=root / "admin.key",
            kdf_params=FAST_KDF,
            kek_uri=kek_uri,
        )
        self.real: ObjectStore = self.vault.store
        if wrap_store is not None:
            # Before anything opens the log: every later write goes through the wrapper.
            self.vault.store = wrap_store(self.real)
        self.ids: dict[str, Identity] = {"admin": admin}
        self.add("owner", "owner", "Riverbend Municipal Water Authority", "private")
        self.add("office", "office", "PCII Program Office", "federal")
        self.attachment = root / ATTACHMENT
        self.attachment.write_bytes(attachment_bytes)

    def add(self, name: str, role: str, org: str, level: str, **extra: Any) -> None:
        """Register a principal, trained for the next 300 days, as `pcii principal add` does."""
        key = Ed25519PrivateKey.generate()
        attributes = PrincipalAttributes.model_validate(
            {
                "role": role,
                "organisation": org,
                "level": level,
                "training_expires": date.today() + timedelta(days=300),
                **extra,
            }
        )
        request = self.vault.sign(
            self.ids["admin"],
            "manage-principals",
            params=principal_params(name, attributes, key.public_key),
        )
        self.vault.add_principal(request, name, attributes, key.public_key)
        self.ids[name] = Identity(self.vault.config.vault_id, name, key)

    def update(self, name: str, **changes: Any) -> None:
        """Change a principal's attributes, as `pcii principal update` does (signed by admin)."""
        request = self.vault.sign(
            self.ids["admin"],
            "manage-principals",
            params={"op": "update", "principal": name, "changes": changes},
        )
        self.vault.update_principal(request, name, changes)

    def submit_receipt(self, *, attach: bool = True) -> Receipt:
        """What `pcii submit` does: check, upload (owner side), sign, receive."""
        self.vault.check_identity(self.ids["owner"])
        return self.receive(self.upload(attach=attach))

    def receive(self, sealed: SealedUpload, who: str = "owner") -> Receipt:
        """`who` signs the submission of an upload, and the vault receives it."""
        request = self.vault.sign(
            self.ids[who],
            "submit",
            record=sealed.tracking_number,
            params={"files": list(sealed.files)},
        )
        return self.vault.receive(request, sealed)

    def upload(self, *, attach: bool = True) -> SealedUpload:
        """The owner's side of a submission: a fresh tracking number, its objects stored."""
        document = example_submission()
        document["attachments"][0]["name"] = ATTACHMENT
        if not attach:
            document["attachments"] = []
        return self.upload_document(document, [self.attachment] if attach else [])

    def upload_document(self, document: dict[str, Any], attachments: list[Path]) -> SealedUpload:
        """`document` and `attachments` uploaded under a fresh tracking number."""
        return upload(
            self.vault.store,
            vault_id=self.vault.config.vault_id,
            tracking_number=self.vault.new_tracking_number(),
            intake_public_key=self.vault.intake_key(),
            kek_version=self.vault.current_kek_version(),
            document=json.dumps(document).encode(),
            attachments=attachments,
        )

    def retrieve(self, tracking: str, who: str = "analyst") -> SignedRequest:
        """`who`'s signed retrieve request for `tracking` (a stated purpose and use)."""
        return self.vault.sign(
            self.ids[who],
            "retrieve",
            record=tracking,
            purpose="drought planning",
            use="infrastructure-protection",
        )

    def audit(self) -> VerifyReport:
        """`pcii audit verify`: signatures, tree, tiles, and a legal event history."""
        history = Index.in_memory()
        try:
            return verify_log(
                self.real,
                NoteVerifier.from_key_string(self.vault.config.log_key),
                event_checker=history.apply,
            )
        finally:
            history.close()


def run_concurrently(targets: Iterable[Callable[[], object]]) -> None:
    """Run each target in its own thread, all started before any is waited for."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def outcome_within(target: Callable[[], object], seconds: float = 10.0) -> BaseException | None:
    """Run `target` in a daemon thread: the exception it raised, or None; a hang fails.

    For reads of planted FIFOs and devices: a blocked read must fail the test, not hang it.
    """
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]
