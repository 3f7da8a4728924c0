"""pcii-vault: a vault for Protected Critical Infrastructure Information.

The public front: the vault core, its errors, and the recipes and formats an integrator or
auditor needs. Everything else is internal and may change.
"""

from pcii_vault.crypto.envelope import (
    ObjectContext,
    RecordContext,
    decrypt_to_file,
    open_object,
    seal_object,
)
from pcii_vault.errors import (
    BackendError,
    ConfigError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.identity import Identity
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import Checkpoint, NoteVerifier
from pcii_vault.ledger.proof import ProofBundle, verify_bundle
from pcii_vault.ledger.verify import VerifyReport, verify_log
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import Submission
from pcii_vault.receipt import Receipt, verify_receipt
from pcii_vault.vault import Release, Vault

__all__ = [
    "BackendError",
    "Checkpoint",
    "ConfigError",
    "Event",
    "Identity",
    "InputError",
    "IntegrityError",
    "Ledger",
    "LocalKeyring",
    "NotFoundError",
    "NoteVerifier",
    "ObjectContext",
    "PolicyDenied",
    "Principal",
    "ProofBundle",
    "Receipt",
    "RecordContext",
    "Release",
    "SignedRequest",
    "Submission",
    "Vault",
    "VaultError",
    "VerifyReport",
    "decrypt_to_file",
    "open_object",
    "seal_object",
    "verify_bundle",
    "verify_log",
    "verify_receipt",
]
