"""A realistic vault history of any length, for auditing benchmarks (not a test fixture).

Registers users, receives and validates records, then fills the log with retrievals by
analysts of several sectors and levels: every request signed by its principal, every
decision made by the real default policies on the facts at its position (so many are
permits and many are denials), the policy set stored by hash as the vault stores it.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.decisions import decide
from pcii_vault.index import RecordRow
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.request import sign_request
from pcii_vault.policy.archive import store_policy_set
from pcii_vault.policy.engine import PolicyEngine, default_policy_directory
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.vault import principal_params

VAULT = "v-bench0000000000"
ORIGIN = f"pcii-vault.local/{VAULT}"
LOG_KEY = Ed25519PrivateKey(bytes(range(32)))
T0 = datetime(2026, 6, 1, tzinfo=UTC)
WATER = "Water and Wastewater Systems"
ENERGY = "Energy"


def _expect(permitted: bool) -> None:
    if not permitted:
        raise SystemExit("the default policies refused a setup act of the benchmark history")


def _row(
    tracking: str, state: Any, sector: str, *, received: datetime, since: datetime,  # noqa: ANN401
    files: list[dict[str, Any]],
) -> RecordRow:  # fmt: skip
    return RecordRow(
        tracking=tracking, state=state, categorical=False, sector=sector, tlp="TLP:AMBER",
        submitter="owner", submitter_org="Riverbend MWA", received_at=received,
        state_at=since, files=tuple(files),
    )  # fmt: skip


def build_history(  # noqa: PLR0915 -- one linear script
    root: Path, count: int, *, records: int = 200
) -> tuple[FilesystemStore, NoteVerifier]:
    """Write a `count`-event history under `root`; return its store and verifier key."""
    rng = random.Random(11)
    store = FilesystemStore(root / "objects")
    engine = PolicyEngine.load(default_policy_directory())
    store_policy_set(store, engine)
    policy_set = engine.policy_set_hash
    keys: dict[str, Ed25519PrivateKey] = {}
    principals: dict[str, Principal] = {}
    rows: dict[str, RecordRow] = {}
    events: list[Event] = []
    clock = [T0]

    def now() -> datetime:
        clock[0] += timedelta(milliseconds=50)
        return clock[0]

    def vault_event(kind: Any, **fields: Any) -> None:  # noqa: ANN401
        events.append(Event(seq=0, time=now(), type=kind, actor="vault", **fields))

    def act(
        who: str,
        kind: Any,  # noqa: ANN401
        action: str,
        *,
        record: str | None = None,
        params: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        purpose: str | None = None,
        use: str | None = None,
    ) -> bool:
        at = now()
        request = sign_request(
            keys[who], vault=VAULT, principal=who, action=action, now=at, record=record,
            purpose=purpose, use=use, params=params or {},
        )  # fmt: skip
        row = rows.get(record) if record and kind != "submission.received" else None
        decision = decide(engine, principals[who], request.body, row, now=at)
        events.append(
            Event(
                seq=0, time=at, type=kind if decision.allowed else "access.decided",
                actor=who, request=request.to_log(), record=record, action=action,
                decision=decision.decision, policies=tuple(decision.policy_ids),
                policy_set=policy_set, purpose=purpose, use=use,
                obligations=tuple(decision.obligations),
                details=(details or {}) if decision.allowed else {},
            )
        )  # fmt: skip
        return decision.allowed

    def person(name: str, by: str | None, **attrs: Any) -> None:  # noqa: ANN401
        key = Ed25519PrivateKey(rng.randbytes(32))
        keys[name] = key
        attributes = PrincipalAttributes.model_validate(attrs)
        principal = Principal(
            id=name, public_key=base64.b64encode(key.public_key.raw).decode(),
            **attributes.model_dump(),
        )  # fmt: skip
        details = {"principal": principal.model_dump(mode="json")}
        if by is None:
            vault_event("principal.registered", details=details)
        else:
            params = principal_params(name, attributes, key.public_key)
            _expect(act(by, "principal.registered", "manage-principals", params=params,
                        details=details))  # fmt: skip
        principals[name] = principal

    vault_event("vault.initialized", details={"vault_id": VAULT})
    vault_event("policy.loaded", policy_set=policy_set)
    person("admin", None, role="admin", organisation="PCII Program Office", level="federal")
    trained = {"training_expires": (date.today() + timedelta(days=300)).isoformat()}
    person("owner", "admin", role="owner", organisation="Riverbend MWA", level="private")
    person("office", "admin", role="office", organisation="PCII Program Office",
           level="federal", **trained)  # fmt: skip
    analysts = {
        "fed-water": {"level": "federal", "sectors": [WATER]},
        "fed-energy": {"level": "federal", "sectors": [ENERGY]},
        "state-water": {"level": "state", "sectors": [WATER], "nda_signed": "2026-01-01"},
        "state-no-nda": {"level": "state", "sectors": [WATER]},
    }
    for name, attrs in analysts.items():
        person(name, "admin", role="analyst", organisation="Agency", **trained, **attrs)
    for n in range(records):
        tracking = f"PCII-2026-{n:08d}"
        sector = WATER if n % 3 else ENERGY
        files = [{"object": "document", "name": "submission.json", "sha256": "0" * 64}]
        details = {
            "sector": sector, "tlp": "TLP:AMBER", "submitter_org": "Riverbend MWA",
            "files": files, "kek_version": 1,
        }  # fmt: skip
        _expect(act("owner", "submission.received", "submit", record=tracking,
                    params={"files": files}, details=details))  # fmt: skip
        at = events[-1].time
        rows[tracking] = _row(tracking, "received", sector, received=at, since=at, files=files)
        _expect(act("office", "submission.validated", "validate", record=tracking))
        rows[tracking] = _row(
            tracking, "validated", sector, received=at, since=events[-1].time, files=files
        )
    names = sorted(analysts)
    trackings = sorted(rows)
    purposes = [("drought planning", "infrastructure-protection"), ("curious", "homeland-security")]
    while len(events) < count:
        purpose, use = rng.choice(purposes)
        act(rng.choice(names), "access.decided", "retrieve", record=rng.choice(trackings),
            purpose=purpose, use=use)  # fmt: skip
    log = Ledger(store, ORIGIN, signer=LOG_KEY, verifier=LOG_KEY.public_key)
    for start in range(0, len(events), 5000):
        log.append(events[start : start + 5000])
    return store, NoteVerifier(ORIGIN, LOG_KEY.public_key)
