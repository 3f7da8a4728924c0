"""pcii-vault: a vault for Protected Critical Infrastructure Information.

The public front: the client (a user's side, over a transport: the vault in this process,
or a `pcii serve` over HTTPS), the vault core, its errors, and the recipes and formats an
integrator or auditor needs. Everything else is internal and may change.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pcii_vault.client import Client, LocalTransport, Transport, VaultInfo
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
    from pcii_vault.history import HistoryAuditor
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
    from pcii_vault.service.transport import HttpTransport
    from pcii_vault.vault import Release, Vault

# Each public name and the module that defines it: imported on first use (PEP 562), so
# `import pcii_vault.cli` (and `pcii --help`) does not load the whole core.
_LAZY = {
    "Client": "pcii_vault.client",
    "LocalTransport": "pcii_vault.client",
    "Transport": "pcii_vault.client",
    "VaultInfo": "pcii_vault.client",
    "HttpTransport": "pcii_vault.service.transport",
    "ObjectContext": "pcii_vault.crypto.envelope",
    "RecordContext": "pcii_vault.crypto.envelope",
    "decrypt_to_file": "pcii_vault.crypto.envelope",
    "open_object": "pcii_vault.crypto.envelope",
    "seal_object": "pcii_vault.crypto.envelope",
    "BackendError": "pcii_vault.errors",
    "ConfigError": "pcii_vault.errors",
    "InputError": "pcii_vault.errors",
    "IntegrityError": "pcii_vault.errors",
    "NotFoundError": "pcii_vault.errors",
    "PolicyDenied": "pcii_vault.errors",
    "VaultError": "pcii_vault.errors",
    "HistoryAuditor": "pcii_vault.history",
    "Identity": "pcii_vault.identity",
    "LocalKeyring": "pcii_vault.keys.local",
    "Ledger": "pcii_vault.ledger.log",
    "Checkpoint": "pcii_vault.ledger.note",
    "NoteVerifier": "pcii_vault.ledger.note",
    "ProofBundle": "pcii_vault.ledger.proof",
    "verify_bundle": "pcii_vault.ledger.proof",
    "VerifyReport": "pcii_vault.ledger.verify",
    "verify_log": "pcii_vault.ledger.verify",
    "Event": "pcii_vault.models.event",
    "Principal": "pcii_vault.models.principal",
    "SignedRequest": "pcii_vault.models.request",
    "Submission": "pcii_vault.models.submission",
    "Receipt": "pcii_vault.receipt",
    "verify_receipt": "pcii_vault.receipt",
    "Release": "pcii_vault.vault",
    "Vault": "pcii_vault.vault",
}


def __getattr__(name: str) -> Any:  # noqa: ANN401 -- any public name
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pcii_vault' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "Checkpoint",
    "Client",
    "ConfigError",
    "Event",
    "HistoryAuditor",
    "HttpTransport",
    "Identity",
    "InputError",
    "IntegrityError",
    "Ledger",
    "LocalKeyring",
    "LocalTransport",
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
    "Transport",
    "Vault",
    "VaultError",
    "VaultInfo",
    "VerifyReport",
    "__version__",
    "decrypt_to_file",
    "open_object",
    "seal_object",
    "verify_bundle",
    "verify_log",
    "verify_receipt",
]
