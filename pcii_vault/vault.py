"""The vault core: every act on PCII goes through here, in-process or behind a server.

Each act follows the same order, and the order is the security argument:
1. verify the signed request (registered principal, signature, vault, time window, nonce);
2. ask the protection policies (Cedar) for a decision, with the principal's and the
   record's attributes and the request's purpose, use and authority;
3. append the event (permit or deny, determining policies, obligations) to the log and
   wait for a signed checkpoint that covers it;
4. only then act: write state, release bytes, shred keys.
A failure before step 3 leaves nothing visible; a failure in step 3 releases nothing.

Invariants:
- no plaintext leaves the vault unless its access event is durably in the log;
- a record's objects become a record only through its `submission.received` event; if that
  append fails, the uploaded ciphertext and wrapped key are removed;
- the index is a projection of the log, caught up before every decision that counts: a
  read (nothing logged) syncs before its look; an act that logs is decided at its log
  position on every event before it, and its first look, made on the index as it is,
  refuses nothing without looking again after a sync.
"""

from __future__ import annotations

from pcii_vault.core.creation import Creation
from pcii_vault.core.intake import Intake
from pcii_vault.core.keyacts import KeyActs, KeyStatus, Migration, Rewrap
from pcii_vault.core.maintenance import Maintenance, MaintenanceActs
from pcii_vault.core.principals import PrincipalActs, principal_params
from pcii_vault.core.records import RecordActs
from pcii_vault.core.releases import HeldRelease, Release, Releases, StagedRelease

__all__ = [
    "HeldRelease",
    "KeyStatus",
    "Maintenance",
    "Migration",
    "Release",
    "Rewrap",
    "StagedRelease",
    "Vault",
    "principal_params",
]


class Vault(Creation, PrincipalActs, Intake, RecordActs, Releases, KeyActs, MaintenanceActs):
    """One vault: its configuration, store, keyring, log, index and policies.

    Each act family lives in its own module of `pcii_vault.core`, over the layers they
    share: the opened vault (`base`), its authenticated projection of the log
    (`projection`), and the way of one act (`acting`: verify, decide, sequence).
    """
